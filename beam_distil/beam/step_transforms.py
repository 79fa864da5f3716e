"""Steps on ``(row_id, row)`` PCollections: batching, ``process``, row-id bookkeeping, joins.

* ``Step``: ``BatchElements(input_batch_size)`` then a DoFn calling ``process``.
* ``Task``: the same batches into ``TaskDoFn`` (many requests in flight across batches).
* ``GlobalStep``: ``CombineGlobally`` gathers every row, sorted by row id, into one ``process`` call.
* several predecessors: ``JoinOnRowId`` (``CoGroupByKey``) first; ``process`` then gets one list per
  predecessor, aligned row by row, as distilabel's convergence does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_distil import progress
from beam_distil.beam.batch_task_dofn import WAITING_TAG, OfflineBatchTaskDoFn
from beam_distil.beam.task_dofn import DEAD_LETTER_TAG, TaskDoFn
from beam_distil.rows import KeyedRow, Row, RowId, child_ids, encodable_row

if TYPE_CHECKING:
    from beam_distil.steps.base import _Step
    from beam_distil.steps.tasks.base import Task

JoinedRow = Tuple[RowId, Tuple[Tuple[str, ...], List[Row]]]
"""A joined element: row id, and the names of the predecessors that had the row with their rows."""


def _run_process(step: "_Step", row_ids: Sequence[RowId], inputs: List[List[Row]]) -> Iterator[KeyedRow]:
    """Calls ``step.process`` and gives each output row an id.

    A step that keeps one row per input (the default) is called on the whole batch and the i-th output continues
    the i-th input. A step declaring ``changes_row_count``, or one whose batch unexpectedly gives back another
    number of rows, is called row by row, so that every output row descends from a known input row and ids stay
    stable whatever the batching was.
    """
    try:
        if not step.changes_row_count:
            outputs = [row for rows in step.process_applying_mappings(*inputs) for row in rows]
            if len(outputs) == len(row_ids):
                yield from zip(row_ids, outputs)
                return
        for index, row_id in enumerate(row_ids):
            single = [[rows[index]] for rows in inputs]
            produced = [row for rows in step.process_applying_mappings(*single) for row in rows]
            yield from zip(child_ids(row_id, len(produced)), produced)
    except Exception as error:
        raise RuntimeError(f"Step {step.name!r} ({type(step).__name__}) failed in process(): {error!r}") from error


def _split_by_sources(elements: Sequence[Any], joined: bool) -> Iterator[Tuple[List[RowId], List[List[Row]]]]:
    """(row ids, one row list per predecessor) for every group of rows that came from the same predecessors."""
    if not joined:
        yield [row_id for row_id, _ in elements], [[row for _, row in elements]]
        return
    groups: Dict[Tuple[str, ...], List[Tuple[RowId, List[Row]]]] = {}
    for row_id, (sources, rows) in elements:
        groups.setdefault(sources, []).append((row_id, rows))
    for members in groups.values():
        yield [row_id for row_id, _ in members], [list(column) for column in zip(*(rows for _, rows in members))]


class _StepDoFn(beam.DoFn):
    def __init__(self, step: "_Step", joined: bool, progress_board_id: Optional[str]) -> None:
        self._step = step
        self._joined = joined
        self._progress_board_id = progress_board_id
        self._rows_in = Metrics.counter(step.name, "rows_in")
        self._rows_out = Metrics.counter(step.name, "rows_out")
        self._unencodable_rows = Metrics.counter(step.name, "unencodable_rows")

    def setup(self) -> None:
        self._step.load()

    def process(self, batch: List[Any]) -> Iterator[KeyedRow]:
        self._rows_in.inc(len(batch))
        produced = 0
        for row_ids, inputs in _split_by_sources(batch, self._joined):
            for row_id, row in _run_process(self._step, row_ids, inputs):
                # A step's own text (decoded bytes, say) may hold a lone surrogate: escaped, so Beam can encode it.
                row, fixed = encodable_row(row, self._step.name, drop_values=False)
                if fixed:
                    self._unencodable_rows.inc()
                self._rows_out.inc()
                produced += 1
                yield row_id, row
        progress.report(self._progress_board_id, self._step.name, rows_in=len(batch), rows_out=produced)

    def teardown(self) -> None:
        self._step.unload()


class _GlobalStepDoFn(_StepDoFn):
    def process(self, everything: List[Any]) -> Iterator[KeyedRow]:
        if not everything:
            return
        ordered = sorted(everything, key=lambda element: element[0])
        self._rows_in.inc(len(ordered))
        for row_ids, inputs in _split_by_sources(ordered, self._joined):
            outputs = [row for rows in self._step.process_applying_mappings(*inputs) for row in rows]
            # A global step sees everything at once; when it changes the row count (dedup, sampling), its
            # outputs are new rows numbered in the order it returned them.
            ids = row_ids if len(outputs) == len(row_ids) else [(index,) for index in range(len(outputs))]
            self._rows_out.inc(len(outputs))
            progress.report(self._progress_board_id, self._step.name, rows_in=len(row_ids), rows_out=len(outputs))
            yield from zip(ids, outputs)


class JoinOnRowId(beam.PTransform):
    """``{predecessor name: PCollection[(row_id, row)]}`` -> ``PCollection[JoinedRow]`` in predecessor order."""

    def __init__(self, predecessor_names: Sequence[str]) -> None:
        super().__init__()
        self._names = list(predecessor_names)

    def expand(self, branches: Dict[str, beam.PCollection]) -> beam.PCollection:
        # CoGroupByKey would do the same with three more maps per row after the shuffle (its value lists, its
        # dict of tags, then this alignment): all of them run after the last answer, while the user waits.
        names = self._names

        def align(element: Tuple[RowId, Iterable[Tuple[int, Row]]]) -> JoinedRow:
            row_id, tagged = element
            ordered = sorted(tagged, key=lambda pair: pair[0])  # stable: a branch's rows keep their order
            return row_id, (tuple(names[index] for index, _ in ordered), [row for _, row in ordered])

        tagged = [
            branches[name] | f"Tag[{name}]" >> beam.Map(lambda keyed, index=index: (keyed[0], (index, keyed[1])))
            for index, name in enumerate(names)
        ]
        return tagged | "Flatten" >> beam.Flatten() | "GroupByKey" >> beam.GroupByKey() | "Align" >> beam.Map(align)


class StepOnKeyedRows(beam.PTransform):
    """``step`` on ``(row_id, row)`` elements (or ``JoinedRow`` elements when ``joined``).

    ``cache_dir`` is the response cache of a Task (``None``: no cache). ``progress_board_id`` names the live
    progress board of the run (``beam_distil.progress``), if it shows one.
    """

    def __init__(
        self,
        step: "_Step",
        joined: bool = False,
        cache_dir: Optional[str] = None,
        progress_board_id: Optional[str] = None,
    ) -> None:
        super().__init__()
        self._step = step
        self._joined = joined
        self._cache_dir = cache_dir
        self._progress_board_id = progress_board_id
        self.dead_letters: Optional[beam.PCollection] = None
        """After expansion, a Task's failed rows (``DEAD_LETTER_TAG`` records); ``None`` for other steps."""

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        step = self._step
        own = step.keyed_transform()
        if own is not None:
            if self._joined:
                raise ValueError(f"Step {step.name!r} runs its own Beam transform and takes one predecessor only.")
            return pcoll | "Process" >> own
        if step.is_global:
            return (
                pcoll
                | "CollectAll" >> beam.combiners.ToList()
                | "Process" >> beam.ParDo(_GlobalStepDoFn(step, self._joined, self._progress_board_id))
                | "Spread" >> beam.Reshuffle()
            )
        batches = pcoll | "Batch" >> beam.BatchElements(
            min_batch_size=step.input_batch_size, max_batch_size=step.input_batch_size
        )
        if step.is_task:
            if step.llm.use_offline_batch_generation:
                if self._cache_dir is None:
                    raise ValueError(
                        f"Task {step.name!r} sends its requests to a provider batch API, whose batch ids are recorded"
                        " next to the response cache: give it a cache (TaskWithDeadLetters(task, cache_dir=...), or"
                        " run the pipeline with use_cache=True)."
                    )
                dofn: TaskDoFn = OfflineBatchTaskDoFn(step, self._cache_dir, progress_board_id=self._progress_board_id)
                tags = (DEAD_LETTER_TAG, WAITING_TAG)
            else:
                dofn = TaskDoFn(step, self._cache_dir, progress_board_id=self._progress_board_id)
                tags = (DEAD_LETTER_TAG,)
            outputs = batches | "Process" >> beam.ParDo(dofn).with_outputs(*tags, main="rows")
            self.dead_letters = outputs[DEAD_LETTER_TAG]
            return outputs["rows"]
        return batches | "Process" >> beam.ParDo(_StepDoFn(step, self._joined, self._progress_board_id))


class TaskWithDeadLetters(beam.PTransform):
    """Beam-native use of a Task with its failures on the side: ``rows, dead_letters = pcoll | ...``.

    ``dead_letters`` holds ``{"step", "row_id", "error", "row"}`` for every row whose call failed for good; the
    row is in ``rows`` too (with ``None`` outputs), so nothing is lost either way.
    """

    def __init__(self, task: "Task", cache_dir: Optional[str] = None) -> None:
        """``cache_dir``: the response cache (any ``FileSystems`` path); ``None`` for none. A task with
        ``use_offline_batch_generation`` needs one: its batch ids are recorded there."""
        super().__init__(label=task.name)
        self._task = task
        self._cache_dir = cache_dir

    def expand(self, rows: beam.PCollection) -> Tuple[beam.PCollection, beam.PCollection]:
        step = StepOnKeyedRows(self._task, cache_dir=self._cache_dir)
        out = rows | "AddRowIds" >> beam.Map(lambda row: ((), row)) | "Step" >> step
        return out | "DropRowIds" >> beam.Values(), step.dead_letters


def apply_step_to_rows(step: "_Step", rows: beam.PCollection) -> beam.PCollection:
    """Beam-native use of a step on a ``PCollection`` of dict rows (see ``_Step.expand``)."""
    return (
        rows
        | "AddRowIds" >> beam.Map(lambda row: ((), row))
        | "Step" >> StepOnKeyedRows(step)
        | "DropRowIds" >> beam.Values()
    )
