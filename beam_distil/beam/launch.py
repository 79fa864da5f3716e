"""``launch``: the one way a pipeline runs on Beam.

``Pipeline.run``, ``Pipeline.dry_run``, ``beam-distil pipeline run`` and the Dataflow Flex Template launcher all
call it, so they share the same checks, Beam options, response-cache location, graph, dead letters, waiting,
metrics and run summary::

    from beam_distil.beam.launch import launch

    result = launch(pipeline, parameters={"gen": {"input_batch_size": 8}}, output_dir="gs://bucket/run-1",
                    options=["--runner=DataflowRunner", "--project=p", "--region=europe-west1",
                             "--temp_location=gs://bucket/tmp"],
                    wait_for_remote=False)
    result.state          # "RUNNING": submitted, not waited for (what a Flex Template launcher needs)
    result.distiset       # None until a run has been waited for; a local run always is

It depends on the pipeline only through its public surface (``name``, ``dag``, ``routing``, ``cache_dir``,
``validate``, ``dump``).
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions, PipelineOptions, TestOptions
from apache_beam.runners.runner import PipelineResult
from datasets import Dataset

from beam_distil.beam.runner import (
    BeamOptions,
    harmless_worker_warnings_hidden,
    is_local,
    make_beam_pipeline,
    option_problems,
    to_pipeline_options,
)
from beam_distil.beam.offline_batches import batches_not_finished
from beam_distil.beam.row_slices import DEFAULT_ROWS_PER_SLICE, row_slices
from beam_distil.beam.scratch_rows import read_scratch_rows
from beam_distil.beam.translate import build_beam_graph
from beam_distil.cache import CACHE_DIR_ENV_VAR, default_cache_dir
from beam_distil.distiset import (
    DISTISET_CONFIG_FOLDER,
    PIPELINE_CONFIG_FILENAME,
    SUBSETS_FILENAME,
    Distiset,
    subset_names,
)
from beam_distil.errors import PipelineValidationError
from beam_distil.helpers import is_url, to_text
from beam_distil.output_files import read_output_rows, read_output_table
from beam_distil.progress import ProgressReporter
from beam_distil.run_collector import heap_frozen_during_run
from beam_distil.run_cost import ModelUsage, model_of_each_task, prices_for_run, tokens_by_model
from beam_distil.run_summary import add_counters, counters_by_step, report_summary, rows_lost_between_steps

if TYPE_CHECKING:
    from beam_distil.pipeline.pipeline import Pipeline

logger = logging.getLogger("beam_distil")

OUTPUT_FORMATS = ("parquet", "jsonl")
CACHE_FOLDER_UNDER_TEMP_LOCATION = "beam_distil_cache"
SCRATCH_PREFIX = "beam-distil-"
"""Runs without ``output_dir`` bring their rows back through ``<temp dir>/beam-distil-<pid>-*`` folders, removed
when the run ends; a folder left by a killed process is removed by the next run."""


@dataclass
class LaunchResult:
    """What ``launch`` gives back: Beam's result, and the Distiset and counters once the run was waited for."""

    pipeline_result: PipelineResult
    distiset: Optional[Distiset] = None
    """Every leaf step's rows; ``None`` when a remote job was submitted and not waited for."""
    metrics: Dict[str, Dict[str, int]] = field(default_factory=dict)
    """Beam counters per step (``rows_in``, ``llm_requests``, ``llm_failures``, tokens...) of a finished run."""
    usage: Dict[str, ModelUsage] = field(default_factory=dict)
    """Requests, tokens and cost per model of a finished run (``beam_distil.run_cost``)."""

    @property
    def state(self) -> str:
        return str(getattr(self.pipeline_result, "state", None))


def launch(
    pipeline: "Pipeline",
    parameters: Optional[Dict[str, Dict[str, Any]]] = None,
    *,
    options: BeamOptions = None,
    output_dir: Optional[str] = None,
    output_format: str = "parquet",
    dead_letter_dir: Optional[str] = None,
    use_cache: bool = True,
    row_limit: Optional[int] = None,
    show_progress: Optional[bool] = None,
    wait_for_remote: bool = True,
    rows_per_slice: Optional[int] = DEFAULT_ROWS_PER_SLICE,
    prices: Optional[Dict[str, Any]] = None,
) -> LaunchResult:
    """Validates ``pipeline`` with ``parameters``, builds its Beam graph, runs it and reports.

    Args:
        parameters: runtime parameters per step name (``{"gen": {"llm": {"generation_kwargs": {...}}}}``).
        options: Beam ``PipelineOptions``, a list of flags or a dict; without a runner, ``FnApiRunner``.
        output_dir: where the job writes each leaf's rows (one folder per Distiset subset) and
            ``distiset_configs/``; any ``FileSystems`` path. Remote runners need one. Without it, rows go to a
            scratch folder of this process and only the returned Distiset holds them.
        output_format: ``"parquet"`` or ``"jsonl"``, the files written into ``output_dir``.
        dead_letter_dir: where every task's failed rows also go, as JSON lines.
        use_cache: read and write the response cache: ``pipeline.cache_dir``, else ``$BEAM_DISTIL_CACHE_DIR``,
            else on a remote runner ``<temp_location>/beam_distil_cache``, else ``~/.cache/beam_distil``.
        row_limit: at most this many rows per generator (``dry_run``).
        show_progress: live progress on stderr; default when stderr is a terminal and the steps run in this
            process.
        wait_for_remote: wait until a remote job finishes, then read its rows back. ``False`` returns as soon
            as the job is submitted (a Flex Template launcher must not wait). A local run always finishes
            before ``launch`` returns.
        rows_per_slice: a local run goes through its generators' rows this many at a time, one Beam job each,
            so that its memory does not grow with the rows (``beam_distil.beam.row_slices``, which also says
            which pipelines run in one piece). ``None``: one job for all the rows.
        prices: US dollars per million tokens per model name (``beam_distil.run_cost``), e.g.
            ``{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}``: the summary and ``LaunchResult.usage`` then
            give each model's cost. Checked before anything runs.
    """
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {list(OUTPUT_FORMATS)}, got {output_format!r}")
    # Beam adds a root handler while it runs, so whether the application set up logging is read now.
    logging_configured = bool(logging.getLogger().handlers or logger.handlers)
    model_prices = prices_for_run(pipeline.name, prices)
    pipeline.validate(parameters)
    pipeline_options = to_pipeline_options(options)
    problems = option_problems(pipeline_options)
    if problems:
        raise PipelineValidationError(pipeline.name, problems)
    local = is_local(pipeline_options)
    if output_dir is None and not local:
        raise ValueError(
            f"Pipeline {pipeline.name!r}: a remote runner writes its results where the launching machine can read"
            " them: pass output_dir='gs://bucket/path' (any path Beam's FileSystems can write)."
        )
    batch_tasks = [
        name for name, step in pipeline.dag.steps.items()
        if step.is_task and step.llm.use_offline_batch_generation
    ]
    if batch_tasks and not use_cache:
        raise PipelineValidationError(pipeline.name, [
            f"tasks {batch_tasks} send their requests to a provider batch API, whose batch ids are recorded next to"
            " the response cache: run with use_cache=True (the default)."
        ])
    cache_dir = cache_dir_for(pipeline, pipeline_options) if use_cache else None
    if not pipeline_options.view_as(TestOptions).dry_run:  # a dry run writes nothing and pays nothing
        check_locations(pipeline, cache_dir, output_dir, dead_letter_dir)
    pipeline_yaml = pipeline_yaml_or_none(pipeline)
    leaves = list(pipeline.dag.leaves)
    remove_stale_scratch_folders()
    # Reading the rows back and building the Distiset allocate as much as the job: both run with the heap frozen
    # too, or the collections they trigger walk every object of the imported modules.
    with heap_frozen_during_run():
        with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-") as scratch:
            if output_dir is not None:
                subsets = subset_names(leaves)
                directories = {leaf: FileSystems.join(output_dir, subsets[leaf]) for leaf in leaves}
                # Before the job: a remote job that is not waited for still leaves a readable folder, and an output
                # location that cannot be written fails here, before any request is paid for.
                write_output_configs(output_dir, list(subsets.values()), pipeline_yaml)
            else:
                directories = {leaf: FileSystems.join(scratch, leaf) for leaf in leaves}
            reporter = _progress_reporter(pipeline, show_progress, pipeline_options, row_limit)
            logger.info("Running pipeline %r with %d steps", pipeline.name, len(pipeline.dag.steps))
            quiet_workers = harmless_worker_warnings_hidden() if local else contextlib.nullcontext()
            metrics: Dict[str, Dict[str, int]] = {}
            with reporter or contextlib.nullcontext(), quiet_workers:
                # A local run goes through its rows in slices, one Beam job each, so that its memory stays bounded.
                for row_slice in row_slices(pipeline.dag, rows_per_slice if local else None, row_limit):
                    if row_slice.index:
                        logger.info("Pipeline %r: rows from position %d", pipeline.name, row_slice.first_row)
                    beam_pipeline = make_beam_pipeline(pipeline_options)
                    build_beam_graph(
                        beam_pipeline,
                        pipeline.dag,
                        directories,
                        routing=pipeline.routing,
                        row_limit=row_slice.row_limit,
                        cache_dir=cache_dir,
                        dead_letter_dir=dead_letter_dir,
                        output_format=output_format if output_dir is not None else None,
                        progress_board_id=reporter.board_id if reporter is not None else None,
                        first_row=row_slice.first_row,
                        file_label=row_slice.file_label,
                    )
                    result = beam_pipeline.run()
                    if not (local or wait_for_remote):
                        logger.info("Pipeline %r submitted, state %s; not waiting for it", pipeline.name, result.state)
                        return LaunchResult(result)
                    result.wait_until_finish()
                    slice_counters = counters_by_step(result)
                    metrics = add_counters(metrics, slice_counters)
                    if row_slice.is_last(slice_counters):
                        break
            # Parquet output is read back as Arrow tables: a million rows as Python dicts would not fit in memory.
            tables = (
                {leaf: read_output_table(directory) for leaf, directory in directories.items()} if output_dir else {}
            )
            read = read_output_rows if output_dir is not None else read_scratch_rows
            rows = {
                leaf: [] if tables.get(leaf) is not None else [row for _, row in read(directory)]
                for leaf, directory in directories.items()
            }
        distiset = Distiset.from_rows(rows, pipeline_yaml=pipeline_yaml)
        names = subset_names(leaves)
        for leaf, table in tables.items():
            if table is not None:
                distiset[names[leaf]]["train"] = Dataset(table)
    distiset.statistics = metrics
    if output_dir is not None:
        distiset.save_configs(output_dir)  # now with the dataset card, which needs the rows
    usage = tokens_by_model(metrics, model_of_each_task(pipeline.dag.steps), model_prices)
    report_summary(pipeline.name, metrics, logging_configured, usage, model_prices)
    routed = {name for routing in pipeline.routing.values() for name in routing.downstream}
    edges = [
        (pipeline.dag.predecessors(name)[0], name)
        for name in pipeline.dag.steps
        if len(pipeline.dag.predecessors(name)) == 1 and name not in routed
    ]
    for problem in rows_lost_between_steps(edges, metrics):
        logger.error("Pipeline %r lost rows: %s. The results are incomplete: run it again.", pipeline.name, problem)
    if batch_tasks and cache_dir is not None:
        waiting = batches_not_finished(pipeline.name, batch_tasks, metrics, cache_dir, distiset)
        if waiting is not None:
            raise waiting
    return LaunchResult(result, distiset, metrics, usage)


def cache_dir_for(pipeline: "Pipeline", options: PipelineOptions) -> str:
    """The response cache of a run: ``pipeline.cache_dir``, else ``$BEAM_DISTIL_CACHE_DIR``; on a remote runner
    without either, under ``--temp_location`` (a worker's own disk, or the launcher VM's, is lost with it)."""
    if pipeline.cache_dir or os.environ.get(CACHE_DIR_ENV_VAR) or is_local(options):
        return pipeline.cache_dir or default_cache_dir()
    temp_location = options.view_as(GoogleCloudOptions).temp_location
    if temp_location:
        return FileSystems.join(temp_location.rstrip("/"), CACHE_FOLDER_UNDER_TEMP_LOCATION)
    logger.warning(
        "Pipeline %r: the response cache is on each worker's own disk and is lost with it; pass"
        " Pipeline(cache_dir='gs://...') or --temp_location to keep completions across runs.",
        pipeline.name,
    )
    return default_cache_dir()


def check_locations(
    pipeline: "Pipeline", cache_dir: Optional[str], output_dir: Optional[str], dead_letter_dir: Optional[str]
) -> None:
    """Raises ``PipelineValidationError`` naming every location the run would write to and cannot, before any
    request is paid for (a run that cannot store its answers would pay for them and lose them)."""
    problems: List[str] = []
    uses_cache = any(getattr(step, "use_cache", False) for step in pipeline.dag.steps.values() if step.is_task)
    checks = [
        (cache_dir if uses_cache else None, "the response cache",
         "pass Pipeline(cache_dir=...) or set BEAM_DISTIL_CACHE_DIR to a writable folder, or run with use_cache=False"),
        (output_dir, "output_dir", "pass an output_dir this process and the workers can write"),
        (dead_letter_dir, "dead_letter_dir", "pass a dead_letter_dir this process and the workers can write"),
    ]
    for name, step in pipeline.dag.steps.items():
        llm = getattr(step, "llm", None)
        location = getattr(llm, "offline_batch_location", None)
        if step.is_task and llm.use_offline_batch_generation and location:
            checks.append((location, f"step {name!r}: offline_batch_location",
                           "give its LLM an offline_batch_location this process, the workers and the provider can write"))
    for directory, what, remedy in checks:
        if directory is not None:
            problem = writability_problem(directory)
            if problem is not None:
                problems.append(f"{what} {directory!r} cannot be written ({problem}): {remedy}.")
    if problems:
        raise PipelineValidationError(pipeline.name, problems)


def writability_problem(directory: str) -> Optional[str]:
    """Why a file cannot be written into ``directory`` (made if missing), or ``None``: a probe file is written
    and removed, through Beam's ``FileSystems`` (local paths, ``gs://``...)."""
    probe = FileSystems.join(directory, f".beam-distil-write-check-{uuid.uuid4().hex}")
    try:
        if not is_url(directory):
            os.makedirs(directory, exist_ok=True)
        with FileSystems.create(probe) as file:
            file.write(b"")
        FileSystems.delete([probe])
    except Exception as error:  # noqa: BLE001 — any failure means the run could not write there
        return f"{type(error).__name__}: {error}"
    return None


def remove_stale_scratch_folders() -> None:
    """Removes scratch folders of this user's runs whose process is gone (killed before it could clean up)."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{SCRATCH_PREFIX}*")):
        pid_text = os.path.basename(path)[len(SCRATCH_PREFIX):].split("-", 1)[0]
        try:
            if not pid_text.isdigit() or os.stat(path).st_uid != os.getuid() or _process_alive(int(pid_text)):
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def pipeline_yaml_or_none(pipeline: "Pipeline") -> Optional[str]:
    """The pipeline as YAML for the Distiset's ``pipeline.yaml``; ``None`` when a part can't be saved (a user's
    routing function defined inside a function, say), which must not cost the run its results."""
    try:
        return to_text(pipeline.dump(), "yaml")
    except (TypeError, ValueError) as error:  # PipelineSerializationError is a ValueError
        logger.warning("Pipeline %r: the Distiset gets no pipeline.yaml: %s", pipeline.name, error)
        return None


def write_output_configs(output_dir: str, subsets: List[str], pipeline_yaml: Optional[str]) -> None:
    """``distiset_configs/`` as ``Distiset.save_configs`` writes it, minus the card (the rows aren't known yet).

    Through Beam's ``FileSystems``, so a ``gs://`` output needs nothing more than the runner does.
    """
    config_dir = FileSystems.join(output_dir, DISTISET_CONFIG_FOLDER)
    if not is_url(output_dir):
        os.makedirs(config_dir, exist_ok=True)
    files = {SUBSETS_FILENAME: json.dumps({"subsets": {name: ["train"] for name in subsets}}, indent=2)}
    if pipeline_yaml is not None:
        files[PIPELINE_CONFIG_FILENAME] = pipeline_yaml
    for name, text in files.items():
        with FileSystems.create(FileSystems.join(config_dir, name)) as file:
            file.write(text.encode("utf-8"))


def _progress_reporter(
    pipeline: "Pipeline", show: Optional[bool], options: PipelineOptions, row_limit: Optional[int]
) -> Optional[ProgressReporter]:
    """This run's live progress reporter, or ``None`` when it would have nothing to show."""
    in_process = is_local(options) and options.view_as(DirectOptions).direct_running_mode != "multi_processing"
    if show is None:
        show = sys.stderr.isatty()
    if not (show and in_process):
        return None
    steps = list(pipeline.dag.topological_order())
    return ProgressReporter(steps, _expected_rows(pipeline, steps, row_limit))


def _expected_rows(pipeline: "Pipeline", steps: List[str], row_limit: Optional[int]) -> Dict[str, int]:
    """How many rows each step will output, where that is known before running (for the ETA)."""
    totals: Dict[str, int] = {}
    routed = {name for routing in pipeline.routing.values() for name in routing.downstream}
    for name in steps:
        step = pipeline.dag.steps[name]
        if step.is_generator:
            data = getattr(step, "data", None)
            if isinstance(data, list):
                totals[name] = min(len(data), row_limit) if row_limit else len(data)
            continue
        known = {totals.get(predecessor) for predecessor in pipeline.dag.predecessors(name)}
        expands = step.changes_row_count or step.is_global or (
            step.is_task and step.num_generations > 1 and not step.group_generations
        )
        if len(known) == 1 and None not in known and not expands and name not in routed:
            totals[name] = known.pop()
    return totals
