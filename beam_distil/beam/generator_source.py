"""``GenerateRows``: a GeneratorStep as a Beam source of ``(row_id, row)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_distil import progress
from beam_distil.rows import KeyedRow, encodable_row

if TYPE_CHECKING:
    from beam_distil.steps.base import GeneratorStep


class _GenerateDoFn(beam.DoFn):
    def __init__(self, step: "GeneratorStep", row_limit: Optional[int], progress_board_id: Optional[str]) -> None:
        self._step = step
        self._row_limit = row_limit
        self._progress_board_id = progress_board_id
        self._rows_out = Metrics.counter(step.name, "rows_out")
        self._unencodable_rows = Metrics.counter(step.name, "unencodable_rows")
        self._malformed_input_lines = Metrics.counter(step.name, "malformed_input_lines")

    def setup(self) -> None:
        self._step.load()

    def process(self, _: Any) -> Iterator[KeyedRow]:
        index = 0
        for rows, _last_batch in self._step.process(offset=0):
            if self._row_limit is not None:
                rows = rows[: max(self._row_limit - index, 0)]
            for row in rows:
                row, fixed = encodable_row(self._step.rename_outputs(row), self._step.name, drop_values=True)
                if fixed:
                    self._unencodable_rows.inc()
                yield (index,), row
                index += 1
            self._rows_out.inc(len(rows))
            progress.report(self._progress_board_id, self._step.name, rows_out=len(rows))
            if self._row_limit is not None and index >= self._row_limit:
                break
        # Lines of the input files that could not be read (reported by the step, which skipped them).
        self._malformed_input_lines.inc(getattr(self._step, "malformed_input_lines", 0))

    def teardown(self) -> None:
        self._step.unload()


class GenerateRows(beam.PTransform):
    """Runs a generator once and spreads its rows over the workers.

    The generator runs in one DoFn call so row ids are its positions, stable across runs; the reshuffle
    after it lets the following steps run in parallel instead of fused into that single call.
    """

    def __init__(
        self, step: "GeneratorStep", row_limit: Optional[int] = None, progress_board_id: Optional[str] = None
    ) -> None:
        super().__init__()
        self._step = step
        self._row_limit = row_limit
        self._progress_board_id = progress_board_id

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "Start" >> beam.Impulse()
            | "Generate" >> beam.ParDo(_GenerateDoFn(self._step, self._row_limit, self._progress_board_id))
            | "Spread" >> beam.Reshuffle()
        )
