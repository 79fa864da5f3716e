"""``OfflineBatchTaskDoFn``: a Task whose LLM sends its requests to the provider's batch API
(``use_offline_batch_generation=True``), as a DoFn.

Where ``TaskDoFn`` keeps a window of online requests in flight, this one gathers its bundle's rows and, at the
bundle's end, hands them to ``OfflineBatches`` (``beam_distil.beam.offline_batches``): one or more provider batches
per bundle, recorded in the ledger next to the response cache, polled until done. Bundles run in parallel on every
worker, each polling its own batches, so a large input becomes many batches in flight at once; a bundle Beam
retries (a worker lost, a crash) finds its batches in the ledger instead of paying for them again.

Rows whose batch is still running when the DoFn stops waiting (``offline_batch_generation_block_until_done=None``)
leave on the ``WAITING_TAG`` output and are counted (``rows_waiting_on_batches``): they are not lost, a later run
collects them, and the run ends with ``DistilabelOfflineBatchGenerationNotFinishedException``.
"""

from __future__ import annotations

from typing import Iterator, List, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import BoundedWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from beam_distil import progress
from beam_distil.beam.batch_ledger import BatchLedger
from beam_distil.beam.offline_batches import OfflineBatches
from beam_distil.beam.task_dofn import TaskDoFn
from beam_distil.models import event_loop
from beam_distil.rows import KeyedRow, Row, RowId

WAITING_TAG = "waiting_on_batches"
"""The tagged output holding ``{"step", "row_id", "row"}`` for every row still waiting on a running batch."""


class OfflineBatchTaskDoFn(TaskDoFn):
    """Runs ``task`` on batches of ``(row_id, row)`` through the provider's batch API; emits ``(row_id, row)``
    with the task's columns added, at the end of each bundle. Needs ``cache_dir`` (the ledger lives there)."""

    def setup(self) -> None:
        super().setup()
        if self._cache is None:
            raise ValueError(
                f"Task {self._task.name!r} sends its requests to a provider batch API, whose batch ids are recorded"
                " next to the response cache: run it with the cache on (use_cache=True)."
            )
        self._api = self._client.offline_batch_api()
        self._batches = OfflineBatches(
            self._task, self._client, self._api, self._cache, BatchLedger(self._cache.directory), self._report_batches
        )
        name = self._task.name
        self._rows_waiting = Metrics.counter(name, "rows_waiting_on_batches")
        self._batch_counters = {
            field: Metrics.counter(name, field)
            for field in ("batches_submitted", "batches_resumed", "requests_submitted", "requests_resent")
        }

    def _report_batches(self, **deltas: int) -> None:
        progress.report(self._progress_board_id, self._task.name, **deltas)

    def start_bundle(self) -> None:
        super().start_bundle()
        self._gathered: List[Tuple[RowId, Row, BoundedWindow, Timestamp]] = []

    def process(
        self,
        batch: List[KeyedRow],
        window: BoundedWindow = beam.DoFn.WindowParam,
        timestamp: Timestamp = beam.DoFn.TimestampParam,
    ) -> Iterator[WindowedValue]:
        rows = self._task.rename_inputs([row for _, row in batch])
        self._gathered.extend((row_id, row, window, timestamp) for (row_id, _), row in zip(batch, rows))
        self._rows_in.inc(len(batch))
        progress.report(self._progress_board_id, self._task.name, rows_in=len(batch))
        return iter(())

    def finish_bundle(self) -> Iterator[WindowedValue]:
        gathered, self._gathered = self._gathered, []
        if not gathered:
            return
        results, counts = event_loop.run_coroutine(
            self._batches.generate([g[0] for g in gathered], [g[1] for g in gathered])
        )
        for field, counter in self._batch_counters.items():
            counter.inc(getattr(counts, field))
        for (row_id, row, window, timestamp), result in zip(gathered, results):
            if result is None:
                self._rows_waiting.inc()
                record = {"step": self._task.name, "row_id": list(row_id), "row": row}
                yield TaggedOutput(WAITING_TAG, WindowedValue(record, timestamp, (window,)))
                continue
            yield from self._emit_result(row_id, result, window, timestamp)
        self._count_cache_problems()

    def teardown(self) -> None:
        api = getattr(self, "_api", None)
        if api is not None:
            event_loop.run_coroutine(api.close())
        super().teardown()
