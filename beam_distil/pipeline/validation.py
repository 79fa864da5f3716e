"""Checks a pipeline before Beam is touched, reporting every problem at once with what to do about it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Dict, List, Optional

from beam_distil.errors import PipelineValidationError
from beam_distil.helpers import did_you_mean
from beam_distil.models.base import LLM
from beam_distil.rows import DISTILABEL_METADATA_KEY, unencodable_text
from beam_distil.steps.base import columns_as_dict
from beam_distil.steps.tasks.base import Task
from beam_distil.utils.requirements import unmet_requirements

if TYPE_CHECKING:
    from beam_distil.pipeline.pipeline import Pipeline
    from beam_distil.steps.base import _Step

logger = logging.getLogger("beam_distil")


class MissingRequirementsError(PipelineValidationError, ModuleNotFoundError):
    """A requirement of the pipeline (``Pipeline(requirements=...)``, ``@requirements``) is not installed in the
    process that launches it. A ``PipelineValidationError`` like every problem found before a run, and a
    ``ModuleNotFoundError``, which distilabel raises in this case."""


# Every task writes these; a chain of tasks replacing them is the normal case, not worth a warning.
_COLUMNS_EVERY_TASK_REWRITES = {"model_name", DISTILABEL_METADATA_KEY}


def _check_mappings(step: "_Step") -> List[str]:
    problems = []
    for attribute, columns in (("input_mappings", step.inputs), ("output_mappings", step.outputs)):
        known = list(columns_as_dict(columns))
        for column in getattr(step, attribute):
            if column not in known:
                problems.append(
                    f"Step {step.name!r}: {attribute} names {column!r}, which is not one of its"
                    f" {attribute.split('_')[0]}s {known}.{did_you_mean(column, known)}"
                )
    return problems


def _check_columns(pipeline: "Pipeline") -> List[str]:
    """Walks the DAG in order, tracking which columns each step's rows have."""
    dag = pipeline.dag
    problems: List[str] = []
    # None: not knowable before loading (a file whose schema is only read at run time).
    columns: Dict[str, Optional[List[str]]] = {}
    for name in dag.topological_order():
        step = dag.steps[name]
        predecessors = dag.predecessors(name)
        if step.is_generator:
            try:
                columns[name] = step.known_output_columns()
            except ValueError as error:  # an unreadable data file, named by the step's own message
                problems.append(str(error))
                columns[name] = None
            continue
        incoming = [columns[p] for p in predecessors]
        if any(c is None for c in incoming):
            columns[name] = None
            continue
        available = list(dict.fromkeys(column for cols in incoming for column in cols))  # type: ignore[union-attr]
        required = [column for column, needed in step.get_inputs().items() if needed]
        missing = [column for column in required if column not in available]
        if missing:
            problems.append(
                f"Step {name!r} requires input columns {missing}, which its predecessors {predecessors} do not"
                f" produce. Available columns: {available}. Rename a column to what the step expects with"
                f" `input_mappings={{{missing[0]!r}: <available column>}}` on {name!r}, or with"
                f" `output_mappings` on the step that produces it."
            )
        overwritten = [c for c in step.get_outputs() if c in available and c not in _COLUMNS_EVERY_TASK_REWRITES]
        if overwritten:
            logger.warning(
                "Step %r writes %s, which its incoming rows already have: the incoming values are replaced."
                " To keep both, rename this step's outputs with output_mappings.", name, overwritten,
            )
        columns[name] = step.columns_after(available)
    return problems


def _check_encodable(step: "_Step") -> List[str]:
    """A step's configuration (a system prompt, a template...) must be text Beam can encode: it is sent with
    every row, so a lone surrogate there would fail every row after its request was paid for."""
    problem = unencodable_text(step.model_dump(exclude={"pipeline"}))
    if problem is None:
        return []
    return [
        f"Step {step.name!r}: its configuration holds text UTF-8 cannot encode ({problem}); decode such text with"
        " errors='replace' rather than 'surrogateescape', or fix it."
    ]


def _check_llm(step: "_Step", llm: LLM) -> List[str]:
    """The LLM can be reached and every generation kwarg exists and has the right type."""
    problems = [f"Step {step.name!r}: {problem}" for problem in llm.check_ready()]
    accepted = llm.generation_parameter_names()
    wants_schema = llm.structured_output is not None or (
        isinstance(step, Task) and step.use_default_structured_output and step.get_structured_output() is not None
    )
    if wants_schema and not llm.follows_structured_output:
        problems.append(
            f"Step {step.name!r}: {type(llm).__name__} cannot constrain its answer to a JSON schema;"
            " set use_default_structured_output=False or use another LLM."
        )
    for key, value in (llm.generation_kwargs or {}).items():
        if key not in accepted:
            problems.append(
                f"Step {step.name!r}: {type(llm).__name__} has no generation parameter {key!r}.{did_you_mean(key, accepted)}"
                f" Accepted: {accepted}"
            )
            continue
        problem = llm.check_generation_kwarg(key, value)
        if problem:
            problems.append(f"Step {step.name!r}: generation parameter {key!r} {problem}")
    return problems


def _check_offline_batch_generation(step: "_Step", llm: LLM) -> List[str]:
    """A provider batch answers each request once, hours later: it fits a task with one call per row."""
    if not llm.use_offline_batch_generation:
        return []
    if step.is_generator:
        return [
            f"Step {step.name!r}: a generator's LLM cannot use offline batch generation (its rows come from the"
            " calls themselves); set use_offline_batch_generation=False on its LLM."
        ]
    if getattr(step, "calls_in_sequence", False):
        return [
            f"Step {step.name!r}: {type(step).__name__} makes several LLM calls per row, each depending on the last"
            " answer, which a provider batch cannot do; set use_offline_batch_generation=False on its LLM."
        ]
    return []


def _check_routing(pipeline: "Pipeline") -> List[str]:
    from beam_distil.pipeline.routing import RoutingError

    dag = pipeline.dag
    problems: List[str] = []
    for upstream, routing in pipeline.routing.items():
        for name in routing.downstream:
            if len(dag.predecessors(name)) > 1:
                problems.append(
                    f"Step {name!r} receives routed batches from {upstream!r}, so it can have no other predecessor;"
                    f" it also receives from {[p for p in dag.predecessors(name) if p != upstream]}."
                )
        try:
            routing.choose(routing.downstream, upstream, 0)
        except RoutingError as error:
            problems.append(f"Step {upstream!r}: {error}")
    return problems


def _check_uniform_inputs(pipeline: "Pipeline") -> List[str]:
    """Steps joining routed branches, or grouping columns, need every branch to produce the same columns."""
    dag = pipeline.dag
    routed = {name for routing in pipeline.routing.values() for name in routing.downstream}
    problems: List[str] = []
    for name, step in dag.steps.items():
        predecessors = dag.predecessors(name)
        if len(predecessors) < 2 or not (step.expects_uniform_inputs or set(predecessors) <= routed):
            continue
        columns = {p: sorted(dag.steps[p].get_outputs()) for p in predecessors}
        if len({tuple(c) for c in columns.values()}) > 1:
            described = "; ".join(f"{p} ({type(dag.steps[p]).__name__}) -> {c}" for p, c in columns.items())
            problems.append(
                f"Step {name!r} joins steps that produce different columns: {described}. Give them the same"
                " output columns (with `output_mappings`) or join them with CombineOutputs instead."
            )
    return problems


def validate_pipeline(pipeline: "Pipeline") -> None:
    """Raises ``PipelineValidationError`` listing every problem found, or returns when the pipeline can run."""
    dag = pipeline.dag
    if not dag.steps:
        raise PipelineValidationError(pipeline.name, ["it has no steps; create steps inside `with Pipeline(...)`."])
    cycle = dag.find_cycle()
    if cycle:
        raise PipelineValidationError(
            pipeline.name, [f"its steps form a cycle: {' >> '.join(cycle)}; a pipeline must be acyclic."]
        )
    problems: List[str] = []
    for name, step in dag.steps.items():
        predecessors = dag.predecessors(name)
        if not predecessors and not step.is_generator:
            problems.append(
                f"Step {name!r} has no predecessor but is not a generator step ({type(step).__name__});"
                " connect a generator such as LoadDataFromDicts before it, or pass `dataset=` to run()."
            )
        if predecessors and step.is_generator:
            problems.append(f"Generator step {name!r} cannot receive rows, but {predecessors} are connected to it.")
        if isinstance(step, Task) and len(predecessors) > 1:
            problems.append(
                f"Task {name!r} receives rows from several steps {predecessors}; put a GroupColumns,"
                " MergeColumns or CombineOutputs step before it to join them."
            )
        problems.extend(_check_mappings(step))
        problems.extend(f"Step {name!r}: {problem}" for problem in step.check_ready())
        if not step.is_generator:  # a generator's rows are checked one by one at run time, never failing the job
            problems.extend(_check_encodable(step))
        for parameter in step.missing_runtime_parameters():
            problems.append(
                f"Step {name!r}: runtime parameter {parameter!r} is required but has no value; set it in the"
                f" constructor or with {_run_parameters_example(name, parameter)}."
            )
        llm = getattr(step, "llm", None)
        if isinstance(llm, LLM):  # tasks, and generators that own an LLM
            problems.extend(_check_llm(step, llm))
            problems.extend(_check_offline_batch_generation(step, llm))
    problems.extend(_check_routing(pipeline))
    problems.extend(_check_uniform_inputs(pipeline))
    if not problems:
        problems.extend(_check_columns(pipeline))
    if problems:
        raise PipelineValidationError(pipeline.name, problems)


def _run_parameters_example(step_name: str, parameter: str) -> str:
    """``run(parameters={'load': {'llm': {'model': ...}}})`` for the dotted ``parameter`` (``llm.model``)."""
    nested = "..."
    for part in reversed(parameter.split(".")):
        nested = f"{{{part!r}: {nested}}}"
    return f"run(parameters={{{step_name!r}: {nested}}})"


def check_requirements(pipeline: "Pipeline") -> None:
    """Raises ``MissingRequirementsError`` naming each requirement of ``pipeline`` this environment does not meet."""
    unmet = unmet_requirements(pipeline.requirements)
    if unmet:
        to_install = " ".join(f"'{requirement}'" for requirement in unmet)
        raise MissingRequirementsError(
            pipeline.name,
            [f"requirement {requirement!r} is not met: {reason}" for requirement, reason in unmet.items()]
            + [
                f"install them where the pipeline is launched (`pip install {to_install}`) and where it runs (on"
                " Dataflow: --requirements_file, --setup_file or the container image)."
            ],
        )
