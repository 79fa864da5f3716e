"""Turns a validated ``Pipeline`` DAG into a Beam graph. The one place where the DAG meets Beam."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Dict, List, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from beam_distil.beam.generator_source import GenerateRows
from beam_distil.beam.output_sink import WriteOutputFiles
from beam_distil.beam.route_batches import RouteBatches
from beam_distil.beam.runner import runs_on_one_worker
from beam_distil.beam.scratch_rows import WriteScratchRows
from beam_distil.beam.step_transforms import JoinOnRowId, StepOnKeyedRows

if TYPE_CHECKING:
    from beam_distil.pipeline.dag import DAG
    from beam_distil.pipeline.routing import RoutingBatchFunction
    from beam_distil.steps.base import _Step


def routing_batch_size(step: "_Step") -> int:
    """The size of the upstream batches a routing function decides for."""
    return step.batch_size if step.is_generator else step.input_batch_size


def build_beam_graph(
    beam_pipeline: beam.Pipeline,
    dag: "DAG",
    leaf_directories: Dict[str, str],
    routing: Optional[Dict[str, "RoutingBatchFunction"]] = None,
    row_limit: Optional[int] = None,
    cache_dir: Optional[str] = None,
    dead_letter_dir: Optional[str] = None,
    output_format: Optional[str] = None,
    progress_board_id: Optional[str] = None,
    first_row: int = 0,
    file_label: str = "",
) -> Dict[str, beam.PCollection]:
    """Applies every step to ``beam_pipeline`` and writes each leaf's rows to its directory.

    ``routing`` maps an upstream step name to its routing function. ``row_limit`` caps how many rows each
    generator emits (``dry_run``). ``cache_dir`` is the response cache of the tasks that use it (``None``: off).
    ``dead_letter_dir`` receives every task's failed rows as JSON lines. ``output_format`` (``"parquet"`` or
    ``"jsonl"``) writes the leaves as user-facing files; ``None`` writes the lossless scratch format read back
    by a local run. ``progress_board_id`` is the run's live progress board (``beam_distil.progress``), if it
    shows one. ``first_row`` (with ``row_limit`` as the end) gives each generator the positions of the rows it
    emits, and ``file_label`` is added to the names of the files written (``part<label>-...``), for a run in
    slices (``beam_distil.beam.row_slices``). Returns each step's output.
    """
    routing = routing or {}
    outputs: Dict[str, beam.PCollection] = {}
    one_worker = runs_on_one_worker(beam_pipeline)

    def step_cache(step: "_Step") -> Optional[str]:
        return cache_dir if getattr(step, "use_cache", False) else None

    routed: Dict[str, beam.pvalue.DoOutputsTuple] = {}
    dead_letters: List[beam.PCollection] = []

    def rows_from(predecessor: str, name: str) -> beam.PCollection:
        if predecessor in routed and name in routing[predecessor].downstream:
            return routed[predecessor][name]
        return outputs[predecessor]

    for name in dag.topological_order():
        step = dag.steps[name]
        predecessors = dag.predecessors(name)
        if step.is_generator:
            outputs[name] = beam_pipeline | name >> GenerateRows(
                step, row_limit, progress_board_id, first_row, spread=not one_worker
            )
        elif len(predecessors) == 1:
            transform = StepOnKeyedRows(step, cache_dir=step_cache(step), progress_board_id=progress_board_id)
            outputs[name] = rows_from(predecessors[0], name) | name >> transform
            if transform.dead_letters is not None:
                dead_letters.append(transform.dead_letters)
        else:
            branches = {predecessor: rows_from(predecessor, name) for predecessor in predecessors}
            joined = branches | f"{name}.join" >> JoinOnRowId(predecessors)
            outputs[name] = joined | name >> StepOnKeyedRows(step, joined=True, progress_board_id=progress_board_id)
        if name in routing:
            function = routing[name]
            routed[name] = outputs[name] | f"{name}.route" >> RouteBatches(
                name, function, function.downstream, routing_batch_size(step)
            )
    for leaf, directory in leaf_directories.items():
        sink = (
            WriteScratchRows(directory, f"part{file_label}")
            if output_format is None
            else WriteOutputFiles(directory, output_format, f"part{file_label}")
        )
        outputs[leaf] | f"{leaf}.collect" >> sink
    if dead_letter_dir is not None and dead_letters:
        (
            dead_letters
            | "dead_letters.flatten" >> beam.Flatten()
            | "dead_letters.encode" >> beam.Map(lambda record: json.dumps(record, default=str, ensure_ascii=False))
            | "dead_letters.write" >> beam.io.WriteToText(
                FileSystems.join(dead_letter_dir, f"dead_letters{file_label}"), file_name_suffix=".jsonl"
            )
        )
    return outputs
