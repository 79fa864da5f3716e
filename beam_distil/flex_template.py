"""Dataflow Flex Template launcher: runs a saved pipeline (``Pipeline.save``) and, on a remote runner, returns
as soon as the job is submitted (Flex Templates must not wait for the job).

Example (what the Flex Template launcher VM runs; the same works on a laptop)::

    python -m beam_distil.flex_template \\
        --pipeline_config=gs://bucket/pipeline.yaml \\
        --param=gen_a.llm.generation_kwargs.temperature=0.7 \\
        --params='{"gen_b": {"input_batch_size": 2}, "load.batch_size": 10}' \\
        --output_dir=gs://bucket/runs/2024-06-01 \\
        --use_cache=false \\
        --runner=DataflowRunner --project=P --region=europe-west1 --temp_location=gs://bucket/tmp

Arguments (the parameters of ``templates/metadata.json``, one to one):

``--pipeline_config``  the pipeline file (``.yaml``/``.yml``/``.json``), a local path or any Beam ``FileSystems``
                       path (``gs://``).
``--param``            ``STEP.PATH.TO.PARAMETER=VALUE``, repeatable; ``VALUE`` is YAML (as ``beam-distil --param``).
``--params``           one JSON object of runtime parameters, for Flex Templates where each parameter is one
                       string. Keys are step names with nested objects (``{"gen": {"llm": {...}}}``) or dotted
                       paths (``{"gen.llm.generation_kwargs.temperature": 0.7}``), mixed freely. Values keep
                       their JSON types. ``--param`` and ``--params`` combine; a conflict is an error.
``--output_dir``       where the run writes its Distiset, in the layout of ``Pipeline.run(output_dir=...)``: one
                       folder per subset (``default``, or each leaf step's name) written by the job, and
                       ``distiset_configs/`` (``pipeline.yaml`` with the parameters applied). Any ``FileSystems``
                       path; a remote runner needs one its workers can write (``gs://``). Read it back with
                       ``Distiset.load_from_disk(OUTPUT_DIR)`` once the job has finished.
``--output_format``    ``parquet`` (default) or ``jsonl``: the files written per subset.
``--use_cache``        ``true`` (default) or ``false``: use the pipeline's response cache. On a remote runner it
                       lives in the pipeline's ``cache_dir``, else under ``--temp_location`` (as ``Pipeline.run``).
``--dead_letter_dir``  where every task's failed rows also go, as JSON lines (``{"step", "row_id", "error",
                       "row"}``); optional. The rows stay in the Distiset with ``None`` outputs either way.

Every other argument is a Beam pipeline option (``--runner``, ``--project``, ``--sdk_container_image``...).
Without ``--runner`` the pipeline runs locally (``FnApiRunner``, multi-threading) and the launcher waits for
it; with a remote runner it submits the job and returns. It runs through ``beam_distil.beam.launch.launch``,
the same function as ``Pipeline.run``.

Exit codes: 0 when the job was submitted (remote) or finished (local), 2 for bad arguments, a config that
cannot be loaded or parameters the pipeline rejects.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

from beam_distil.parameter_overrides import ParameterOverrideError, Parameters, overrides_from_json, overrides_from_params

if TYPE_CHECKING:
    from beam_distil.beam.launch import LaunchResult

PROG = "python -m beam_distil.flex_template"

logger = logging.getLogger("beam_distil")


class LauncherError(Exception):
    """A user error: printed as ``python -m beam_distil.flex_template: error: ...`` with exit code 2."""


# -- arguments --------------------------------------------------------------------------------------------------


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """The launcher's own arguments; ``templates/metadata.json`` declares exactly these destinations."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run a saved beam_distil pipeline; the Dataflow Flex Template entry point.",
        epilog="Any other argument is a Beam pipeline option, e.g. --runner=DataflowRunner --project=P.",
        # Beam options must not be taken for abbreviations of ours (--output would match --output_dir).
        allow_abbrev=False,
    )
    parser.add_argument(
        "--pipeline_config", required=True, help="Pipeline file (.yaml/.yml/.json): local path or gs://..."
    )
    parser.add_argument(
        "--param",
        action="append",
        default=None,
        metavar="STEP.PARAMETER=VALUE",
        help="A runtime parameter, e.g. gen.llm.generation_kwargs.temperature=0.7 (repeatable; VALUE is YAML).",
    )
    parser.add_argument(
        "--params",
        default=None,
        metavar="JSON",
        help='Runtime parameters as one JSON object: {"gen": {"llm": {...}}} or {"gen.llm.generation_kwargs.temperature": 0.7}.',
    )
    parser.add_argument(
        "--output_dir",
        required=True,
        help="Where the leaf steps' rows are written (gs://... for a remote runner).",
    )
    parser.add_argument(
        "--output_format",
        choices=["parquet", "jsonl"],
        default="parquet",
        help="The files the job writes per subset: parquet (default) or jsonl.",
    )
    parser.add_argument(
        "--use_cache",
        type=_bool,
        default=True,
        metavar="true|false",
        help="Use the response cache (default true).",
    )
    parser.add_argument(
        "--dead_letter_dir",
        default=None,
        help="Where every task's failed rows also go, as JSON lines (gs://... for a remote runner).",
    )
    return parser


def parse_args(argv: Sequence[str]) -> Tuple[argparse.Namespace, List[str]]:
    """The launcher's arguments, and the rest (Beam pipeline options)."""
    return build_parser().parse_known_args(list(argv))


def collect_parameters(args: argparse.Namespace) -> Parameters:
    """``--param`` and ``--params`` combined; a parameter given twice with different values is an error."""
    parameters = overrides_from_params(args.param or [])
    if args.params and args.params.strip():
        overrides_from_json(args.params, into=parameters)
    return parameters


# -- entry point ------------------------------------------------------------------------------------------------


def run(argv: Sequence[str]) -> "LaunchResult":
    """Parses ``argv`` and launches; waits only on a local runner. Raises ``LauncherError`` for user errors."""
    # Imported here, not at the top, so that console_main's start-up tuning comes before Apache Beam's import.
    from beam_distil.beam.launch import launch
    from beam_distil.owned_process import collections_paused
    from beam_distil.pipeline import Pipeline, PipelineValidationError
    from beam_distil.pipeline.serialization import PipelineSerializationError

    args, beam_options = parse_args(argv)
    try:
        parameters = collect_parameters(args)
        with collections_paused():
            pipeline = Pipeline.from_file(args.pipeline_config)
        return launch(
            pipeline,
            parameters,
            options=beam_options,
            output_dir=args.output_dir,
            output_format=args.output_format,
            dead_letter_dir=args.dead_letter_dir,
            use_cache=args.use_cache,
            wait_for_remote=False,
        )
    except (
        ParameterOverrideError,
        PipelineSerializationError,
        PipelineValidationError,
        FileNotFoundError,
        IsADirectoryError,
    ) as error:
        raise LauncherError(str(error)) from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m beam_distil.flex_template``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        result = run(argv)
    except SystemExit as exit:  # argparse has printed the usage and the error
        return int(exit.code or 0)
    except LauncherError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    print(f"{PROG}: pipeline launched, state {result.state}")
    return 0


def console_main() -> int:
    """The launcher process's entry point (``python -m``, the Flex Template's ``launcher.py``): the project owns
    this process, so it gets the start-up tuning of ``beam_distil.owned_process``, and INFO logging."""
    from beam_distil.owned_process import tune_owned_process

    tune_owned_process()
    logging.basicConfig(level=logging.INFO)
    return main()


if __name__ == "__main__":
    sys.exit(console_main())
