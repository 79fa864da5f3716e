"""Generating a Task's output rows at run time, one input row at a time, on the process's event loop.

For each row: format the prompt (``task.format_input``), look it up in the response cache, call the LLM within
its client's limits and retries, store the answer as soon as it arrives, and parse it into the task's columns
(``task.rows_from_output``). Tasks that need several calls per row (``task.calls_in_sequence``) go through
``beam_distil.beam.sequential_calls`` instead. Nothing here raises for one row: a failure is the row's
``RowResult`` with ``failed`` and ``error`` set, so the row is kept, counted and dead-lettered::

    from beam_distil.beam.task_engine import generate_batch
    from beam_distil.models.event_loop import run_coroutine

    results = run_coroutine(generate_batch(task, rows, client, cache))
    [row for result in results for row in result.rows]

The engine knows a task only by what it exposes (``format_input``, ``generation_kwargs``, ``rows_from_output``,
``num_generations``, ``calls_in_sequence``), so it needs nothing from ``beam_distil.steps``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from beam_distil.beam.llm_calls import (
    RowResult, answered_row, cache_io, cached_row, call_llm, describe_error, failed_row,
)
from beam_distil.beam.sequential_calls import generate_conversation_row
from beam_distil.models.base import LLM
from beam_distil.models.in_flight import InFlightCounter, counting_requests_into

if TYPE_CHECKING:
    from beam_distil.cache import ResponseCache
    from beam_distil.steps.tasks.base import Task


async def generate_row(
    task: "Task", input: Dict[str, Any], client: LLM, cache: Optional["ResponseCache"] = None
) -> RowResult:
    """The output rows of one (already input-mapped) row, generated with ``client``.

    ``client`` is the process's shared, loaded copy of ``task.llm`` (the same configuration, possibly shared
    with other tasks); the generation kwargs are the task's own. With a ``cache``, a completion already paid for
    is reused and every new one is stored as soon as it arrives.
    """
    if task.calls_in_sequence:
        return await generate_conversation_row(task, input, client, cache)
    try:
        formatted = task.format_input(input)
    except Exception as error:  # noqa: BLE001 — the row is kept with its error, nothing was sent
        return failed_row(task, input, None, describe_error(error, client), requests=0)
    kwargs = task.generation_kwargs(input)
    key = cache.key(client, formatted, task.num_generations, kwargs) if cache is not None else None
    if key is not None:
        cached = await cached_row(task, input, formatted, cache, key)
        if cached is not None:
            return cached
    outcome = await call_llm(client, formatted, task.num_generations, kwargs)
    if outcome.error is not None:
        return failed_row(task, input, formatted, describe_error(outcome.error, client), requests=1,
                          retries=outcome.retries)
    result = answered_row(task, input, formatted, outcome.output, requests=1, retries=outcome.retries)
    # A failed result here is an answer without text: paid, but not cached, so a re-run asks again.
    if key is not None and not result.failed:
        await cache_io(cache, cache.put, key, outcome.output)
    return result


async def generate_batch(
    task: "Task",
    inputs: List[Dict[str, Any]],
    client: LLM,
    cache: Optional["ResponseCache"] = None,
    in_flight: Optional[InFlightCounter] = None,
) -> List[RowResult]:
    """``generate_row`` for every row of a batch, concurrently (the client's limits still apply). With
    ``in_flight``, the requests the rows have in flight are counted there."""
    with counting_requests_into(in_flight):
        return list(await asyncio.gather(*(generate_row(task, row, client, cache) for row in inputs)))
