"""``ExactDedup``: removes rows whose values in some columns repeat those of a row with a smaller row id.

Example::

    ExactDedup(columns=["instruction"])                    # one row per distinct instruction: the first
    ExactDedup(columns=["instruction", "generation"], keep_duplicates=True)
    # every row kept, with `keep_row_after_exact_dedup` (bool)

On Beam, rows are keyed by a hash of their values in ``columns`` and grouped by key (``GroupByKey``); in each
group the row with the smallest row id is kept. Only rows with equal values meet, so it scales with the data.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Dict, Iterable, Iterator, List, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from pydantic import Field

from beam_distil.rows import KeyedRow, Row
from beam_distil.steps.base import Step, StepColumns, StepInput, StepOutput
from beam_distil.steps.dedup.lsh import WithRowIds, keep_or_mark

KEEP_COLUMN = "keep_row_after_exact_dedup"


def values_key(row: Row, columns: List[str]) -> str:
    """A stable hash of ``row``'s values in ``columns`` (a missing column counts as ``None``)."""
    values = [row.get(column) for column in columns]
    text = json.dumps(values, sort_keys=True, default=repr, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _KeepFirst(beam.DoFn):
    def __init__(self, step_name: str, columns: List[str], keep_duplicates: bool, column: str) -> None:
        self._columns = columns
        self._keep_duplicates = keep_duplicates
        self._column = column
        self._dropped = Metrics.counter(step_name, "duplicates")

    def process(self, element: Tuple[str, Iterable[KeyedRow]]) -> Iterator[KeyedRow]:
        _, members = element
        members = sorted(members, key=lambda keyed: keyed[0])
        # Equal hashes of unequal values (practically never): each distinct value keeps its own first row.
        seen: Dict[str, bool] = {}
        for row_id, row in members:
            exact = json.dumps([row.get(c) for c in self._columns], sort_keys=True, default=repr)
            keep = exact not in seen
            seen[exact] = True
            if not keep:
                self._dropped.inc()
            yield from keep_or_mark(row_id, row, keep, self._keep_duplicates, self._column)


class _ExactDedupTransform(beam.PTransform):
    def __init__(self, step_name: str, columns: List[str], keep_duplicates: bool, column: str) -> None:
        super().__init__()
        self._args = (step_name, columns, keep_duplicates, column)

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        columns = self._args[1]
        return (
            rows
            | "KeyByValues" >> beam.Map(lambda keyed: (values_key(keyed[1], columns), keyed))
            | "GroupByValues" >> beam.GroupByKey()
            | "KeepFirst" >> beam.ParDo(_KeepFirst(*self._args))
        )


class ExactDedup(Step):
    """Removes (or marks) rows whose ``columns`` values equal those of an earlier row (smaller row id).

    Input columns:
        - the ``columns`` given.

    Output columns:
        - keep_row_after_exact_dedup (``bool``): only with ``keep_duplicates=True``.
    """

    columns: List[str] = Field(min_length=1, description="The columns whose values must all be equal.")
    keep_duplicates: bool = False

    changes_row_count: ClassVar[bool] = True

    @property
    def inputs(self) -> StepColumns:
        return list(self.columns)

    @property
    def outputs(self) -> StepColumns:
        return [KEEP_COLUMN]

    def columns_after(self, available: List[str]) -> List[str]:
        return super().columns_after(available) if self.keep_duplicates else list(available)

    def keyed_transform(self) -> beam.PTransform:
        columns = list(self.get_inputs())
        column = self.output_mappings.get(KEEP_COLUMN, KEEP_COLUMN)
        return _ExactDedupTransform(self.name or "exact_dedup", columns, self.keep_duplicates, column)

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        return pcoll | WithRowIds(self.keyed_transform())

    def process(self, inputs: StepInput) -> StepOutput:
        """The same rule on one batch (for direct calls; on Beam the step runs ``keyed_transform()``)."""
        seen: Dict[str, Any] = {}
        out: List[Row] = []
        for row in inputs:
            key = json.dumps([row.get(c) for c in self.columns], sort_keys=True, default=repr)
            keep = key not in seen
            seen[key] = True
            if self.keep_duplicates:
                out.append({**row, KEEP_COLUMN: keep})
            elif keep:
                out.append(row)
        yield out
