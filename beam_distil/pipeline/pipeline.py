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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional

from beam_distil.helpers import did_you_mean
from beam_distil.pipeline.dag import DAG
from beam_distil.pipeline.validation import PipelineValidationError, validate_pipeline
from beam_distil.steps.pipeline_context import enter_pipeline, leave_pipeline

if TYPE_CHECKING:
    from beam_distil.beam.runner import BeamOptions
    from beam_distil.distiset import Distiset
    from beam_distil.pipeline.routing import RoutingBatchFunction
    from beam_distil.steps.base import _Step

class Pipeline:
    """A DAG of steps, built inside ``with Pipeline(name):`` and run on Apache Beam with ``run()``."""

    def __init__(self, name: str, description: Optional[str] = None, cache_dir: Optional[str] = None) -> None:
        """``cache_dir``: the response cache (any ``FileSystems`` path, e.g. ``gs://...``); default
        ``$BEAM_DISTIL_CACHE_DIR`` or ``~/.cache/beam_distil``, read when the pipeline runs."""
        self.name = name
        self.description = description
        self.cache_dir = cache_dir
        self.dag = DAG()
        self.routing: Dict[str, "RoutingBatchFunction"] = {}
        self.last_run_metrics: Dict[str, Dict[str, int]] = {}

    def __enter__(self) -> "Pipeline":
        enter_pipeline(self)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        leave_pipeline(self)

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
        """Routes each batch of ``upstream`` to the ``downstream`` steps ``routing`` chooses."""
        if upstream in self.routing and self.routing[upstream] is not routing:
            raise ValueError(f"Step {upstream!r} already has a routing function; a step routes through one function.")
        routing.downstream = list(dict.fromkeys([*routing.downstream, *downstream]))
        self.routing[upstream] = routing

    # -- parameters and validation -------------------------------------------------------------------------

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
        """Applies ``parameters`` and checks the pipeline; raises ``PipelineValidationError`` if it can't run."""
        self._apply_parameters(parameters)
        validate_pipeline(self)

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
        """
        from beam_distil.beam.launch import launch

        if dataset is not None:
            self._add_dataset(dataset)
        result = launch(
            self, parameters, options=options, output_dir=output_dir, output_format=output_format,
            dead_letter_dir=dead_letter_dir, use_cache=use_cache, show_progress=show_progress,
        )
        self.last_run_metrics = result.metrics
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
