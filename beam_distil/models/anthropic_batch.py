"""``AnthropicBatchAPI``: Anthropic's Message Batches API (``/v1/messages/batches``) for ``AnthropicLLM``'s offline
batch generation.

A batch is created with one POST of up to 100,000 requests (256 MB), each ``{"custom_id", "params"}`` where
``params`` is the body ``AnthropicLLM`` posts online to ``/v1/messages``; it is polled until its
``processing_status`` is ``ended``, and its results are read from its ``results_url`` as JSONL, one line per
request, in no particular order::

    llm = AnthropicLLM(model="claude-3-5-haiku-latest", use_offline_batch_generation=True)
    llm.load()
    api = llm.offline_batch_api()
    line = api.encode_request(BatchRequest("row-0", [{"role": "user", "content": "Hi"}], 1, {"max_new_tokens": 64}))
    batch_id = await api.submit([line], submission="3f2a...")          # "msgbatch_01..."
    status = await api.status(batch_id)           # BatchStatus(state="running", provider_status="in_progress", ...)
    answers = await api.answers(batch_id)         # once final: {"row-0": BatchAnswer(output={...}, error=None)}
    await api.close()

What each result becomes:

- ``succeeded``: the message read exactly as an online answer (``AnthropicLLM.output_of_message``): its text (or
  the forced tool call's input as JSON), ``stop_reason`` as the finish reason, a refusal or an answer with no
  text as a ``None`` generation, and the usage's tokens.
- ``errored`` with an error of the request itself (``invalid_request_error``...): ``BatchAnswer(error=...)``, which
  fails the row as a final online error would. An error of the service (``api_error``, ``overloaded_error``) is
  left out, as ``canceled`` and ``expired`` results are: the request was not answered, and is sent again.
- A line that cannot be read is left out too (and logged): its request counts as unanswered.

A structured answer is read with the schema its request was encoded with, which the results do not repeat: this
object keeps it from ``encode_request`` until the answer is read, so encode a batch's requests with the same object
before reading its answers (the engine does, for resumed batches too).

The batch's state: ``in_progress`` and ``canceling`` are running; ``ended`` is completed when no request expired
or was canceled, else ``expired`` (some expired) or ``cancelled``.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from beam_distil.models.offline_batch import BatchAnswer, BatchRequest, BatchStatus, OfflineBatchAPI
from beam_distil.models.rest import MalformedResponseError, RESTClient, json_object

if TYPE_CHECKING:
    from beam_distil.models.anthropic import AnthropicLLM

logger = logging.getLogger("beam_distil")

BATCHES_PATH = "v1/messages/batches"

_SERVICE_ERRORS = ("api_error", "overloaded_error")
"""Errors of a batch request that say the service failed, not the request: sending it again may well succeed."""


class AnthropicBatchAPI(OfflineBatchAPI):
    """The Message Batches API, speaking ``llm``'s request bodies and answers through ``client`` (which carries
    the key and the ``anthropic-version`` header); made by ``AnthropicLLM.offline_batch_api()``."""

    provider = "anthropic"
    max_requests_per_batch = 100_000
    max_bytes_per_batch = 256 * 1024 * 1024

    def __init__(self, llm: "AnthropicLLM", client: RESTClient) -> None:
        self._llm = llm
        self._client = client
        # A structured answer is read with its request's schema (a schema that is not an object comes back as the
        # `value` of one), which the results do not repeat: it is kept from encode_request until the answer is read,
        # so a batch's requests are encoded by this object before its answers are read (the engine encodes every
        # request of its rows, resumed batches included, before collecting them).
        self._schemas: Dict[str, Dict[str, Any]] = {}

    def encode_request(self, request: BatchRequest) -> bytes:
        """``{"custom_id": ..., "params": <the online request body>}`` as one JSON line. Raises ``ValueError`` for
        ``num_generations`` other than 1 (the Messages API has no ``n``: each generation is a request of its own)
        and for what the online body refuses (a ``tool`` role, conflicting limits)."""
        if request.num_generations != 1:
            raise ValueError(
                f"an Anthropic batch request gives one answer, and request {request.custom_id!r} asks for"
                f" {request.num_generations}: send one request per generation"
            )
        params = self._llm.request_body(request.input, **request.kwargs)
        schema = request.kwargs.get("structured_output")
        if schema is not None:
            self._schemas[request.custom_id] = schema
        line = {"custom_id": request.custom_id, "params": params}
        return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    async def submit(self, lines: List[bytes], submission: str) -> str:
        """Creates one batch of ``lines`` (from ``encode_request``) and returns its id. ``submission`` is not sent:
        the API keeps no metadata on a batch (see ``find_batch``)."""
        # The lines are sent as they were encoded, so the bytes the limits were checked against are the bytes sent.
        body = b'{"requests":[' + b",".join(lines) + b"]}"
        raw = await self._client.request_bytes("POST", BATCHES_PATH, body)
        batch = json_object(raw, f"{self._client.base_url}/{BATCHES_PATH}")
        batch_id = batch.get("id")
        if not isinstance(batch_id, str) or not batch_id:
            raise MalformedResponseError(
                f"the new batch from {self._client.base_url}/{BATCHES_PATH} has no id: {str(batch)[:200]}"
            )
        return batch_id

    async def find_batch(self, submission: str) -> Optional[str]:
        """Always ``None``: a Message Batch carries nothing of ours (no metadata, no name) to be found by. So a
        process killed between creating a batch and recording its id creates it again when the run resumes (the
        first one is paid for and its answers are not used)."""
        return None

    async def _batch(self, batch_id: str) -> Dict[str, Any]:
        path = f"{BATCHES_PATH}/{batch_id}"
        batch = await self._client.request("GET", path)
        if not isinstance(batch, dict) or not isinstance(batch.get("processing_status"), str):
            raise MalformedResponseError(
                f"the answer from {self._client.base_url}/{path} is not a message batch: {str(batch)[:200]}"
            )
        return batch

    async def status(self, batch_id: str) -> BatchStatus:
        batch = await self._batch(batch_id)
        processing_status = batch["processing_status"]
        counts = {key: int(value or 0) for key, value in (batch.get("request_counts") or {}).items()}
        state = "running"
        if processing_status == "ended":
            if counts.get("expired"):
                state = "expired"
            elif counts.get("canceled"):
                state = "cancelled"
            else:
                state = "completed"
        return BatchStatus(
            state=state,  # type: ignore[arg-type]
            provider_status=processing_status,
            total=sum(counts.values()),
            completed=counts.get("succeeded", 0),
            failed=counts.get("errored", 0),
        )

    async def answers(self, batch_id: str) -> Dict[str, BatchAnswer]:
        """The answers of an ended batch, read from its ``results_url`` (see the module docstring)."""
        batch = await self._batch(batch_id)
        results_url = batch.get("results_url")
        if not results_url:
            raise ValueError(
                f"Anthropic batch {batch_id} is {batch['processing_status']}, not ended: its results are not"
                " available yet; poll its status until it ends"
            )
        # The URL the API gives (on api.anthropic.com itself, a full URL), fetched with the same key and version.
        raw = await self._client.request_bytes("GET", results_url, headers={"Accept": "application/binary"})
        answers: Dict[str, BatchAnswer] = {}
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"line {number} of the results of Anthropic batch {batch_id}"
            try:
                custom_id, answer = self._answer_of_line(json.loads(line), where)
            except (ValueError, MalformedResponseError) as error:
                # One unreadable line costs its request a resend, not the whole batch.
                logger.warning("%s is left out, its request counts as unanswered: %s", where, error)
                continue
            if answer is not None:
                answers[custom_id] = answer
        for custom_id in answers:
            self._schemas.pop(custom_id, None)
        return answers

    def _answer_of_line(self, line: Any, where: str) -> "tuple[str, Optional[BatchAnswer]]":
        """(custom_id, its answer, or ``None`` when the request was not answered) of one results line."""
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            raise ValueError(f"not a result with a custom_id: {str(line)[:200]}")
        custom_id = line["custom_id"]
        result = line.get("result")
        kind = result.get("type") if isinstance(result, dict) else None
        if kind == "succeeded":
            message = result.get("message")  # type: ignore[union-attr]
            output = self._llm.output_of_message(message, self._schemas.get(custom_id), source=where)
            return custom_id, BatchAnswer(output=output)
        if kind == "errored":
            error = result.get("error")  # type: ignore[union-attr]
            detail = error.get("error") if isinstance(error, dict) else None
            if not isinstance(detail, dict):
                raise ValueError(f"an errored result without its error: {str(result)[:200]}")
            error_type, text = detail.get("type") or "error", detail.get("message") or ""
            if error_type in _SERVICE_ERRORS:
                return custom_id, None
            return custom_id, BatchAnswer(error=f"{error_type}: {text}")
        if kind in ("canceled", "expired"):
            return custom_id, None
        raise ValueError(f"a result of unknown type {kind!r}")

    async def cancel(self, batch_id: str) -> None:
        await self._client.request("POST", f"{BATCHES_PATH}/{batch_id}/cancel")

    async def close(self) -> None:
        await self._client.close()
