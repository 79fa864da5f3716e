"""``TaskDoFn``: a Task as a batched DoFn that keeps a window of LLM requests in flight across batches.

distilabel sends a batch, waits for all of it, then sends the next: the server idles while the slowest answer
of each batch comes back. Here each batch is handed to the process's event loop and ``process`` returns at
once; batches are emitted as they finish, whichever finishes first, and ``process`` only blocks (until some
batch finishes) when more than its window of rows is pending. The rest is emitted in ``finish_bundle``. Rows
may leave in another order than they came: the pipeline's outputs are ordered by row id, not by arrival. The
client and its concurrency cap are shared by the whole process (``shared_llms``), so threads add throughput,
not connections.
"""

from __future__ import annotations

import concurrent.futures
import queue
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, List, Optional, Set

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import BoundedWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from beam_distil import progress
from beam_distil.beam import shared_llms
from beam_distil.beam.llm_calls import RowResult
from beam_distil.beam.task_engine import generate_batch
from beam_distil.cache import ResponseCache
from beam_distil.models import event_loop
from beam_distil.models.base import AsyncLLM
from beam_distil.models.in_flight import InFlightCounter
from beam_distil.rows import KeyedRow, RowId, child_ids, encodable_row

if TYPE_CHECKING:
    from beam_distil.steps.tasks.base import Task


DEAD_LETTER_TAG = "dead_letters"
"""The tagged output holding ``{"step", "row_id", "error", "row"}`` for every row whose call failed for good."""


@dataclass(eq=False)  # compared by identity: a batch is in the pending set once
class _PendingBatch:
    row_ids: List[RowId]
    future: "concurrent.futures.Future[List[RowResult]]"
    window: BoundedWindow
    timestamp: Timestamp


class TaskDoFn(beam.DoFn):
    """Runs ``task`` on batches of ``(row_id, row)``; emits ``(row_id, row)`` with the task's columns added.

    With ``cache_dir``, completions are read from and written to the response cache there.
    """

    def __init__(
        self,
        task: "Task",
        cache_dir: Optional[str] = None,
        max_requests_in_flight: Optional[int] = None,
        progress_board_id: Optional[str] = None,
    ) -> None:
        self._task = task
        self._cache_dir = cache_dir
        self._max_requests_in_flight = max_requests_in_flight
        self._progress_board_id = progress_board_id
        name = task.name
        self._rows_in = Metrics.counter(name, "rows_in")
        self._rows_out = Metrics.counter(name, "rows_out")
        self._requests = Metrics.counter(name, "llm_requests")
        self._failures = Metrics.counter(name, "llm_failures")
        self._input_tokens = Metrics.counter(name, "input_tokens")
        self._output_tokens = Metrics.counter(name, "output_tokens")
        # The part of the tokens paid at the provider's batch rate (use_offline_batch_generation).
        self._batch_input_tokens = Metrics.counter(name, "batch_input_tokens")
        self._batch_output_tokens = Metrics.counter(name, "batch_output_tokens")
        self._retries = Metrics.counter(name, "llm_retries")
        self._cache_hits = Metrics.counter(name, "cache_hits")
        self._unencodable_rows = Metrics.counter(name, "unencodable_rows")
        # Requests sent and not yet answered (queued ones not included): now, and the most at once.
        self._requests_in_flight = Metrics.gauge(name, "llm_requests_in_flight")
        self._requests_in_flight_peak = Metrics.gauge(name, "llm_requests_in_flight_peak")
        self._cache_problems = {
            problem: Metrics.counter(name, problem) for problem in ("cache_write_failures", "cache_corrupt_entries")
        }

    def setup(self) -> None:
        self._client = shared_llms.acquire(self._task.llm)
        self._cache = ResponseCache(self._cache_dir) if self._cache_dir else None
        if self._max_requests_in_flight is not None:
            self._window = self._max_requests_in_flight
        elif isinstance(self._client, AsyncLLM):
            # Twice the cap keeps the next requests queued behind the semaphore, so it never drains. At least two
            # batches: Beam fuses sibling tasks into one thread, and while this DoFn waits for its oldest batch
            # the others receive nothing, so each must hold enough queued work to keep its own cap busy meanwhile.
            self._window = 2 * max(self._client.max_concurrency, self._task.input_batch_size)
        else:
            self._window = self._task.input_batch_size
        self._in_flight = InFlightCounter(on_change=self._report_in_flight)

    def _report_in_flight(self, delta: int) -> None:
        progress.report(self._progress_board_id, self._task.name, in_flight=delta)

    def start_bundle(self) -> None:
        self._pending: Set[_PendingBatch] = set()
        # Batches whose future is done, put there by the future's callback (on the event loop's thread).
        self._finished: "queue.SimpleQueue[_PendingBatch]" = queue.SimpleQueue()
        self._rows_pending = 0

    def process(
        self,
        batch: List[KeyedRow],
        window: BoundedWindow = beam.DoFn.WindowParam,
        timestamp: Timestamp = beam.DoFn.TimestampParam,
    ) -> Iterator[WindowedValue]:
        rows = self._task.rename_inputs([row for _, row in batch])
        future = event_loop.submit(generate_batch(self._task, rows, self._client, self._cache, self._in_flight))
        pending = _PendingBatch([row_id for row_id, _ in batch], future, window, timestamp)
        self._pending.add(pending)
        future.add_done_callback(lambda _, pending=pending: self._finished.put(pending))
        self._rows_pending += len(batch)
        self._rows_in.inc(len(batch))
        progress.report(self._progress_board_id, self._task.name, rows_in=len(batch))
        yield from self._emit_finished(wait_for_all=False)

    def finish_bundle(self) -> Iterator[WindowedValue]:
        yield from self._emit_finished(wait_for_all=True)
        self._count_cache_problems()

    def _count_cache_problems(self) -> None:
        # Counted here, in the Beam thread, from what the cache met on the event loop.
        if self._cache is not None:
            for problem, count in self._cache.take_counts().items():
                self._cache_problems[problem].inc(count)

    def _emit_finished(self, wait_for_all: bool) -> Iterator[WindowedValue]:
        # Whatever has finished goes out now; past the window (or at the bundle's end) wait for more. Waiting for
        # any batch rather than the oldest matters when Beam fuses sibling tasks into this thread: they receive
        # nothing while this one waits.
        self._requests_in_flight.set(self._in_flight.current)
        self._requests_in_flight_peak.set(self._in_flight.peak)
        while self._pending:
            must_wait = wait_for_all or self._rows_pending > self._window
            try:
                finished = self._finished.get(block=must_wait)
            except queue.Empty:
                return
            yield from self._emit(finished)

    def _emit(self, batch: _PendingBatch) -> Iterator[WindowedValue]:
        self._pending.discard(batch)
        self._rows_pending -= len(batch.row_ids)
        for row_id, result in zip(batch.row_ids, batch.future.result()):
            yield from self._emit_result(row_id, result, batch.window, batch.timestamp)

    def _emit_result(
        self, row_id: RowId, result: RowResult, window: BoundedWindow, timestamp: Timestamp
    ) -> Iterator[WindowedValue]:
        """The output rows of one input row (and their dead-letter copies when it failed), counted."""
        self._count(result)
        rows = [self._encodable(self._task.rename_outputs(row)) for row in result.rows]
        for output_id, row in zip(child_ids(row_id, len(rows)), rows):
            yield WindowedValue((output_id, row), timestamp, (window,))
            if result.failed:
                # The row also stays in the main output; this copy is for whoever reruns the failures.
                record = {"step": self._task.name, "row_id": list(output_id), "error": result.error, "row": row}
                yield TaggedOutput(DEAD_LETTER_TAG, WindowedValue(record, timestamp, (window,)))

    def _encodable(self, row: dict) -> dict:
        # An answer can hold a lone surrogate (a JSON "\ud800" escape): kept escaped, so the row can be encoded.
        row, fixed = encodable_row(row, self._task.name, drop_values=False)
        if fixed:
            self._unencodable_rows.inc()
        return row

    def _count(self, result: RowResult) -> None:
        # Metrics live in the Beam thread's context, so they are counted here, not on the event loop.
        self._requests.inc(result.requests)
        self._failures.inc(int(result.failed))
        self._input_tokens.inc(result.input_tokens)
        self._output_tokens.inc(result.output_tokens)
        if result.paid_in_batch:
            self._batch_input_tokens.inc(result.input_tokens)
            self._batch_output_tokens.inc(result.output_tokens)
        self._retries.inc(result.retries)
        self._cache_hits.inc(result.cache_hits)
        progress.report(
            self._progress_board_id,
            self._task.name,
            rows_out=len(result.rows),
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            failures=int(result.failed),
        )
        self._rows_out.inc(len(result.rows))

    def teardown(self) -> None:
        for pending in getattr(self, "_pending", ()):
            pending.future.cancel()
