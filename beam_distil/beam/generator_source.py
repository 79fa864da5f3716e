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
    def __init__(
        self,
        step: "GeneratorStep",
        first_position: int,
        first_row: int,
        row_limit: Optional[int],
        progress_board_id: Optional[str],
    ) -> None:
        self._step = step
        self._first_position = first_position  # the position of the step's first row
        self._first_row = first_row
        self._row_limit = row_limit
        self._progress_board_id = progress_board_id
        self._rows_out = Metrics.counter(step.name, "rows_out")
        self._unencodable_rows = Metrics.counter(step.name, "unencodable_rows")
        self._malformed_input_lines = Metrics.counter(step.name, "malformed_input_lines")

    def setup(self) -> None:
        self._step.load()

    def process(self, _: Any) -> Iterator[KeyedRow]:
        # Reported even when no row is in range: a run in slices reads it to tell where the rows end.
        self._rows_out.inc(0)
        index = self._first_position
        # Rows before `first_row` are read and skipped, not asked for with `offset`: a generator written for
        # distilabel may ignore its offset, and its row ids must be its positions whatever it does.
        for rows, _last_batch in self._step.process(offset=0):
            skipped = min(max(self._first_row - index, 0), len(rows))
            index += skipped
            rows = rows[skipped:]
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
    after it lets the following steps run in parallel instead of fused into that single call. Only the rows at
    positions ``first_row`` to ``row_limit`` (excluded; ``None``: to the end) are emitted, with their positions
    as row ids: a run in slices (``beam_distil.beam.row_slices``) gives each slice its range.

    ``spread=False`` leaves the reshuffle out, for a runner with a single worker: there it spreads nothing and
    only makes the following steps wait until the generator has emitted its last row.
    """

    def __init__(
        self,
        step: "GeneratorStep",
        row_limit: Optional[int] = None,
        progress_board_id: Optional[str] = None,
        first_row: int = 0,
        spread: bool = True,
    ) -> None:
        super().__init__()
        self._step = step
        self._first_row = first_row
        self._row_limit = row_limit
        self._progress_board_id = progress_board_id
        self._spread = spread

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        # A step that can narrow itself to the range is carried narrowed: the job then holds only its own rows.
        step, first_position = self._step, 0
        if self._first_row or self._row_limit is not None:
            narrowed = self._step.rows_between(self._first_row, self._row_limit)
            if narrowed is not None:
                step, first_position = narrowed, self._first_row
        rows = (
            pbegin
            | "Start" >> beam.Impulse()
            | "Generate" >> beam.ParDo(
                _GenerateDoFn(step, first_position, self._first_row, self._row_limit, self._progress_board_id)
            )
        )
        return rows | "Spread" >> beam.Reshuffle() if self._spread else rows
