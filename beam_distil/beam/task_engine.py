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

from beam_distil.beam.llm_calls import RowResult, cache_io, call_llm, describe_error
from beam_distil.beam.sequential_calls import generate_conversation_row
from beam_distil.models.base import LLM, missing_answers
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
        reason = describe_error(error, client)
        return RowResult(rows=task.rows_from_output(input, None, None, error=reason), requests=0, failed=True,
                         input_tokens=0, output_tokens=0, error=reason)
    kwargs = task.generation_kwargs(input)
    key = cache.key(client, formatted, task.num_generations, kwargs) if cache is not None else None
    if key is not None:
        cached = await cache_io(cache, cache.get, key)
        if cached is not None and not missing_answers(cached):  # an empty answer cached by an older version
            return RowResult(rows=task.rows_from_output(input, formatted, cached), requests=0, failed=False,
                             input_tokens=0, output_tokens=0, cache_hits=1)
    outcome = await call_llm(client, formatted, task.num_generations, kwargs)
    if outcome.error is not None:
        reason = describe_error(outcome.error, client)
        return RowResult(rows=task.rows_from_output(input, formatted, None, error=reason), requests=1, failed=True,
                         input_tokens=0, output_tokens=0, retries=outcome.retries, error=reason)
    output = outcome.output
    missing = missing_answers(output)
    # An answer without text (filtered, refused, empty) was paid but is a failure: counted, dead-lettered, and
    # not cached, so a re-run asks again.
    if key is not None and not missing:
        await cache_io(cache, cache.put, key, output)
    return RowResult(
        rows=task.rows_from_output(input, formatted, output),
        requests=1,
        failed=bool(missing),
        input_tokens=sum(output["statistics"]["input_tokens"]),
        output_tokens=sum(output["statistics"]["output_tokens"]),
        retries=outcome.retries,
        error=f"no answer: {'; '.join(missing)}" if missing else None,
    )


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
