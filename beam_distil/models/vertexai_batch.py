"""Vertex AI batch prediction for ``VertexAILLM`` (Gemini): the ``OfflineBatchAPI`` the engine drives when
``use_offline_batch_generation=True``.

Example::

    llm = VertexAILLM(model="gemini-2.0-flash", project="my-project", location="us-central1",
                      use_offline_batch_generation=True, offline_batch_location="gs://my-bucket/vertex-batches")
    llm.load()
    api = llm.offline_batch_api()
    line = api.encode_request(BatchRequest("c0ffee-0", [{"role": "user", "content": "Hi"}], 2, {"temperature": 0.7}))
    job = await api.submit([line], submission="3f2a9c")    # "projects/my-project/locations/us-central1/batchPredictionJobs/123"
    await api.status(job)                                  # BatchStatus(state="running", provider_status="JOB_STATE_PENDING")
    await api.answers(job)                                 # {"c0ffee-0": BatchAnswer(output={"generations": [...], ...})}

How a batch travels (Vertex AI's ``batchPredictionJobs`` resource, through ``google-genai``'s ``client.aio.batches``):

- ``submit`` writes the lines to ``<offline_batch_location>/<submission>/input.jsonl`` with Beam's ``FileSystems``
  (Cloud Storage on Dataflow, a local folder in tests), then creates the job: ``inputConfig`` is that file
  (``instancesFormat: jsonl``), ``outputConfig`` is ``<offline_batch_location>/<submission>/output``
  (``predictionsFormat: jsonl``), and ``displayName`` is ``beam-distil-<submission>``, which ``find_batch`` looks
  for (``display_name="..."`` list filter) when the job's name was lost.
- Each input line is ``{"request": <GenerateContentRequest>}``: exactly the body ``VertexAILLM.agenerate`` sends
  online (``VertexAILLM.generate_content_request``), plus request ``labels``.
- Vertex AI writes ``<output>/prediction-model-<time>/predictions.jsonl`` (the job's
  ``outputInfo.gcsOutputDirectory``): one line per request it finished, ``{"request", "response", "status",
  "processed_time"}``, where ``status`` is empty for an answer and holds the error otherwise. ``answers`` reads
  every ``predictions*.jsonl`` there and parses each ``response`` as ``agenerate`` parses an online one
  (``VertexAILLM.output_of_response``): an answer without text (``finishReason: SAFETY``...) keeps its ``None``
  generation and its finish reason.
- Job states: ``JOB_STATE_SUCCEEDED`` and ``JOB_STATE_PARTIALLY_SUCCEEDED`` are ``completed``; ``FAILED``,
  ``EXPIRED`` and ``CANCELLED`` are themselves; every other state (queued, pending, running, cancelling, paused,
  updating) is ``running``. Counts come from ``completionStats`` (successful, failed, incomplete).

How an output line is matched to its ``custom_id``: Vertex AI keeps the order of neither lines nor files, and
documents no id field of its own for JSONL input (other top-level keys are documented as passed through only for
BigQuery input). What it does document is that each output line carries the ``request`` it answers, and Vertex
AI's ``GenerateContentRequest`` has a ``labels`` field (user metadata, used for billing reports only, so it changes
nothing in the answer). The ``custom_id`` is therefore written into the request's labels and read back from the
echoed request. Label values may only hold lowercase letters, digits, ``_`` and ``-``, at most 63 characters, so
the id is escaped (``_`` becomes ``__``, an uppercase letter ``X`` becomes ``_x``) and cut into 63-character pieces
under ``beam_distil_custom_id``, ``beam_distil_custom_id_1``, ``beam_distil_custom_id_2``. A lowercase id of at
most 63 characters is written as it is.

Limits (Vertex AI's "Batch prediction with Gemini" page, "Quotas and limits"): at most 200,000 requests in one
batch job and a Cloud Storage input file of at most 1 GB; a job that waits too long in the queue (72 hours) or runs
too long ends unfinished, which the engine sees as ``expired``/``failed`` with part of its output written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional

from beam_distil.models.offline_batch import BatchAnswer, BatchRequest, BatchState, BatchStatus, OfflineBatchAPI

if TYPE_CHECKING:
    from beam_distil.models.vertexai import VertexAILLM

logger = logging.getLogger("beam_distil")

DISPLAY_NAME_PREFIX = "beam-distil-"
CUSTOM_ID_LABEL = "beam_distil_custom_id"
_LABEL_VALUE_LENGTH = 63
_CUSTOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SUBMISSION = re.compile(r"^[A-Za-z0-9_-]{1,100}$")

_STATES: Dict[str, BatchState] = {
    "JOB_STATE_SUCCEEDED": "completed",
    # Some requests failed: their lines say why, and the ones without a line are unanswered.
    "JOB_STATE_PARTIALLY_SUCCEEDED": "completed",
    "JOB_STATE_FAILED": "failed",
    "JOB_STATE_EXPIRED": "expired",
    "JOB_STATE_CANCELLED": "cancelled",
}


def custom_id_labels(custom_id: str) -> Dict[str, str]:
    """The request labels that carry ``custom_id`` (see the module docstring): ``custom_id_labels("ab-1")`` is
    ``{"beam_distil_custom_id": "ab-1"}``; ``custom_id_labels("Ab_1")`` is ``{"beam_distil_custom_id": "_ab__1"}``."""
    escaped = "".join("__" if char == "_" else f"_{char.lower()}" if char.isupper() else char for char in custom_id)
    pieces = [escaped[start : start + _LABEL_VALUE_LENGTH] for start in range(0, len(escaped), _LABEL_VALUE_LENGTH)]
    return {CUSTOM_ID_LABEL if index == 0 else f"{CUSTOM_ID_LABEL}_{index}": piece for index, piece in enumerate(pieces)}


def custom_id_of_labels(labels: Optional[Dict[str, Any]]) -> Optional[str]:
    """The ``custom_id`` that ``custom_id_labels`` wrote into ``labels``, or ``None`` if they hold none."""
    if not labels or not isinstance(labels.get(CUSTOM_ID_LABEL), str):
        return None
    escaped = labels[CUSTOM_ID_LABEL]
    index = 1
    while isinstance(labels.get(f"{CUSTOM_ID_LABEL}_{index}"), str):
        escaped += labels[f"{CUSTOM_ID_LABEL}_{index}"]
        index += 1
    decoded: List[str] = []
    chars = iter(escaped)
    for char in chars:
        if char == "_":
            following = next(chars, "")
            decoded.append("_" if following == "_" else following.upper())
        else:
            decoded.append(char)
    return "".join(decoded) or None


def display_name_of(submission: str) -> str:
    """The job's ``displayName`` for a submission, which ``find_batch`` looks for."""
    return f"{DISPLAY_NAME_PREFIX}{submission}"


class VertexBatchAPI(OfflineBatchAPI):
    """Vertex AI batch prediction jobs for one ``VertexAILLM``, made by ``llm.offline_batch_api()`` on the worker.

    ``client`` is the LLM's ``genai.Client(vertexai=True, ...).aio`` (one attempt per call: the engine retries
    what ``is_transient`` accepts); ``location`` is the folder batch files go under (``gs://`` for Vertex AI; any
    Beam ``FileSystems`` path works against a test endpoint).
    """

    provider = "vertexai"
    max_requests_per_batch = 200_000
    max_bytes_per_batch = 1_000_000_000

    def __init__(self, llm: "VertexAILLM", client: Any, location: str) -> None:
        self._llm = llm
        self._client = client
        self._location = location

    # ------------------------------------------------------------------ requests

    def encode_request(self, request: BatchRequest) -> bytes:
        if not _CUSTOM_ID.match(request.custom_id):
            raise ValueError(
                f"custom_id {request.custom_id!r} cannot be sent to Vertex AI batch prediction: it must be 1 to 64"
                " characters of A-Z, a-z, 0-9, _ and -"
            )
        try:
            body = self._llm.generate_content_request(request.input, request.num_generations, **request.kwargs)
        except TypeError as error:  # a generation argument agenerate does not take either
            raise ValueError(
                f"VertexAILLM {self._llm.model!r} cannot put {sorted(request.kwargs)} in a batch request: {error}."
                " Use the arguments VertexAILLM.agenerate takes (max_new_tokens, temperature, top_p, top_k, stop,"
                " seed, safety_settings, structured_output)."
            ) from error
        body["labels"] = custom_id_labels(request.custom_id)
        return json.dumps({"request": body}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    # ------------------------------------------------------------------ jobs

    def _path(self, *parts: str) -> str:
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.join(self._location, *parts)

    async def submit(self, lines: List[bytes], submission: str) -> str:
        from google.genai import types

        if not _SUBMISSION.match(submission):
            raise ValueError(
                f"submission {submission!r} cannot name a Vertex AI batch folder: use 1 to 100 characters of A-Z,"
                " a-z, 0-9, _ and -"
            )
        input_uri = self._path(submission, "input.jsonl")
        # Beam's file systems block: off the event loop, which other requests share.
        await asyncio.to_thread(_write_lines, input_uri, lines)
        job = await self._client.batches.create(
            model=self._llm.model,
            src=types.BatchJobSource(format="jsonl", gcs_uri=[input_uri]),
            config=types.CreateBatchJobConfig(
                display_name=display_name_of(submission),
                dest=types.BatchJobDestination(format="jsonl", gcs_uri=self._path(submission, "output")),
            ),
        )
        return job.name

    async def find_batch(self, submission: str) -> Optional[str]:
        from google.genai import types

        display_name = display_name_of(submission)
        pager = await self._client.batches.list(
            config=types.ListBatchJobsConfig(filter=f'display_name="{display_name}"', page_size=100)
        )
        found = [job async for job in pager if job.display_name == display_name]
        if not found:
            return None
        # A job made again after its name was lost is newer; the newest one is what the engine recorded last.
        newest = max(found, key=lambda job: (job.create_time is not None, job.create_time or 0, job.name or ""))
        return newest.name

    async def status(self, batch_id: str) -> BatchStatus:
        job = await self._client.batches.get(name=batch_id)
        provider_status = _enum_name(job.state) or "JOB_STATE_UNSPECIFIED"
        stats = job.completion_stats
        completed = (stats.successful_count or 0) if stats else 0
        failed = (stats.failed_count or 0) if stats else 0
        incomplete = max(stats.incomplete_count or 0, 0) if stats else 0
        error = None
        if job.error is not None and (job.error.message or job.error.code):
            error = f"{job.error.message or 'no message'} (code {job.error.code})"
        return BatchStatus(
            state=_STATES.get(provider_status, "running"),
            provider_status=provider_status,
            total=completed + failed + incomplete,
            completed=completed,
            failed=failed,
            error=error,
        )

    async def answers(self, batch_id: str) -> Dict[str, BatchAnswer]:
        job = await self._client.batches.get(name=batch_id)
        output_directory = job.output_info.gcs_output_directory if job.output_info is not None else None
        output_prefix = job.dest.gcs_uri if job.dest is not None else None
        # Reading and parsing up to 200,000 lines blocks: off the event loop, which other requests share.
        return await asyncio.to_thread(self._read_answers, output_directory, output_prefix)

    def _read_answers(self, output_directory: Optional[str], output_prefix: Optional[str]) -> Dict[str, BatchAnswer]:
        from apache_beam.io.filesystems import CompressionTypes, FileSystems

        found: Dict[str, BatchAnswer] = {}
        for path in _prediction_files(output_directory, output_prefix):
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                for raw in handle:
                    if not raw.strip():
                        continue
                    try:
                        custom_id, answer = self._answer_of_line(raw)
                    except (ValueError, AttributeError) as error:
                        # One unreadable line costs its request a resend, not the whole batch its answers.
                        logger.warning("A line of %s is left out, its request counts as unanswered: %s (%r)",
                                       path, error, raw[:200])
                        continue
                    # A line without our label is no request of ours (a file someone else put there): left out.
                    # The same request may appear twice (a file exported while running, then the final one): an
                    # answer wins over an error.
                    if custom_id is not None and (custom_id not in found or found[custom_id].output is None):
                        found[custom_id] = answer
        return found

    def _answer_of_line(self, raw: bytes) -> "tuple[Optional[str], BatchAnswer]":
        line = json.loads(raw)
        request = line.get("request") or {}
        custom_id = custom_id_of_labels(request.get("labels"))
        status = line.get("status")
        if status:
            return custom_id, BatchAnswer(error=status if isinstance(status, str) else json.dumps(status))
        response = line.get("response")
        if not isinstance(response, dict):
            return custom_id, BatchAnswer(error="Vertex AI wrote this request's line with no response and no status")
        num_generations = int((request.get("generationConfig") or {}).get("candidateCount") or 1)
        return custom_id, BatchAnswer(output=self._llm.output_of_response(response, num_generations))

    async def cancel(self, batch_id: str) -> None:
        await self._client.batches.cancel(name=batch_id)

    def is_transient(self, error: BaseException) -> bool:
        # The same errors as an online call: 408, 429 and 5xx answers, timeouts, refused or dropped connections.
        return self._llm.classify_error(error).retryable


def _enum_name(value: Any) -> Optional[str]:
    return None if value is None else str(getattr(value, "value", value))


def _write_lines(path: str, lines: Iterable[bytes]) -> None:
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    with FileSystems.create(path, mime_type="application/jsonl", compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        for line in lines:
            handle.write(line + b"\n")


def _prediction_files(output_directory: Optional[str], output_prefix: Optional[str]) -> List[str]:
    """The prediction files of a job: in its output directory when Vertex AI reported one, else in any
    ``prediction-model-*`` folder under its output prefix (a job that ended before reporting it)."""
    from apache_beam.io.filesystems import FileSystems

    if output_directory:
        patterns = [
            FileSystems.join(output_directory, "predictions*.jsonl"),
            FileSystems.join(output_directory, "*", "predictions*.jsonl"),
        ]
    elif output_prefix:
        patterns = [FileSystems.join(output_prefix, "prediction-model-*", "predictions*.jsonl")]
    else:
        return []
    return sorted({metadata.path for result in FileSystems.match(patterns) for metadata in result.metadata_list})
