"""The building blocks of a task's run-time work: one LLM call within its client's limits, the response cache's
reads and writes, and ``RowResult``, what one input row gave and cost. Used by ``task_engine`` (one call per row),
``offline_batches`` (one provider batch request per row) and ``sequential_calls`` (several calls per row)::

    outcome = await call_llm(client, [{"role": "user", "content": "Hi"}], num_generations=1, kwargs={})
    outcome.output["generations"] if outcome.error is None else describe_error(outcome.error, client)
"""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from beam_distil.models.base import AsyncLLM, CallOutcome, FormattedInput, GenerateOutput, LLM, missing_answers
from beam_distil.models.structured_output import call_arguments

if TYPE_CHECKING:
    from beam_distil.cache import ResponseCache
    from beam_distil.steps.tasks.base import Task


@dataclass
class RowResult:
    """A task's output rows for one input row, with what they cost."""

    rows: List[Dict[str, Any]]
    requests: int
    failed: bool
    input_tokens: int
    output_tokens: int
    retries: int = 0
    cache_hits: int = 0
    """Calls answered from the response cache (not paid again)."""
    error: Optional[str] = None
    """Why the row failed (also in its ``distilabel_metadata["error_<task>"]``)."""
    paid_in_batch: bool = False
    """Whether its tokens were paid at the provider's batch rate (``use_offline_batch_generation``)."""


async def cached_row(
    task: "Task", input: Dict[str, Any], formatted: FormattedInput, cache: "ResponseCache", key: str
) -> Optional[RowResult]:
    """The row's result from a completion already paid for under ``key``, or ``None``: not in the cache, or an
    answer without text that an older version cached (asked again)."""
    cached = await cache_io(cache, cache.get, key)
    if cached is None or missing_answers(cached):
        return None
    return RowResult(rows=task.rows_from_output(input, formatted, cached), requests=0, failed=False,
                     input_tokens=0, output_tokens=0, cache_hits=1)


def answered_row(
    task: "Task", input: Dict[str, Any], formatted: FormattedInput, output: GenerateOutput, requests: int,
    retries: int = 0, paid_in_batch: bool = False,
) -> RowResult:
    """The row's result from an answer it paid for. An answer without text in every generation (filtered,
    refused, empty) is a failure all the same: counted, dead-lettered, and not to be cached."""
    missing = missing_answers(output)
    return RowResult(
        rows=task.rows_from_output(input, formatted, output),
        requests=requests,
        failed=bool(missing),
        input_tokens=sum(output["statistics"]["input_tokens"]),
        output_tokens=sum(output["statistics"]["output_tokens"]),
        retries=retries,
        error=f"no answer: {'; '.join(missing)}" if missing else None,
        paid_in_batch=paid_in_batch,
    )


def failed_row(
    task: "Task", input: Dict[str, Any], formatted: Optional[FormattedInput], reason: str, requests: int,
    retries: int = 0,
) -> RowResult:
    """The row's result when its call failed, or was never made: the task's columns empty and ``reason`` kept."""
    return RowResult(rows=task.rows_from_output(input, formatted, None, error=reason), requests=requests,
                     failed=True, input_tokens=0, output_tokens=0, retries=retries, error=reason)


async def call_llm(client: LLM, prompt: FormattedInput, num_generations: int, kwargs: Dict[str, Any]) -> CallOutcome:
    """One generation call with the client's limits and retries. Never raises: a failure is the outcome's error.

    An ``AsyncLLM`` runs on this loop; a synchronous backend (llama.cpp) runs in a thread, so the loop keeps
    serving the other rows meanwhile. ``kwargs["structured_output"]`` (and the schema of a ``(chat, schema)``
    prompt) reaches the client the way it takes a schema (``call_arguments``).
    """
    prompt, kwargs = call_arguments(client, prompt, kwargs)
    if isinstance(client, AsyncLLM):
        return await client.acall(prompt, num_generations=num_generations, **kwargs)
    loop = asyncio.get_running_loop()
    # The thread runs in a copy of this context, so the model's in-flight marks reach the caller's counter.
    context = contextvars.copy_context()
    try:
        outputs = await loop.run_in_executor(
            None, lambda: context.run(client.generate, [prompt], num_generations=num_generations, **kwargs)
        )
    except Exception as error:  # noqa: BLE001 — returned, so the row keeps it
        return CallOutcome(output=None, error=error, retries=0)
    return CallOutcome(output=outputs[0], error=None, retries=0)


def describe_error(error: BaseException, client: LLM) -> str:
    """``"ErrorClass: message"`` with the client's secrets removed, as kept in rows and logs."""
    return client.redact(f"{type(error).__name__}: {error}")


async def cache_io(cache: "ResponseCache", operation: Callable[..., Any], *args: Any) -> Any:
    """Runs a cache read or write: a local file at once (microseconds, and an answer is stored before anything
    else can run, which is what makes a killed run resumable), a remote object store in a thread."""
    if cache.is_local:
        return operation(*args)
    return await asyncio.get_running_loop().run_in_executor(None, operation, *args)
