"""Provider batch APIs ("offline batch generation"): what a backend implements so that a task's requests go to its
provider's batch API, answered within hours at about half the online price.

A backend that has one sets ``supports_offline_batch_generation = True`` and returns an ``OfflineBatchAPI`` from
``offline_batch_api()`` (called on the worker, after ``load()``). The API object only speaks the provider's wire
format: it encodes requests as JSONL lines, submits a list of them as one batch, reports a batch's state, and
reads back its answers by ``custom_id``. Everything else (splitting within the provider's limits, the durable
ledger of batch ids, resuming, polling, resending, the response cache, row failures) is the engine's, in
``beam_distil.beam.offline_batches``, and is the same for every provider::

    llm = OpenAILLM(model="gpt-4o-mini", use_offline_batch_generation=True,
                    offline_batch_generation_block_until_done=60)   # poll every minute until done
    api = llm.offline_batch_api()
    line = api.encode_request(BatchRequest("c0ffee-0", [{"role": "user", "content": "Hi"}], 1, {}))
    batch_id = await api.submit([line], submission="3f2a...")
    status = await api.status(batch_id)          # BatchStatus(state="running", provider_status="in_progress", ...)
    answers = await api.answers(batch_id)        # {"c0ffee-0": BatchAnswer(output={...}, error=None)}
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Literal, Optional, TypeVar

from beam_distil.models.base import FormattedInput, GenerateOutput, request_parts

if TYPE_CHECKING:
    from beam_distil.models.base import LLM

BatchState = Literal["running", "completed", "failed", "expired", "cancelled"]
"""A batch's state as the engine acts on it. ``running`` covers every provider state before the end
(validating, queued, in progress, finalizing, cancelling); the other four are final."""

FINAL_STATES = ("completed", "failed", "expired", "cancelled")

T = TypeVar("T")


@dataclass(frozen=True)
class BatchRequest:
    """One request of a batch: ``num_generations`` answers to ``input`` with the task's generation ``kwargs``
    (``structured_output`` included, as a JSON schema). ``custom_id`` is how its answer is found again: at most 64
    characters of ``[A-Za-z0-9_-]``, which every provider accepts."""

    custom_id: str
    input: FormattedInput
    num_generations: int
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class BatchAnswer:
    """What a finished batch gave for one request: its parsed ``output`` (generations may still be ``None``, with
    their ``finish_reasons``: the engine counts those as failures), or the provider's ``error`` for it."""

    output: Optional[GenerateOutput] = None
    error: Optional[str] = None


@dataclass
class BatchStatus:
    """A batch's state and request counts as the provider reports them."""

    state: BatchState
    provider_status: str
    """The provider's own word for it (``validating``, ``in_progress``, ``JOB_STATE_RUNNING``...), for progress."""
    total: int = 0
    completed: int = 0
    failed: int = 0
    error: Optional[str] = None
    """Why a failed batch failed (the provider's validation errors), when it says."""

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES


class OfflineBatchAPI(ABC):
    """A provider's batch API, made by ``LLM.offline_batch_api()`` on the worker. Methods raise the backend's
    transport errors; the engine retries those that ``is_transient`` says are worth it."""

    provider: str = "provider"
    """Short name for logs and the ledger (``openai``, ``anthropic``, ``vertexai``)."""

    max_requests_per_batch: int = 50_000
    """The provider's limit of requests in one batch."""

    max_bytes_per_batch: int = 200 * 1024 * 1024
    """The provider's limit of one batch's input, in bytes of encoded lines (newlines included)."""

    @abstractmethod
    def encode_request(self, request: BatchRequest) -> bytes:
        """``request`` as one line of the provider's batch input (UTF-8 JSON, no trailing newline). Raises
        ``ValueError`` for a request the provider cannot take (the row fails, nothing is sent)."""

    @abstractmethod
    async def submit(self, lines: List[bytes], submission: str) -> str:
        """Uploads ``lines`` and creates one batch of them; returns the provider's batch id. ``submission`` (a hex
        digest) is attached to the batch where the API allows (metadata, display name), so ``find_batch`` can find
        the batch again if the process dies before the id is recorded."""

    async def find_batch(self, submission: str) -> Optional[str]:
        """The id of a batch made by ``submit(..., submission)``, or ``None``: none, or the API cannot tell."""
        return None

    @abstractmethod
    async def status(self, batch_id: str) -> BatchStatus:
        """The batch's state and counts."""

    @abstractmethod
    async def answers(self, batch_id: str) -> Dict[str, BatchAnswer]:
        """Every request of a final batch that got an answer or an error of its own, by ``custom_id``. For an
        expired, cancelled or failed batch that is the part it finished; a request missing here was never
        answered (the engine resends it or fails its row, as the LLM's ``offline_batch_unanswered`` says)."""

    async def cancel(self, batch_id: str) -> None:
        """Asks the provider to cancel the batch (not needed by the engine; for users and tests)."""
        raise NotImplementedError(f"{type(self).__name__} cannot cancel batches")

    def is_transient(self, error: BaseException) -> bool:
        """Whether a failed call of this API is worth trying again (rate limited, 5xx, reset, timeout)."""
        from beam_distil.models.rest import classify_http_error

        return classify_http_error(error).retryable

    async def close(self) -> None:
        """Releases the API's HTTP session."""


def split_within_limits(items: List[T], sizes: List[int], max_requests: int, max_bytes: int) -> List[List[T]]:
    """``items`` in order, cut into as few groups as keep each within ``max_requests`` items and ``max_bytes``
    bytes, where an item takes its size plus a newline (one JSONL line each). An item larger than ``max_bytes``
    alone is a group of its own: the provider refuses it, and says why."""
    groups: List[List[T]] = []
    current: List[T] = []
    size = 0
    for item, item_size in zip(items, sizes):
        line_size = item_size + 1
        if current and (len(current) >= max_requests or size + line_size > max_bytes):
            groups.append(current)
            current, size = [], 0
        current.append(item)
        size += line_size
    if current:
        groups.append(current)
    return groups


def answer_of_requests(answers: List[BatchAnswer]) -> BatchAnswer:
    """One row's answer from the answers to its requests, in generation order (a provider without ``n`` answers
    each generation in a request of its own): their outputs combined, or the first error."""
    from beam_distil.models.base import combine_outputs

    for answer in answers:
        if answer.output is None:
            return BatchAnswer(error=answer.error or "no answer")
    return BatchAnswer(output=combine_outputs([answer.output for answer in answers]))  # type: ignore[misc]


class DirectOfflineBatchGeneration:
    """distilabel's ``LLM.offline_batch_generate`` for a backend with a batch API (put before the LLM base class)::

        llm = OpenAILLM(model="gpt-4o-mini", use_offline_batch_generation=True)
        try:
            outputs = llm.offline_batch_generate([[{"role": "user", "content": "Hi"}]])
        except DistilabelOfflineBatchGenerationNotFinishedException as waiting:
            ...   # later: llm.offline_batch_generate(), with llm.jobs_ids == waiting.jobs_ids
    """

    def offline_batch_generate(
        self, inputs: Optional[List[FormattedInput]] = None, num_generations: int = 1, **kwargs: Any
    ) -> List[GenerateOutput]:
        return offline_batch_generate(self, inputs, num_generations, kwargs)  # type: ignore[arg-type]


def offline_batch_generate(
    llm: "LLM", inputs: Optional[List[FormattedInput]], num_generations: int, kwargs: Dict[str, Any]
) -> List[GenerateOutput]:
    """distilabel's ``LLM.offline_batch_generate`` outside a pipeline (``llm.offline_batch_generate(inputs)``).

    The first call submits ``inputs`` (one batch per provider limit) and records the batch ids in
    ``llm.jobs_ids``; later calls poll those batches. Until they have ended, it polls every
    ``offline_batch_generation_block_until_done`` seconds, or, when that is ``None``, raises
    ``DistilabelOfflineBatchGenerationNotFinishedException`` with the ids: call it again later. It returns one
    ``GenerateOutput`` per input, in order; a request the provider failed, or left unanswered, has ``None``
    generations and the reason in its ``finish_reasons``. This keeps no ledger and fills no cache: in a pipeline,
    a task does both (``beam_distil.beam.offline_batches``).
    """
    import asyncio

    from beam_distil.exceptions import DistilabelOfflineBatchGenerationNotFinishedException
    from beam_distil.models.event_loop import run_coroutine
    from beam_distil.models.structured_output import call_arguments

    if not type(llm).supports_offline_batch_generation:
        raise NotImplementedError(f"{type(llm).__name__} has no provider batch API")
    if llm.jobs_ids is None and not inputs:
        raise ValueError("offline_batch_generate needs the inputs on its first call (no batch submitted yet)")
    api = llm.offline_batch_api()  # loads the LLM's client if needed
    parts = len(request_parts(llm, num_generations, kwargs))

    async def submit() -> None:
        lines = []
        for index, input in enumerate(inputs or []):
            prompt, call_kwargs = call_arguments(llm, input, kwargs, default_schema=llm.structured_output)
            for part, (generations, part_kwargs) in enumerate(request_parts(llm, num_generations, call_kwargs)):
                lines.append(api.encode_request(BatchRequest(f"input-{index}-{part}", prompt, generations, part_kwargs)))
        limit = min(api.max_requests_per_batch, llm.offline_batch_max_requests or api.max_requests_per_batch)
        groups = split_within_limits(lines, [len(line) for line in lines], limit, api.max_bytes_per_batch)
        llm.jobs_ids = tuple(
            [await api.submit(group, submission=f"direct-{id(llm):x}-{number}") for number, group in enumerate(groups)]
        )

    async def collect() -> Dict[str, BatchAnswer]:
        while True:
            statuses = [await api.status(job_id) for job_id in llm.jobs_ids or ()]
            if all(status.is_final for status in statuses):
                break
            if llm.offline_batch_generation_block_until_done is None:
                raise DistilabelOfflineBatchGenerationNotFinishedException(llm.jobs_ids or ())
            await asyncio.sleep(llm.offline_batch_generation_block_until_done)
        answers: Dict[str, BatchAnswer] = {}
        for job_id in llm.jobs_ids or ():
            answers.update(await api.answers(job_id))
        return answers

    async def run() -> Dict[str, BatchAnswer]:
        try:
            if llm.jobs_ids is None:
                await submit()
            return await collect()
        finally:
            await api.close()

    answers = run_coroutine(run())
    if inputs:
        count = len(inputs)
    else:  # polling batches of an earlier call: as many inputs as the highest one answered
        count = 1 + max((int(custom_id.split("-")[1]) for custom_id in answers), default=-1)
    outputs = []
    for index in range(count):
        answer = answer_of_requests(
            [answers.get(f"input-{index}-{part}") or BatchAnswer(error="left unanswered by the batch") for part in range(parts)]
        )
        if answer.output is not None:
            outputs.append(answer.output)
        else:
            outputs.append({
                "generations": [None] * num_generations,
                "statistics": {"input_tokens": [0], "output_tokens": [0]},
                "finish_reasons": [f"error: {answer.error}"] * num_generations,
            })
    llm.jobs_ids = None  # collected: the next call submits anew, as in distilabel
    return outputs
