"""Beam options and runner choice for ``Pipeline.run``.

Without a ``--runner``, pipelines run locally on ``FnApiRunner`` in multi-threading mode: LLM steps are I/O
bound, and the stock ``DirectRunner`` would first try to download the Prism runner. Every option the user gives
(``direct_running_mode``, ``direct_num_workers``, ``runner``, Dataflow options...) reaches Beam unchanged.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from beam_distil.helpers import did_you_mean

BeamOptions = Union[PipelineOptions, Sequence[str], Dict[str, Any], None]


class _HarmlessWorkerWarnings(logging.Filter):
    """Drops the warning every local worker process logs at start-up (no semi-persistent directory is normal
    for a local run); every other worker message still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No semi_persistent_directory found" not in record.getMessage()


@contextlib.contextmanager
def harmless_worker_warnings_hidden() -> Iterator[None]:
    """While a local run lasts, hides the start-up warning of each of its worker processes; the logger is left
    as it was afterwards."""
    beam_logger = logging.getLogger("apache_beam.runners.portability.local_job_service")
    hidden = _HarmlessWorkerWarnings()
    beam_logger.addFilter(hidden)
    try:
        yield
    finally:
        beam_logger.removeFilter(hidden)


def option_problems(options: PipelineOptions) -> List[str]:
    """What is wrong with ``options``, found before anything runs: a value Beam's parser rejects (which would
    otherwise end the process with ``SystemExit`` from inside ``run()``), and flags no Beam option declares
    (which Beam would only log and ignore, so a misspelled ``--direct_num_wrokers`` would silently do nothing)."""
    parser_output = io.StringIO()
    try:
        with contextlib.redirect_stderr(parser_output):
            given = options.get_all_options(retain_unknown_options=True)
    except SystemExit:
        lines = [line for line in parser_output.getvalue().splitlines() if ": error: " in line]
        message = lines[-1].split(": error: ", 1)[1] if lines else parser_output.getvalue().strip()
        return [f"Beam options: {message}."]
    known = PipelineOptions([]).get_all_options()
    return [
        f"Beam has no option --{name}; Beam would ignore it.{did_you_mean(name, known, prefix='--')}"
        for name in given
        if name not in known
    ]


_LOCAL_RUNNERS = {"directrunner", "fnapirunner", "bundlebaseddirectrunner", "switchingdirectrunner", "prismrunner"}


def to_pipeline_options(options: BeamOptions) -> PipelineOptions:
    """``PipelineOptions`` from options, a list of command-line flags, or a dict of option names."""
    if options is None:
        return PipelineOptions([])
    if isinstance(options, PipelineOptions):
        return options
    if isinstance(options, dict):
        # PipelineOptions(**kw) alone would also parse sys.argv, picking up the launching script's flags.
        return PipelineOptions([], **options)
    if isinstance(options, str):
        raise TypeError("options must be a list of flags such as ['--runner=DataflowRunner'], not one string")
    return PipelineOptions(list(options))


def runner_name(options: PipelineOptions) -> Optional[str]:
    runner = options.view_as(StandardOptions).runner
    if runner is None or isinstance(runner, str):
        return runner
    return type(runner).__name__


def is_local(options: PipelineOptions) -> bool:
    name = runner_name(options)
    return name is None or name.lower() in _LOCAL_RUNNERS


def runs_on_one_worker(beam_pipeline: beam.Pipeline) -> bool:
    """Whether ``beam_pipeline`` runs on the local ``FnApiRunner`` with a single worker (``direct_num_workers=1``,
    the default), where no step's rows can be spread over several workers."""
    return (
        isinstance(beam_pipeline.runner, FnApiRunner)
        and beam_pipeline.options.view_as(DirectOptions).direct_num_workers == 1
    )


def make_beam_pipeline(options: BeamOptions) -> beam.Pipeline:
    """A ``beam.Pipeline`` for ``options``, on ``FnApiRunner`` (multi-threading) unless a runner is named."""
    pipeline_options = to_pipeline_options(options)
    if runner_name(pipeline_options) is not None:
        return beam.Pipeline(options=pipeline_options)
    if "direct_running_mode" not in pipeline_options.get_all_options(drop_default=True):
        pipeline_options.view_as(DirectOptions).direct_running_mode = "multi_threading"
    return beam.Pipeline(runner=FnApiRunner(), options=pipeline_options)
