"""``Pipeline``: declare steps and connections distilabel-style, then run them on Beam.

Example::

    from beam_distil.pipeline import Pipeline
    from beam_distil.steps import LoadDataFromDicts, GroupColumns
    from beam_distil.steps.tasks import TextGeneration
    from beam_distil.models import OpenAILLM

    with Pipeline("pipe-name", description="My first pipe") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "Write a haiku about Beam."}])
        tasks = [TextGeneration(name=f"gen_{m}", llm=OpenAILLM(model=m)) for m in ("a", "b")]
        group = GroupColumns(columns=["generation", "model_name"], output_columns=["generations", "model_names"])
        load >> tasks >> group

    distiset = pipeline.run(
        parameters={"gen_a": {"llm": {"generation_kwargs": {"temperature": 0.7}}}},
        options=["--direct_num_workers=2"],            # any Beam pipeline options
    )
    distiset["default"]["train"][0]["generations"]

As in distilabel, ``Pipeline()`` without a name is named after its steps when its ``with`` block closes
(``pipeline_load_data_from_dicts_0_gen_a_gen_b_group_columns_0``), and ``requirements=[...]`` (with those of its
steps, ``beam_distil.utils.requirements``) are saved with it and checked before it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional

from beam_distil.beam.row_slices import DEFAULT_ROWS_PER_SLICE
from beam_distil.exceptions import DistilabelOfflineBatchGenerationNotFinishedException
from beam_distil.helpers import did_you_mean
from beam_distil.pipeline.dag import DAG
from beam_distil.pipeline.routing import as_routing_batch_function
from beam_distil.pipeline.validation import PipelineValidationError, check_requirements, validate_pipeline
from beam_distil.steps.pipeline_context import enter_pipeline, leave_pipeline
from beam_distil.utils.requirements import unmet_requirements, valid_requirements

if TYPE_CHECKING:
    from beam_distil.beam.runner import BeamOptions
    from beam_distil.distiset import Distiset
    from beam_distil.pipeline.routing import RoutingBatchFunction
    from beam_distil.run_cost import ModelUsage
    from beam_distil.steps.base import _Step

# distilabel's name for a pipeline made without one, until its block closes or it runs.
DEFAULT_PIPELINE_NAME = "__default_pipeline_name__"


class Pipeline:
    """A DAG of steps, built inside ``with Pipeline(name):`` and run on Apache Beam with ``run()``."""

    def __init__(
        self,
        name: Optional[str] = None,
        description: Optional[str] = None,
        cache_dir: Optional[str] = None,
        enable_metadata: bool = False,
        requirements: Optional[List[str]] = None,
    ) -> None:
        """
        Args:
            name: the pipeline's name; without one, it is named after its steps when its ``with`` block closes
                (``pipeline_<step>_<step>...``), as in distilabel.
            description: saved with the pipeline and shown by ``beam-distil pipeline info``.
            cache_dir: the response cache (any ``FileSystems`` path, e.g. ``gs://...``); default
                ``$BEAM_DISTIL_CACHE_DIR`` or ``~/.cache/beam_distil``, read when the pipeline runs.
            enable_metadata: accepted, in distilabel's position, so that a ported constructor call works. The
                ``distilabel_metadata`` column is kept either way, as distilabel 1.5.3 keeps it (its check for
                the column looks at a ``DatasetDict``'s split names and never matches); drop it with
                ``distiset["default"].remove_columns("distilabel_metadata")``.
            requirements: packages the pipeline needs (PEP 508 strings such as ``"nltk>=3.8"``): saved with it,
                and checked in the launching process before it runs (``MissingRequirementsError``).
        """
        self.name = name or DEFAULT_PIPELINE_NAME
        self.description = description
        self.cache_dir = cache_dir
        self.enable_metadata = enable_metadata
        self.dag = DAG()
        self.routing: Dict[str, "RoutingBatchFunction"] = {}
        self.last_run_metrics: Dict[str, Dict[str, int]] = {}
        # Requests, tokens and cost per model name of the last run (beam_distil.run_cost.ModelUsage).
        self.last_run_usage: Dict[str, "ModelUsage"] = {}
        self._requirements = valid_requirements(requirements or [], owner=f"Pipeline {self.name!r}")

    def __enter__(self) -> "Pipeline":
        enter_pipeline(self)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        leave_pipeline(self)
        self._name_after_steps()

    def _name_after_steps(self) -> None:
        """Names a pipeline made without a name after its steps, as distilabel does."""
        if self.name == DEFAULT_PIPELINE_NAME:
            self.name = f"pipeline_{'_'.join(self.dag.steps)}"

    @property
    def requirements(self) -> List[str]:
        """The packages the pipeline needs: its own ``requirements`` and those of its steps' classes
        (``@requirements``), each once, sorted, as distilabel lists them."""
        declared = [*self._requirements, *(r for step in self.dag.steps.values() for r in step.requirements)]
        return valid_requirements(declared, owner=f"Pipeline {self.name!r}")

    @requirements.setter
    def requirements(self, requirements: List[str]) -> None:
        """Adds ``requirements`` to the pipeline's own (as distilabel's setter, it never removes one)."""
        added = [requirements] if isinstance(requirements, str) else list(requirements)
        self._requirements = valid_requirements([*self._requirements, *added], owner=f"Pipeline {self.name!r}")

    def requirements_to_install(self) -> List[str]:
        """The requirements this environment does not meet (not installed, or at another version), as distilabel's
        ``requirements_to_install``; ``run()`` refuses to start while there are any.

        Example::

            Pipeline("p", requirements=["nltk>=3.8"]).requirements_to_install()   # ['nltk>=3.8'] without nltk
        """
        return list(unmet_requirements(self.requirements))

    def __repr__(self) -> str:
        return f"Pipeline(name={self.name!r}, steps={list(self.dag.steps)})"

    # -- building ------------------------------------------------------------------------------------------

    def unique_step_name(self, base: str) -> str:
        """``base_0``, ``base_1``...: the first name not taken, as distilabel numbers unnamed steps."""
        index = 0
        while f"{base}_{index}" in self.dag.steps:
            index += 1
        return f"{base}_{index}"

    def add_step(self, step: "_Step") -> None:
        self.dag.add_step(step)

    def add_edge(self, from_name: str, to_name: str) -> None:
        self.dag.add_edge(from_name, to_name)

    def set_routing(self, upstream: str, downstream: List[str], routing: "RoutingBatchFunction") -> None:
        """Routes each batch of ``upstream`` to the ``downstream`` steps ``routing`` chooses (a
        ``RoutingBatchFunction``, or a plain function ``f(step_names) -> chosen names``, as distilabel takes)."""
        routing = as_routing_batch_function(routing)
        if upstream in self.routing and self.routing[upstream] is not routing:
            raise ValueError(f"Step {upstream!r} already has a routing function; a step routes through one function.")
        routing.downstream = list(dict.fromkeys([*routing.downstream, *downstream]))
        self.routing[upstream] = routing

    # -- parameters and validation -------------------------------------------------------------------------

    def get_runtime_parameters_info(self) -> Dict[str, List[Dict[str, Any]]]:
        """Each step's runtime parameters, by step name in the order the steps were added, as distilabel's.

        Example::

            pipeline.get_runtime_parameters_info()["gen_a"]
            # [{"name": "input_batch_size", "optional": True, "description": ...},
            #  {"name": "llm", "runtime_parameters_info": [...]}, ...]
        """
        return {name: step.get_runtime_parameters_info() for name, step in self.dag.steps.items()}

    def _apply_parameters(self, parameters: Optional[Dict[str, Dict[str, Any]]]) -> None:
        if parameters is not None and not isinstance(parameters, dict):
            raise PipelineValidationError(
                self.name,
                [
                    f"run(parameters=...) must be a dict of step name -> that step's parameters, e.g."
                    f" {{'gen': {{'llm': {{'generation_kwargs': {{'temperature': 0.7}}}}}}}}; got a"
                    f" {type(parameters).__name__}: {parameters!r}"
                ],
            )
        problems: List[str] = []
        for step_name, step_parameters in (parameters or {}).items():
            step = self.dag.steps.get(step_name)
            if step is None:
                hint = did_you_mean(step_name, self.dag.steps)
                problems.append(
                    f"run(parameters=...) names step {step_name!r}, which is not in the pipeline.{hint}"
                    f" Steps: {list(self.dag.steps)}"
                )
                continue
            if not isinstance(step_parameters, dict):
                problems.append(f"run(parameters=...) for step {step_name!r} must be a dict, got {step_parameters!r}")
                continue
            unknown = step.unknown_runtime_parameters(step_parameters)
            problems.extend(f"Step {step_name!r}: {problem}" for problem in unknown)
            if not unknown:
                try:
                    step.set_runtime_parameters(step_parameters)
                except ValueError as error:  # pydantic's message names the field and the expected type
                    problems.append(f"Step {step_name!r}: invalid runtime parameter value: {error}")
        if problems:
            raise PipelineValidationError(self.name, problems)

    def validate(self, parameters: Optional[Dict[str, Dict[str, Any]]] = None) -> None:
        """Applies ``parameters`` and checks the pipeline; raises ``PipelineValidationError`` if it can't run, and
        ``MissingRequirementsError`` (a ``PipelineValidationError`` and, as in distilabel, a
        ``ModuleNotFoundError``) if a requirement is not installed here."""
        self._name_after_steps()
        self._apply_parameters(parameters)
        validate_pipeline(self)
        check_requirements(self)

    def _add_dataset(self, dataset: Any) -> None:
        from beam_distil.steps.generators.utils import make_generator_step

        roots = self.dag.roots
        generators = [name for name in roots if self.dag.steps[name].is_generator]
        if generators:
            raise PipelineValidationError(
                self.name, [f"run(dataset=...) feeds the root steps, but {generators} already generate rows."]
            )
        with self:
            generator = make_generator_step(dataset, pipeline=self)
        for root in roots:
            if root != generator.name:
                self.add_edge(generator.name, root)

    # -- running -------------------------------------------------------------------------------------------

    def run(
        self,
        parameters: Optional[Dict[str, Dict[str, Any]]] = None,
        use_cache: bool = True,
        dataset: Any = None,
        options: "BeamOptions" = None,
        output_dir: Optional[str] = None,
        dead_letter_dir: Optional[str] = None,
        output_format: str = "parquet",
        show_progress: Optional[bool] = None,
        rows_per_slice: Optional[int] = DEFAULT_ROWS_PER_SLICE,
        prices: Optional[Dict[str, Any]] = None,
    ) -> "Distiset":
        """Validates, runs the pipeline on Beam and returns a ``Distiset`` of every leaf step's rows.

        Args:
            parameters: runtime parameters per step name, e.g. ``{"gen": {"llm": {"generation_kwargs": {...}}}}``.
            use_cache: reuse completions already paid for, and store new ones as they arrive, in
                ``cache_dir``. ``False`` bypasses the cache for this run (a task's own ``use_cache=False`` too).
            dataset: rows for a pipeline whose first steps are not generators (list of dicts, a
                ``datasets.Dataset`` or a pandas DataFrame).
            options: Beam ``PipelineOptions``, a list of flags (``["--runner=DataflowRunner", ...]``) or a
                dict. Without a runner, runs locally on ``FnApiRunner`` in multi-threading mode.
            output_dir: where the job writes each leaf's rows (``output_format`` files, one folder per subset),
                with ``distiset_configs/`` (card, pipeline.yaml): any ``FileSystems`` path, e.g. ``gs://``;
                ``Distiset.load_from_disk(output_dir)`` reads it back. Needed for remote runners.
            output_format: ``"parquet"`` or ``"jsonl"``, for ``output_dir``.
            show_progress: live progress per step on stderr; default: when stderr is a terminal and the steps
                run in this process (not ``multi_processing`` or a remote runner, which report Beam Metrics).
            dead_letter_dir: where every task's failed rows go as JSON lines (``{"step", "row_id", "error",
                "row"}``), besides staying in the Distiset with ``None`` outputs.
            rows_per_slice: a local run goes through its generators' rows this many at a time, one Beam job
                each, so that its memory stays bounded however many rows there are (results, order, routing and
                counters are those of one job). A pipeline with a global step, or a generator that calls an LLM,
                runs in one job. ``None``: always one job.
            prices: US dollars per million tokens per model name (a task's ``llm.model_name``), e.g.
                ``{"gpt-4o-mini": {"input": 0.15, "output": 0.6, "batch_input": 0.075, "batch_output": 0.3}}``
                (batch rates default to half the online ones). The run summary then shows each model's cost,
                and ``last_run_usage`` holds it. A price for a model no task uses is ignored. Checked before
                anything runs (``beam_distil.run_cost``).
        """
        from beam_distil.beam.launch import launch
        from beam_distil.run_cost import model_of_each_task, prices_for_run, tokens_by_model

        prices = prices_for_run(self.name, prices)  # a mistake in them is found before the dataset is added
        if dataset is not None:
            self._add_dataset(dataset)
        try:
            result = launch(
                self, parameters, options=options, output_dir=output_dir, output_format=output_format,
                dead_letter_dir=dead_letter_dir, use_cache=use_cache, show_progress=show_progress,
                rows_per_slice=rows_per_slice, prices=prices,
            )
        except DistilabelOfflineBatchGenerationNotFinishedException as waiting:
            # The run did finish, with rows left waiting on provider batches: its counters, and what they cost,
            # are still this run's (not the figures of the run before).
            self.last_run_metrics = getattr(waiting.distiset, "statistics", None) or {}
            self.last_run_usage = tokens_by_model(self.last_run_metrics, model_of_each_task(self.dag.steps), prices)
            raise
        self.last_run_metrics = result.metrics
        self.last_run_usage = result.usage
        return result.distiset

    def dry_run(
        self,
        parameters: Optional[Dict[str, Dict[str, Any]]] = None,
        batch_size: int = 1,
        dataset: Any = None,
        options: "BeamOptions" = None,
    ) -> "Distiset":
        """Runs the pipeline on the first ``batch_size`` rows of each generator, to check it end to end."""
        from beam_distil.beam.launch import launch

        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise PipelineValidationError(
                self.name, [f"dry_run(batch_size=...) is how many rows each generator yields: at least 1, got {batch_size!r}"]
            )
        if dataset is not None:
            self._add_dataset(dataset)
        result = launch(self, parameters, options=options, row_limit=batch_size)
        self.last_run_metrics = result.metrics
        self.last_run_usage = result.usage
        return result.distiset

    # -- serialization (beam_distil.pipeline.serialization) ---------------------------------------------------

    def dump(self) -> Dict[str, Any]:
        """The pipeline as a dict in distilabel's ``pipeline.yaml`` layout; secrets (``SecretStr``) left out."""
        from beam_distil.pipeline.serialization import pipeline_to_dict

        return pipeline_to_dict(self)

    def save(self, path: Any, format: Optional[str] = None) -> None:
        """Writes the pipeline as ``"yaml"`` or ``"json"`` (default: from the suffix) to a local or ``gs://`` path."""
        from beam_distil.pipeline.serialization import save_pipeline

        save_pipeline(self, path, format=format)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Pipeline":
        """Rebuilds a pipeline from ``dump()`` output."""
        from beam_distil.pipeline.serialization import pipeline_from_dict

        return pipeline_from_dict(data, cls)

    @classmethod
    def from_yaml(cls, path: Any) -> "Pipeline":
        from beam_distil.pipeline.serialization import load_pipeline

        return load_pipeline(path, cls, format="yaml")

    @classmethod
    def from_json(cls, path: Any) -> "Pipeline":
        from beam_distil.pipeline.serialization import load_pipeline

        return load_pipeline(path, cls, format="json")

    @classmethod
    def from_file(cls, path: Any) -> "Pipeline":
        """Loads a ``.yaml``/``.yml``/``.json`` pipeline from a local path or any Beam ``FileSystems`` path (``gs://``)."""
        from beam_distil.pipeline.serialization import load_pipeline

        return load_pipeline(path, cls)

    # -- drawing (beam_distil.pipeline.draw) -------------------------------------------------------------------

    def draw(self, path: Any = None, format: Optional[str] = None) -> str:
        """The pipeline as Mermaid text; with ``path`` also writes ``.mmd``, ``.md`` or offline ``.html``."""
        from beam_distil.pipeline.draw import draw

        return draw(self, path=path, format=format)

    def _repr_markdown_(self) -> str:
        """Jupyter shows the pipeline as a Mermaid diagram (rendered by JupyterLab 4.1+, GitHub, VS Code)."""
        from beam_distil.pipeline.draw import to_markdown

        return to_markdown(self)

    def _repr_html_(self) -> str:
        """Jupyter's HTML view: an inline SVG drawing (no JavaScript, no network) and the Mermaid source."""
        from beam_distil.pipeline.draw import to_html_fragment

        return to_html_fragment(self)
