"""Step base classes: the distilabel step model, and each step is also a Beam ``PTransform``.

A step is a pydantic model (its config validates, serializes and can be checked without running anything) and
a ``beam.PTransform`` at once, so the same object works in both faces of the library::

    with Pipeline("demo") as pipeline:
        load = LoadDataFromDicts(data=[{"a": 1}])
        keep = KeepColumns(columns=["a"])
        load >> keep                                   # distilabel style

    rows | "keep" >> KeepColumns(columns=["a"])        # inside any Beam job, on a PCollection of dicts

Subclasses implement ``process`` (and ``inputs``/``outputs``) exactly as in distilabel.

Names follow distilabel: a step without ``name=`` is called after its class with an index, ``text_generation_0``,
``text_generation_1``... (the first free one in its pipeline), inside a pipeline or not, so that the metadata keys
``raw_output_<name>`` and ``statistics_<name>`` match distilabel's. ``dump()`` and ``from_dict()`` are distilabel's
``_Serializable`` ones (``beam_distil.steps.serialization``).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Dict, Iterator, List, Optional, Tuple, Type, TypeVar, Union

import apache_beam as beam
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, PrivateAttr, field_validator
from typing_extensions import Annotated

from beam_distil.runtime_parameters import RuntimeParameter, RuntimeParametersMixin
from beam_distil.steps.pipeline_context import current_pipeline

if TYPE_CHECKING:
    from beam_distil.pipeline.pipeline import Pipeline

StepInput = Annotated[List[Dict[str, Any]], "StepInput"]
"""The rows of one batch, as received by ``process``."""
StepOutput = Iterator[List[Dict[str, Any]]]
"""``process`` yields lists of output rows."""
GeneratorStepOutput = Iterator[Tuple[List[Dict[str, Any]], bool]]
"""A generator's ``process`` yields ``(rows, is_last_batch)``."""
StepColumns = Union[List[str], Dict[str, bool]]
"""Columns as a list (all required) or a dict ``column -> required``."""

_SHADOWED_KEY = "__beam_distil_shadowed__"

_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]+$")


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def default_step_name(step_class: type) -> str:
    """The name of a step made without ``name=`` outside any pipeline, as distilabel: ``TextGeneration`` ->
    ``text_generation_0``. In a pipeline the index is the first one free (``Pipeline.unique_step_name``)."""
    return f"{_snake_case(step_class.__name__)}_0"


_SelfStep = TypeVar("_SelfStep", bound="_Step")


def columns_as_dict(columns: StepColumns) -> Dict[str, bool]:
    """Normalises ``inputs``/``outputs`` to ``column -> required``."""
    return dict(columns) if isinstance(columns, dict) else {column: True for column in columns}


class _StepFields(RuntimeParametersMixin, BaseModel, ABC):
    """The fields every step has. Declared apart from ``beam.PTransform``: its class attribute ``pipeline`` (set
    by Beam only when a transform is applied to bare values) would otherwise be shadowed by the field of the same
    name, distilabel's owning Pipeline, which is the one users read."""

    model_config = ConfigDict(
        arbitrary_types_allowed=True,
        validate_assignment=True,
        validate_default=True,
        extra="forbid",
        protected_namespaces=(),
    )

    name: Optional[str] = Field(default=None, description="Unique within the pipeline; derived from the class if omitted.")
    input_mappings: Dict[str, str] = Field(
        default_factory=dict, description="Step input column -> the column of the incoming rows that feeds it."
    )
    output_mappings: Dict[str, str] = Field(
        default_factory=dict, description="Step output column -> the name it gets in the outgoing rows."
    )
    pipeline: Any = Field(default=None, exclude=True, repr=False)


# pydantic builds each subclass's fields again from the class attributes it finds, and would take PTransform's
# `pipeline = None` as a new default (dropping `exclude=True`); with the field itself as the attribute, found first
# in the method resolution order, every step class keeps it as declared.
_StepFields.pipeline = _StepFields.model_fields["pipeline"]  # type: ignore[assignment]


class _Step(_StepFields, beam.PTransform, ABC):
    """What every step has: a name, column mappings, a pipeline, connections and a Beam expansion."""

    changes_row_count: ClassVar[bool] = False
    """Set to ``True`` on steps whose ``process`` may give more or fewer rows than it got (expanding,
    filtering). On Beam they are called one row at a time, so that each output row's id names its parent."""
    expects_uniform_inputs: ClassVar[bool] = False
    """Set to ``True`` on join steps whose predecessors must all produce the same columns (``GroupColumns``)."""
    requirements: ClassVar[List[str]] = []
    """Packages the step needs installed (PEP 508 strings), set with ``@requirements([...])``
    (``beam_distil.utils.requirements``); a pipeline lists and checks those of its steps."""

    _loaded: bool = PrivateAttr(default=False)
    _name_given: bool = PrivateAttr(default=False)

    # A step is a node in a graph, found by identity: two steps with the same config are still two steps.
    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: Optional[str]) -> Optional[str]:
        if name is not None and not _NAME_PATTERN.match(name):
            raise ValueError(f"step name {name!r} may only contain letters, digits, '_' and '-'")
        return name

    def model_post_init(self, __context: Any) -> None:
        self._name_given = self.name is not None
        if self.pipeline is None:
            self.pipeline = current_pipeline()
        if self.pipeline is not None:
            self._join(self.pipeline)
        elif self.name is None:
            self.name = default_step_name(type(self))

    def _join(self, pipeline: "Pipeline") -> None:
        if not self._name_given:
            self.name = pipeline.unique_step_name(_snake_case(type(self).__name__))
        self.pipeline = pipeline
        pipeline.add_step(self)

    # -- serialization -----------------------------------------------------------------------------------

    def dump(self) -> Dict[str, Any]:
        """This step as a dict, as distilabel's ``_Serializable.dump``: its fields (secrets and ``pipeline`` left
        out), its LLM with its own ``type_info``, ``runtime_parameters_info`` and ``type_info``.

        Example::

            data = TextGeneration(name="gen", llm=OpenAILLM(model="gpt-4o-mini")).dump()
            data["type_info"]    # {"module": "distilabel.steps.tasks.text_generation", "name": "TextGeneration"}
        """
        from beam_distil.steps.serialization import RUNTIME_PARAMETERS_INFO_KEY, dump_model

        return dump_model(self, extra={RUNTIME_PARAMETERS_INFO_KEY: self.get_runtime_parameters_info()})

    @classmethod
    def from_dict(cls: Type[_SelfStep], data: Dict[str, Any]) -> _SelfStep:
        """The step ``data`` describes (``dump()`` output, or a step distilabel wrote), with its LLM.

        The class is the one its ``type_info`` names, found in the registry (``beam_distil.steps.registry``):
        nothing named in ``data`` is imported, and a class that is not registered, or that is not a ``cls``, is
        refused before anything is built (``PipelineSerializationError``). As distilabel's ``from_dict``, fields the
        class does not have (distilabel's ``resources``...) are left out, with a warning when they held a value that
        mattered. Made inside ``with Pipeline(...)``, the step joins that pipeline, as any new step does.

        Example::

            copy = TextGeneration.from_dict(task.dump())
        """
        from beam_distil.steps.serialization import PipelineSerializationError, load_model, model_class

        if not isinstance(data, dict):
            raise PipelineSerializationError(f"{cls.__name__}.from_dict takes a dict (dump() output), got {data!r}")
        step_class = model_class(data, step=data.get("name"))
        if not issubclass(step_class, cls):
            raise PipelineSerializationError(
                f"{cls.__name__}.from_dict: type_info {data.get('type_info')!r} names {step_class.__name__}, which is"
                f" not a {cls.__name__}; call {step_class.__name__}.from_dict or _Step.from_dict."
            )
        return load_model(data, step=data.get("name"), drop_unknown_fields=True)

    # -- columns -----------------------------------------------------------------------------------------

    @property
    def inputs(self) -> StepColumns:
        """Columns the step reads (before ``input_mappings``)."""
        return []

    @property
    def outputs(self) -> StepColumns:
        """Columns the step writes (before ``output_mappings``)."""
        return []

    def get_inputs(self) -> Dict[str, bool]:
        """Incoming-row columns this step needs, after ``input_mappings``: column -> required."""
        return {self.input_mappings.get(c, c): required for c, required in columns_as_dict(self.inputs).items()}

    def get_outputs(self) -> Dict[str, bool]:
        """Columns this step adds to its rows, after ``output_mappings``."""
        return {self.output_mappings.get(c, c): required for c, required in columns_as_dict(self.outputs).items()}

    def columns_after(self, available: List[str]) -> List[str]:
        """Columns of this step's rows given the columns of its incoming rows (used by validation).

        Most steps add their outputs to what comes in; steps that drop or rename columns override it.
        """
        return list(dict.fromkeys([*available, *self.get_outputs()]))

    # -- lifecycle ---------------------------------------------------------------------------------------

    def load(self) -> None:
        """Acquires what ``process`` needs (clients, models, files). Called once per worker, in ``DoFn.setup``."""
        self._loaded = True

    def unload(self) -> None:
        """Releases what ``load`` acquired."""
        self._loaded = False

    @property
    def is_generator(self) -> bool:
        return False

    @property
    def is_global(self) -> bool:
        return False

    def check_ready(self) -> List[str]:
        """Problems that would stop the step from working (a missing extra, server or key), found before launch
        without a request. Steps that reach outside the pipeline override it."""
        return []

    @property
    def is_task(self) -> bool:
        """Whether an LLM generates this step's rows, one batch at a time (``Task``)."""
        return False

    # -- graph -------------------------------------------------------------------------------------------

    def connect(self, *steps: "_Step", routing_batch_function: Any = None) -> None:
        """Makes ``steps`` receive this step's rows (``a.connect(b, c)`` is ``a >> [b, c]``).

        With ``routing_batch_function`` each batch goes only to the steps it chooses.
        """
        if self.pipeline is None:
            raise ValueError(
                f"Step {self.name!r} was created outside a `with Pipeline(...)` block; create it inside one to connect it."
            )
        for step in steps:
            if step.pipeline is None:
                # A step made outside any `with Pipeline(...)` block joins the pipeline it is connected to.
                step._join(self.pipeline)
            self.pipeline.add_edge(self.name, step.name)
        if routing_batch_function is not None:
            self.pipeline.set_routing(self.name, [step.name for step in steps], routing_batch_function)

    def __rshift__(self, other: Any) -> Any:
        if isinstance(other, _Step):
            self.connect(other)
            return other
        if isinstance(other, list) and all(isinstance(step, _Step) for step in other):
            self.connect(*other)
            return other
        if callable(other) and not isinstance(other, type) and not hasattr(other, "__rrshift__"):
            # `step >> routing_function >> [steps]` with a plain function, as `connect(routing_batch_function=...)`.
            return _RoutedFrom(self, other)
        return NotImplemented

    def __rrshift__(self, other: Any) -> Any:
        if isinstance(other, str):
            # `rows | "label" >> step`: Beam's own naming.
            return beam.PTransform.__rrshift__(self, other)
        if isinstance(other, list) and all(isinstance(step, _Step) for step in other):
            for step in other:
                step.connect(self)
            return self
        return NotImplemented

    # -- Beam --------------------------------------------------------------------------------------------

    def keyed_transform(self) -> Optional[beam.PTransform]:
        """A Beam transform of its own on ``(row_id, row)`` elements, for steps that must scale past one worker
        (deduplication keyed by Beam, say) rather than call ``process`` on batches. ``None``: use ``process``."""
        return None

    def default_label(self) -> str:
        return self.name or type(self).__name__

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        """Beam-native use: a ``PCollection`` of dict rows in, a ``PCollection`` of dict rows out."""
        from beam_distil.beam.step_transforms import apply_step_to_rows

        return apply_step_to_rows(self, pcoll)

    # -- mappings ----------------------------------------------------------------------------------------

    def rename_inputs(self, rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """``rows`` with ``input_mappings`` applied: each mapped column under the name the step reads."""
        if not self.input_mappings:
            return rows
        column_to_input = {column: name for name, column in self.input_mappings.items()}
        renamed_rows = []
        for row in rows:
            renamed = {column_to_input.get(k, k): v for k, v in row.items() if k not in self.input_mappings or k in column_to_input}
            # A column that already has the name an input is renamed to would be lost; it is set aside and
            # put back by `rename_outputs` (distilabel drops it).
            shadowed = {name: row[name] for name in self.input_mappings if name in row and name not in column_to_input}
            if shadowed:
                renamed[_SHADOWED_KEY] = shadowed
            renamed_rows.append(renamed)
        return renamed_rows

    def rename_outputs(self, row: Dict[str, Any]) -> Dict[str, Any]:
        """An output row with ``output_mappings`` applied and mapped inputs back under their own names."""
        if not self.input_mappings and not self.output_mappings:
            return row
        renamed: Dict[str, Any] = {}
        for key, value in row.items():
            if key == _SHADOWED_KEY:
                continue
            if key in self.output_mappings:
                renamed[self.output_mappings[key]] = value
            elif key in self.input_mappings:
                # The input goes back to the name the incoming row had.
                renamed[self.input_mappings[key]] = value
            else:
                renamed[key] = value
        for name, value in row.get(_SHADOWED_KEY, {}).items():
            renamed.setdefault(name, value)
        return renamed

    def process_applying_mappings(self, *inputs: List[Dict[str, Any]]) -> StepOutput:
        """Runs ``process`` with ``input_mappings`` applied to its rows and ``output_mappings`` to its results."""
        renamed = [self.rename_inputs(rows) for rows in inputs]
        for output_rows in self.process(*renamed):
            yield [self.rename_outputs(row) for row in output_rows]

    @abstractmethod
    def process(self, *inputs: StepInput) -> StepOutput:
        """Yields lists of output rows for the given rows (one list per predecessor)."""

    def __getstate__(self) -> Dict[str, Any]:
        # A step travels to Beam workers inside its DoFn; the pipeline (and its other steps) stays behind.
        state = super().__getstate__()
        state["__dict__"] = {**state["__dict__"], "pipeline": None}
        return state


class _RoutedFrom:
    """``step >> routing_function``, waiting for the steps it routes to: ``>> [a, b]`` connects them through it."""

    def __init__(self, upstream: _Step, routing_function: Any) -> None:
        self.upstream, self.routing_function = upstream, routing_function

    def __rshift__(self, steps: Union[_Step, List[_Step]]) -> Union[_Step, List[_Step]]:
        targets = steps if isinstance(steps, list) else [steps]
        self.upstream.connect(*targets, routing_batch_function=self.routing_function)
        return steps


class Step(_Step, ABC):
    """A step that transforms batches of rows. ``process(self, inputs: StepInput) -> StepOutput``.

    Example::

        class Upper(Step):
            @property
            def inputs(self): return ["text"]
            @property
            def outputs(self): return ["upper"]
            def process(self, inputs: StepInput) -> StepOutput:
                yield [{**row, "upper": row["text"].upper()} for row in inputs]
    """

    input_batch_size: RuntimeParameter[PositiveInt] = Field(
        default=50, description="How many rows ``process`` receives at once."
    )


class GlobalStep(Step, ABC):
    """A step that receives every row of its input in one call (Beam: ``CombineGlobally``)."""

    @property
    def is_global(self) -> bool:
        return True


class GeneratorStep(_Step, ABC):
    """A root step producing rows: ``process(self, offset: int = 0) -> GeneratorStepOutput``.

    Every row it yields gets a stable row id (its position), which joins and the Distiset order rely on.
    """

    batch_size: RuntimeParameter[PositiveInt] = Field(default=50, description="How many rows each batch holds.")

    @property
    def is_generator(self) -> bool:
        return True

    def known_output_columns(self) -> Optional[List[str]]:
        """The columns of the rows it will yield, or ``None`` when only loading can tell (for validation)."""
        return list(self.get_outputs())

    @abstractmethod
    def process(self, offset: int = 0) -> GeneratorStepOutput:  # type: ignore[override]
        """Yields ``(rows, is_last_batch)`` starting at row ``offset``."""

    def rows_between(self, first_row: int, row_limit: Optional[int]) -> Optional["GeneratorStep"]:
        """A copy of this step yielding only its rows at positions ``first_row`` to ``row_limit`` (excluded), or
        ``None`` when it cannot make one (the default). A local run in slices asks for it, so that each slice's
        job carries only its own rows; without it, the rows before ``first_row`` are read and skipped."""
        return None

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        """Beam-native use: ``pipeline | LoadDataFromDicts(data=...)`` gives a ``PCollection`` of dict rows."""
        from beam_distil.beam.generator_source import GenerateRows

        return pbegin | GenerateRows(self) | beam.Values()
