"""``beam-distil``: inspect and run a saved pipeline (as distilabel's ``distilabel pipeline info|run``).

Example::

    beam-distil pipeline info --config pipeline.yaml
    beam-distil pipeline run --config gs://bucket/pipeline.yaml \\
        --param gen_a.llm.generation_kwargs.temperature=0.7 --param load.batch_size=10 \\
        --output ./distiset -- --runner=DataflowRunner --project=my-project --region=europe-west1

``--param STEP.PATH.TO.PARAMETER=VALUE`` sets a runtime parameter; ``VALUE`` is read as a YAML scalar or flow
collection (``0.7`` is a float, ``true`` a bool, ``[1, 2]`` a list, ``{a: 1}`` a dict, ``"0.7"`` a string).
Everything after ``--`` is passed to Beam as pipeline options. ``python -m beam_distil`` is the same command.
``--prices prices.yaml`` (``gpt-4o-mini: {input: 0.15, output: 0.6}``, US dollars per million tokens) adds each
model's cost to the run summary (``beam_distil.run_cost``).

Exit codes: 0 on success; 1 when every row of a task failed (the Distiset is saved all the same, with each
row's reason); 2 for a bad command line, a config that cannot be loaded, parameters the pipeline rejects or a
location it cannot write (the message is printed on stderr, without a traceback).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List, Optional, Sequence

PROG = "beam-distil"


class CliError(Exception):
    """A user error: printed as ``beam-distil: error: ...`` with exit code 2."""


# -- info ------------------------------------------------------------------------------------------------------


def _parameter_lines(info: List[Dict[str, Any]], prefix: str = "") -> List[str]:
    lines: List[str] = []
    for entry in info:
        name = f"{prefix}{entry['name']}"
        nested = entry.get("runtime_parameters_info")
        if isinstance(nested, dict):  # a list of models (``llms``): their parameters by position
            for position, item_info in nested.items():
                lines.extend(_parameter_lines(item_info, prefix=f"{name}.{position}."))
            continue
        if nested is not None:
            lines.extend(_parameter_lines(nested, prefix=f"{name}."))
            continue
        kind = "optional" if entry.get("optional", True) else "required"
        description = entry.get("description")
        lines.append(f"      {name} ({kind})" + (f": {description}" if description else ""))
    return lines


def format_info(
    data: Dict[str, Any],
    endpoints: Optional[Dict[str, Optional[str]]] = None,
    classes: Optional[Dict[str, str]] = None,
) -> str:
    """A plain-text description of a dumped pipeline: steps (``classes``: the class that runs each, by step name;
    default the file's ``type_info``, which names distilabel's module for a class beam_distil ports), where each
    LLM sends its prompts (``endpoints``, by step name), connections, routing, runtime parameters and the packages
    the pipeline requires."""
    section = data["pipeline"]
    lines = [f"Pipeline: {section['name']}"]
    if section.get("description"):
        lines.append(f"Description: {section['description']}")
    if data.get("requirements"):
        lines.append(f"Requirements: {', '.join(data['requirements'])}")
    lines += ["", "Steps:"]
    for entry in section["steps"]:
        step = entry["step"]
        type_info = step.get("type_info", {})
        shown = (classes or {}).get(entry["name"]) or f"{type_info.get('module')}.{type_info.get('name')}"
        lines.append(f"  {entry['name']} ({shown})")
        llm = step.get("llm")
        if isinstance(llm, dict) and "type_info" in llm:
            model = llm.get("model") or llm.get("model_path") or ""
            line = f"    llm: {llm['type_info']['name']}" + (f" ({model})" if model else "")
            # Where the prompts (and an API key from the environment) go: a config can point anywhere.
            endpoint = (endpoints or {}).get(entry["name"])
            # Batch mode changes what a run costs and how long it takes (hours): worth seeing before running.
            batch = " through the provider's batch API" if llm.get("use_offline_batch_generation") else ""
            lines.append(line + (f" at {endpoint}" if endpoint else "") + batch)
        # In the step, as distilabel writes it; beside it in files beam_distil wrote before.
        parameter_lines = _parameter_lines(step.get("runtime_parameters_info") or entry.get("runtime_parameters_info", []))
        if parameter_lines:
            lines.append("    runtime parameters:")
            lines.extend(parameter_lines)
        else:
            lines.append("    runtime parameters: none")
    lines += ["", "Connections:"]
    connections = section.get("connections") or []
    lines += [f"  {c['from']} -> {', '.join(c['to'])}" for c in connections] or ["  none"]
    lines += ["", "Routing batch functions:"]
    routings = section.get("routing_batch_functions") or []
    for entry in routings:
        # distilabel's layout; files beam_distil wrote before nest it under `routing_batch_function`.
        function = entry.get("routing_batch_function", entry)
        type_info = function.get("type_info", {})
        name = type_info.get("name", "?")
        kwargs = function.get("kwargs", type_info.get("kwargs"))
        if kwargs is not None and "seed" in function:
            kwargs = {**kwargs, "seed": function["seed"]}
        call = f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})" if kwargs is not None else name
        downstream = function.get("downstream") or []
        line = f"  {entry['step']} -> {call} -> {', '.join(downstream)}"
        if function.get("description"):
            line += f"  # {function['description']}"
        lines.append(line)
    if not routings:
        lines.append("  none")
    return "\n".join(lines) + "\n"


# -- commands --------------------------------------------------------------------------------------------------


def _load(config: str) -> Any:
    from beam_distil.owned_process import collections_paused
    from beam_distil.pipeline import Pipeline
    from beam_distil.pipeline.serialization import PipelineSerializationError

    try:
        with collections_paused():
            return Pipeline.from_file(config)
    except (PipelineSerializationError, FileNotFoundError, IsADirectoryError) as error:
        raise CliError(str(error)) from None


def _info(args: argparse.Namespace) -> int:
    pipeline = _load(args.config)
    endpoints = {
        name: step.llm.prompts_go_to() for name, step in pipeline.dag.steps.items() if getattr(step, "llm", None)
    }
    classes = {name: f"{type(step).__module__}.{type(step).__qualname__}" for name, step in pipeline.dag.steps.items()}
    sys.stdout.write(format_info(pipeline.dump(), endpoints, classes))
    return 0


def _run(args: argparse.Namespace, beam_options: List[str]) -> int:
    from beam_distil.helpers import to_text
    from beam_distil.parameter_overrides import ParameterOverrideError, overrides_from_params
    from beam_distil.pipeline import PipelineValidationError

    try:
        parameters = overrides_from_params(args.param or [])
    except ParameterOverrideError as error:
        raise CliError(str(error)) from None
    prices = _load_prices(args.prices)
    pipeline = _load(args.config)
    problem = _output_problem(args.output)
    if problem is not None:  # found before any request is paid for, not after
        raise CliError(f"--output {args.output!r} cannot be written ({problem}): choose a folder you can write.")
    try:
        distiset = pipeline.run(
            parameters=parameters,
            options=beam_options or None,
            output_dir=args.beam_output_dir,
            dead_letter_dir=args.dead_letter_dir,
            use_cache=not args.ignore_cache,
            prices=prices,
        )
    except PipelineValidationError as error:
        raise CliError(str(error)) from None
    if getattr(distiset, "pipeline_yaml", None) is None:
        distiset.pipeline_yaml = to_text(pipeline.dump(), "yaml")
    distiset.save_to_disk(args.output)
    print(f"Distiset of pipeline {pipeline.name!r} saved to {args.output}")
    failed = _steps_where_every_row_failed(pipeline.last_run_metrics)
    if failed:
        names = ", ".join(f"{name!r} ({count} of {count} rows)" for name, count in failed.items())
        print(
            f"{PROG}: error: every row of step {names} failed; the rows are in the Distiset with the reason in"
            f" distilabel_metadata['error_<step>']",
            file=sys.stderr,
        )
        return 1
    return 0


def _load_prices(path: Optional[str]) -> Optional[Dict[str, Any]]:
    """The ``--prices`` file (YAML or JSON, local or ``gs://``) as checked ``ModelPrice``s by model name. The
    file is untrusted input: read with the project's guards on size, nesting and aliases, and a safe loader."""
    if path is None:
        return None
    from beam_distil.pipeline.serialization import PipelineSerializationError, parse_text, read_text
    from beam_distil.run_cost import InvalidPricesError, parse_prices

    try:
        data = parse_text(read_text(path), "yaml", source=path)  # JSON is YAML too
    except (PipelineSerializationError, OSError, UnicodeDecodeError) as error:
        raise CliError(f"--prices {path!r} cannot be read: {error}") from None
    try:
        return parse_prices(data)
    except InvalidPricesError as error:
        listed = "\n".join(f"  - {problem}" for problem in error.problems)
        raise CliError(f"--prices {path!r} is not valid:\n{listed}") from None


def _output_problem(output: str) -> Optional[str]:
    """Why the Distiset could not be saved under ``output`` (any fsspec path), or ``None``."""
    import uuid

    import fsspec

    try:
        filesystem, path = fsspec.core.url_to_fs(output)
        filesystem.makedirs(path, exist_ok=True)
        probe = f"{path.rstrip('/')}/.beam-distil-write-check-{uuid.uuid4().hex}"
        with filesystem.open(probe, "wb") as file:
            file.write(b"")
        filesystem.rm(probe)
    except Exception as error:  # noqa: BLE001 — any failure means the Distiset could not be saved there
        return f"{type(error).__name__}: {error}"
    return None


def _steps_where_every_row_failed(metrics: Dict[str, Dict[str, int]]) -> Dict[str, int]:
    """Task steps whose LLM calls failed for every row they received, with that number of rows."""
    return {
        step: counters["rows_in"]
        for step, counters in metrics.items()
        if counters.get("rows_in") and counters.get("llm_failures", 0) >= counters["rows_in"]
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect and run beam_distil pipelines saved with Pipeline.save().",
        epilog="Beam pipeline options go after `--`: beam-distil pipeline run ... -- --runner=DataflowRunner ...",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    pipeline = commands.add_parser("pipeline", help="Pipeline commands.")
    actions = pipeline.add_subparsers(dest="action", metavar="ACTION", required=True)

    info = actions.add_parser("info", help="Print a saved pipeline's steps, connections and runtime parameters.")
    info.add_argument("--config", required=True, help="Pipeline file (.yaml/.yml/.json): local path or gs://...")

    run = actions.add_parser(
        "run",
        help="Run a saved pipeline and save its Distiset.",
        epilog="Beam pipeline options go after `--`, e.g. -- --runner=DataflowRunner --project=P --region=R",
    )
    run.add_argument("--config", required=True, help="Pipeline file (.yaml/.yml/.json): local path or gs://...")
    run.add_argument(
        "--param",
        action="append",
        metavar="STEP.PARAMETER=VALUE",
        help="A runtime parameter, e.g. gen.llm.generation_kwargs.temperature=0.7 (repeatable; VALUE is YAML).",
    )
    run.add_argument("--output", required=True, help="Where the Distiset is saved (Distiset.save_to_disk).")
    run.add_argument(
        "--beam-output-dir",
        default=None,
        help="Where Beam writes the leaf rows (needed by remote runners, e.g. gs://bucket/tmp).",
    )
    run.add_argument(
        "--dead-letter-dir",
        default=None,
        help="Where every task's failed rows also go, as JSON lines (the rows stay in the Distiset either way).",
    )
    run.add_argument("--ignore-cache", action="store_true", help="Do not use the completions cache for this run.")
    run.add_argument(
        "--prices",
        default=None,
        metavar="PRICES.yaml",
        help="US dollars per million tokens per model, e.g. `gpt-4o-mini: {input: 0.15, output: 0.6}` (optional"
        " batch_input, batch_output: default half); the run summary then shows each model's cost.",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``beam-distil`` and ``python -m beam_distil``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    beam_options: List[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, beam_options = argv[:split], argv[split + 1 :]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # argparse has printed the usage and the error
        return int(exit.code or 0)
    try:
        if beam_options and args.action != "run":
            raise CliError("Beam options after `--` are only accepted by `pipeline run`")
        if args.action == "info":
            return _info(args)
        return _run(args, beam_options)
    except CliError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2


def console_main() -> int:
    """The ``beam-distil`` command's entry point: the project owns this process, so it gets the start-up tuning
    of ``beam_distil.owned_process`` (``main`` itself leaves the calling process as it is)."""
    from beam_distil.owned_process import tune_owned_process

    tune_owned_process()
    return main()


if __name__ == "__main__":
    sys.exit(console_main())
