"""``@step``: a function as a step class, as distilabel's ``distilabel.steps.step``.

Example::

    from beam_distil.steps import GeneratorStepOutput, RuntimeParameter, StepInput, StepOutput, step

    @step(inputs=["instruction"], outputs=["generation"])
    def Echo(inputs: StepInput, prefix: RuntimeParameter[str] = "> ") -> StepOutput:
        yield [{**row, "generation": prefix + row["instruction"]} for row in inputs]

    @step(inputs=["instruction"], step_type="global")
    def ShortOnes(inputs: StepInput, max_length: RuntimeParameter[int] = 256) -> StepOutput:
        yield [row for row in inputs if len(row["instruction"]) <= max_length]

    @step(outputs=["num"], step_type="generator")
    def Numbers(offset: int = 0, num_rows: RuntimeParameter[int] = 500) -> GeneratorStepOutput:
        yield [{"num": n} for n in range(offset, num_rows)], True

    with Pipeline("decorated") as pipeline:
        Numbers(num_rows=10) >> Echo(prefix="# ", input_mappings={"instruction": "num"})
    pipeline.run(parameters={"echo_0": {"prefix": "## "}})

The decorated name becomes a step class (``Echo`` is a ``Step`` subclass, ``ShortOnes`` a ``GlobalStep``,
``Numbers`` a ``GeneratorStep``). Each parameter annotated ``RuntimeParameter[...]`` becomes a field of the class,
set in the constructor or in ``run(parameters=...)``, and the function receives its current value. The rows
come positionally (one list per predecessor); a generator function gets ``offset`` if it declares it.

On Beam the class travels to the workers by name (``module.Echo``), like any class defined at the top level of a
module the workers can import; one defined in ``__main__`` or inside a function travels by value, function and
all. The class is registered for ``Pipeline.from_file`` (decorating declares a step, as ``@register`` does), so a
saved pipeline loads wherever the module that defines it has been imported.

Differences from distilabel: a runtime parameter given in the constructor reaches the function (distilabel passes
only values given in ``run(parameters=...)``), and a generator function without ``offset`` works (distilabel
always passes ``offset``).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Optional, Type, Union

from pydantic import Field
from typing_extensions import Annotated, Literal, get_args, get_origin

from beam_distil.runtime_parameters import _RUNTIME_PARAMETER_ANNOTATION
from beam_distil.steps.base import GeneratorStep, GlobalStep, Step, StepColumns, _Step
from beam_distil.steps.registry import REGISTRY

StepType = Literal["normal", "global", "generator"]

_BASES: Dict[str, Type[_Step]] = {"normal": Step, "global": GlobalStep, "generator": GeneratorStep}
_STEP_INPUT_MARK = "StepInput"


def step(
    inputs: Union[StepColumns, Callable[..., Any], None] = None,
    outputs: Optional[StepColumns] = None,
    step_type: StepType = "normal",
) -> Any:
    """Makes a step class of the decorated function.

    Args:
        inputs: the columns the step reads, as a list or a dict ``column -> required``; none if omitted.
        outputs: the columns the step writes, likewise.
        step_type: ``"normal"`` (``Step``: batches of rows), ``"global"`` (``GlobalStep``: every row at once) or
            ``"generator"`` (``GeneratorStep``: yields ``(rows, is_last_batch)``, no inputs).

    Returns:
        A decorator giving the class; ``@step`` without arguments is ``@step()``.

    Raises:
        ValueError: an unknown ``step_type``, or a function with more than one parameter annotated ``StepInput``.
    """
    if callable(inputs) and outputs is None and step_type == "normal":
        return step()(inputs)
    if step_type not in _BASES:
        raise ValueError(
            f"Invalid step type {step_type!r} for @step: valid choices are 'normal', 'global' or 'generator'."
        )
    declared_inputs = _columns(inputs)
    declared_outputs = _columns(outputs)

    def decorator(function: Callable[..., Any]) -> Type[_Step]:
        cls = _step_class(function, _BASES[step_type], declared_inputs, declared_outputs)
        # Decorating declares a step as `@register` does: a saved pipeline naming it loads where this module ran.
        REGISTRY.register(cls)
        return cls

    return decorator


def _columns(columns: Optional[StepColumns]) -> StepColumns:
    if columns is None:
        return []
    return dict(columns) if isinstance(columns, dict) else list(columns)


def _step_class(
    function: Callable[..., Any], base: Type[_Step], inputs: StepColumns, outputs: StepColumns
) -> Type[_Step]:
    parameters = inspect.signature(function).parameters
    annotations = {name: resolved_annotation(parameter.annotation, function) for name, parameter in parameters.items()}
    step_inputs = [name for name, annotation in annotations.items() if _is_step_input(annotation)]
    if len(step_inputs) > 1 and base is not GeneratorStep:
        raise ValueError(
            f"Function {function.__name__!r} decorated with @step has more than one parameter annotated StepInput"
            f" ({step_inputs}): annotate only the one that receives the rows (`*inputs: StepInput` for several"
            " predecessors)."
        )
    runtime_parameters = [name for name, annotation in annotations.items() if is_runtime_parameter(annotation)]
    fields = {
        name: Field(default=None if parameters[name].default is inspect.Parameter.empty else parameters[name].default)
        for name in runtime_parameters
    }

    def arguments(self: _Step) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in runtime_parameters}

    if base is GeneratorStep:
        takes_offset = "offset" in parameters

        def process(self: _Step, offset: int = 0) -> Any:
            if takes_offset:
                return function(offset=offset, **arguments(self))
            if offset:
                raise ValueError(
                    f"Step {self.name!r} ({function.__name__}) was asked to start at row {offset}: give the decorated"
                    " function an `offset` parameter to start there."
                )
            return function(**arguments(self))

    else:

        def process(self: _Step, *inputs: List[Dict[str, Any]]) -> Any:  # type: ignore[misc]
            return function(*inputs, **arguments(self))

    namespace: Dict[str, Any] = {
        "__module__": function.__module__,
        "__qualname__": function.__qualname__,
        "__doc__": function.__doc__,
        "__annotations__": {name: annotations[name] for name in runtime_parameters},
        **fields,
        "process": process,
        "inputs": property(lambda self: _columns(inputs)),
        "outputs": property(lambda self: _columns(outputs)),
    }
    return type(function.__name__, (base,), namespace)


def resolved_annotation(annotation: Any, function: Callable[..., Any]) -> Any:
    """``annotation`` as an object: a string annotation (``from __future__ import annotations``) is evaluated in
    the function's module, the way ``typing.get_type_hints`` does; one that cannot be (a name imported only under
    ``TYPE_CHECKING``) stays a string."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, getattr(function, "__globals__", {}))  # noqa: S307 - the function's own code
    except Exception:
        return annotation


def is_runtime_parameter(annotation: Any) -> bool:
    """Whether ``annotation`` is ``RuntimeParameter[T]`` or ``Optional[RuntimeParameter[T]]``."""
    if get_origin(annotation) is Annotated:
        return _RUNTIME_PARAMETER_ANNOTATION in annotation.__metadata__
    if get_origin(annotation) is Union:
        return any(is_runtime_parameter(argument) for argument in get_args(annotation))
    return False


def _is_step_input(annotation: Any) -> bool:
    return get_origin(annotation) is Annotated and _STEP_INPUT_MARK in annotation.__metadata__


__all__ = ["StepType", "step"]
