"""Local runs in slices of rows, so that memory does not grow with the number of rows.

The local runner (``FnApiRunner``) runs a pipeline one stage at a time and keeps each stage's whole output in
memory until the next stage has read it: about 3.7 KB per row for the docs pipeline, 4 GB at a million rows. So
a local run goes through its generators' rows in slices: one Beam job per ``rows_per_slice`` positions, one
after the other, each writing its own files (``part-slice00001-...``) into the same folders. Row ids are the
generators' positions, so joins, routing (decided per batch of positions) and the order of the results are those
of a run in one piece; the response cache, dead letters, counters and progress span the slices::

    for row_slice in row_slices(dag, rows_per_slice=50_000, row_limit=None):
        result = run_one_job(first_row=row_slice.first_row, row_limit=row_slice.row_limit,
                             file_label=row_slice.file_label)
        if row_slice.is_last(counters_by_step(result)):
            break

A pipeline runs in one piece where slicing would change what it computes (``why_not_sliced``), and on remote
runners, which keep nothing of the kind in memory.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional

if TYPE_CHECKING:
    from beam_distil.pipeline.dag import DAG

DEFAULT_ROWS_PER_SLICE = 50_000
"""Rows per local Beam job: at ~3.7 KB per row in flight between stages, about 200 MB on top of the process."""


def why_not_sliced(dag: "DAG") -> Optional[str]:
    """Why this pipeline must run in one piece, or ``None`` when it can run in slices."""
    for name in dag.topological_order():
        step = dag.steps[name]
        if step.is_generator:
            # Any model a generator holds (an LLM, an embedding model) is asked again for the rows it skips.
            if any(getattr(step, field, None) is not None for field in ("llm", "embeddings")):
                return f"generator {name!r} calls an LLM: each slice would generate (and pay for) the rows it skips"
            continue
        if step.is_global:
            return f"step {name!r} is a global step: it needs every row at once"
        if step.is_task and step.llm.use_offline_batch_generation:
            # In slices, each slice would wait for its own batches (hours) before the next slice could submit.
            return f"task {name!r} sends its rows to a provider batch API: they go out together, in one job"
        if step.keyed_transform() is not None:
            return f"step {name!r} runs its own Beam transform over all the rows"
    return None


@dataclass(frozen=True)
class RowSlice:
    """One Beam job's share of the run: the generators' rows at positions ``first_row`` to ``row_limit``."""

    index: int
    first_row: int
    row_limit: Optional[int]
    """The position after the slice's last row; ``None``: to the end."""
    generators: List[str]

    @property
    def file_label(self) -> str:
        """Added to the names of the files the slice writes; the first slice's files are named as in one piece."""
        return "" if self.index == 0 else f"-slice{self.index:05d}"

    def is_last(self, counters: Dict[str, Dict[str, int]]) -> bool:
        """Whether the generators ran out within this slice, from the job's counters (``counters_by_step``)."""
        if self.row_limit is None:
            return True
        size = self.row_limit - self.first_row
        for name in self.generators:
            emitted = counters.get(name, {}).get("rows_out")
            if emitted is None:
                raise RuntimeError(f"The runner reported no row count for generator {name!r}: cannot tell where its rows end.")
            if emitted >= size:
                return False
        return True


def row_slices(dag: "DAG", rows_per_slice: Optional[int], row_limit: Optional[int]) -> Iterator[RowSlice]:
    """The slices of a local run, in order; a single one when ``rows_per_slice`` is ``None`` or the pipeline must
    run in one piece. ``row_limit`` (at most this many rows per generator) ends the last slice."""
    generators = [name for name in dag.topological_order() if dag.steps[name].is_generator]
    if rows_per_slice is None or why_not_sliced(dag) is not None:
        yield RowSlice(0, 0, row_limit, generators)
        return
    if rows_per_slice < 1:
        raise ValueError(f"rows_per_slice must be at least 1, got {rows_per_slice}")
    for index in itertools.count():
        first_row = index * rows_per_slice
        end = first_row + rows_per_slice
        if row_limit is not None:
            if first_row >= row_limit:
                return
            end = min(end, row_limit)
        yield RowSlice(index, first_row, end, generators)
