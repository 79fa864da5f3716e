"""Runtime parameters: step and LLM attributes a user may set when the pipeline runs.

As in distilabel, an attribute annotated ``RuntimeParameter[T]`` can be given in the constructor or later in
``pipeline.run(parameters={"step_name": {"attribute": value, "llm": {"generation_kwargs": {...}}}})``::

    class MyStep(Step):
        threshold: RuntimeParameter[float] = Field(default=0.5, description="Rows below it are dropped.")
        table: RuntimeParameter[str] = Field(default=None, description="Where to write.")   # required
        dataset: RuntimeParameter[str]                                                      # required too

Which ones are required is distilabel's rule: a ``RuntimeParameter[T]`` whose default is ``None`` (or that has
none) is required, and so reported (``optional: false``) whatever value it holds; ``Optional[RuntimeParameter[T]]``
and one with another default are optional. A required one may be left out of the constructor and given in
``run(parameters=...)``; one still ``None`` when the pipeline is launched fails validation before anything runs.

A field holding another object with runtime parameters (a task's ``llm``), or a list of them, nests its
parameters under its name: ``{"llm": {...}}``, and for a list by position, ``{"llms": {"0": {...}, "1": {...}}}``.
Parameters are reported in the order of the fields, nested ones in place, as distilabel reports them.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, TypeVar, Union

from pydantic import BaseModel, model_validator
from pydantic_core import PydanticUndefined
from typing_extensions import Annotated, get_args, get_origin

from beam_distil.helpers import did_you_mean

logger = logging.getLogger("beam_distil")

_T = TypeVar("_T")
_RUNTIME_PARAMETER_ANNOTATION = "beam_distil_runtime_parameter"

RuntimeParameter = Annotated[Union[_T, None], _RUNTIME_PARAMETER_ANNOTATION]
"""Marks an attribute as settable at run time. ``None`` means "not set yet"."""


def _field_kind(field: Any) -> Optional[str]:
    """``"required"``/``"optional"`` for a runtime parameter field, ``None`` for an ordinary field.

    ``RuntimeParameter[T]`` is required unless it has a default other than ``None``; ``Optional[RuntimeParameter[T]]``
    (as in distilabel) may stay ``None``. pydantic keeps the marker in ``metadata`` only for the first form; in the
    second it stays inside the outer ``Union``.
    """
    if _RUNTIME_PARAMETER_ANNOTATION in field.metadata:
        has_default = field.default_factory is not None or (
            field.default is not None and field.default is not PydanticUndefined
        )
        return "optional" if has_default else "required"
    for arg in get_args(field.annotation):
        if get_origin(arg) is Annotated and _RUNTIME_PARAMETER_ANNOTATION in getattr(arg, "__metadata__", ()):
            return "optional"
    return None


def _mixins_in(value: Any) -> Optional[List["RuntimeParametersMixin"]]:
    """The items of a non-empty list of objects with runtime parameters (``List[LLM]``), else ``None``."""
    if isinstance(value, list) and value and all(isinstance(item, RuntimeParametersMixin) for item in value):
        return value
    return None


class RuntimeParametersMixin(BaseModel):
    """Gives a pydantic model distilabel's runtime-parameter protocol (names, info, setting, validation)."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        # A class defined inside a function keeps that function's local variables, for pydantic to resolve forward
        # references later. Beam pickles such a class by value, locals included: an unpicklable local (a lock, a
        # client, pytest's captured output) would stop the launch, and a secret would travel to the workers. A
        # complete model needs them no more.
        if cls.__pydantic_complete__:
            cls.__pydantic_parent_namespace__ = None

    @model_validator(mode="before")
    @classmethod
    def _runtime_parameters_may_be_left_out(cls, data: Any) -> Any:
        # A runtime parameter declared without a default (`dataset: RuntimeParameter[str]`) is given at run time:
        # the constructor may leave it out, and it is `None` until then. (distilabel's `Field(default=None)` inside
        # the alias would do the same, but pydantic warns about it for `Optional[RuntimeParameter[T]]`.)
        if isinstance(data, dict):
            unset = [
                name
                for name, field in cls.model_fields.items()
                if field.is_required() and _field_kind(field) and name not in data and field.alias not in data
            ]
            if unset:
                data = {**data, **{name: None for name in unset}}
        return data

    @classmethod
    def _runtime_parameter_fields(cls) -> Dict[str, Any]:
        return {name: field for name, field in cls.model_fields.items() if _field_kind(field)}

    def _nested(self) -> Dict[str, Union["RuntimeParametersMixin", List["RuntimeParametersMixin"]]]:
        """Fields holding objects with runtime parameters of their own (``llm``), or lists of them, in field order."""
        nested: Dict[str, Union[RuntimeParametersMixin, List[RuntimeParametersMixin]]] = {}
        for name, field in type(self).model_fields.items():
            if _field_kind(field):
                continue
            value = getattr(self, name, None)
            if isinstance(value, RuntimeParametersMixin):
                nested[name] = value
            elif _mixins_in(value) is not None:
                nested[name] = value
        return nested

    @property
    def runtime_parameters_names(self) -> Dict[str, Any]:
        """Name -> ``True`` when optional (``False`` when required), or a nested dict for a nested model such as
        ``llm`` (for a list of them, keyed by position: ``{"0": {...}}``), in field order."""
        names: Dict[str, Any] = {}
        nested = self._nested()
        for name, field in type(self).model_fields.items():
            if _field_kind(field):
                names[name] = _field_kind(field) == "optional"
            elif isinstance(nested.get(name), RuntimeParametersMixin):
                names[name] = nested[name].runtime_parameters_names  # type: ignore[union-attr]
            elif name in nested:
                names[name] = {str(i): item.runtime_parameters_names for i, item in enumerate(nested[name])}  # type: ignore[arg-type]
        return names

    def get_runtime_parameters_info(self) -> List[Dict[str, Any]]:
        """One entry per runtime parameter, in field order: ``name``, ``optional``, ``description``; a nested
        model gives ``name`` and its own ``runtime_parameters_info`` (a list of them, a dict by position)."""
        info: List[Dict[str, Any]] = []
        nested = self._nested()
        for name, field in type(self).model_fields.items():
            kind = _field_kind(field)
            if kind:
                entry: Dict[str, Any] = {"name": name, "optional": kind == "optional"}
                if field.description:
                    entry["description"] = field.description
                info.append(entry)
            elif isinstance(nested.get(name), RuntimeParametersMixin):
                info.append({"name": name, "runtime_parameters_info": nested[name].get_runtime_parameters_info()})  # type: ignore[union-attr]
            elif name in nested:
                by_position = {str(i): item.get_runtime_parameters_info() for i, item in enumerate(nested[name])}  # type: ignore[arg-type]
                info.append({"name": name, "runtime_parameters_info": by_position})
        return info

    def missing_runtime_parameters(self, prefix: str = "") -> List[str]:
        """Dotted names of required runtime parameters that still have no value (``llms.0.model`` in a list)."""
        missing: List[str] = []
        for name, field in type(self).model_fields.items():
            if _field_kind(field) == "required" and getattr(self, name) is None:
                missing.append(f"{prefix}{name}")
        for name, nested in self._nested().items():
            if isinstance(nested, RuntimeParametersMixin):
                missing.extend(nested.missing_runtime_parameters(prefix=f"{prefix}{name}."))
            else:
                for index, item in enumerate(nested):
                    missing.extend(item.missing_runtime_parameters(prefix=f"{prefix}{name}.{index}."))
        return missing

    def unknown_runtime_parameters(self, runtime_parameters: Dict[str, Any], prefix: str = "") -> List[str]:
        """Messages for each name in ``runtime_parameters`` this object does not have, with close names."""
        known = self.runtime_parameters_names
        nested = self._nested()
        problems: List[str] = []
        for name, value in runtime_parameters.items():
            if name not in known:
                hint = did_you_mean(name, known, prefix=prefix)
                problems.append(
                    f"unknown runtime parameter {prefix + name!r}.{hint} Known: {sorted(prefix + k for k in known)}"
                )
            elif name in nested and not isinstance(value, dict):
                problems.append(f"runtime parameter {prefix + name!r} takes a dict of its own parameters, got {value!r}")
            elif isinstance(nested.get(name), RuntimeParametersMixin):
                problems.extend(nested[name].unknown_runtime_parameters(value, prefix=f"{prefix}{name}."))  # type: ignore[union-attr]
            elif name in nested:
                items = nested[name]
                for position, item_parameters in value.items():
                    index = int(position) if str(position).isdigit() else -1
                    if not 0 <= index < len(items):  # type: ignore[arg-type]
                        problems.append(
                            f"runtime parameter {prefix + name!r} is a list of {len(items)}: its parameters are"  # type: ignore[arg-type]
                            f" keyed by position '0' to '{len(items) - 1}', got {position!r}"  # type: ignore[arg-type]
                        )
                    elif not isinstance(item_parameters, dict):
                        problems.append(
                            f"runtime parameter {prefix}{name}.{position} takes a dict of its own parameters,"
                            f" got {item_parameters!r}"
                        )
                    else:
                        problems.extend(
                            items[index].unknown_runtime_parameters(item_parameters, prefix=f"{prefix}{name}.{position}.")  # type: ignore[index]
                        )
        return problems

    def set_runtime_parameters(self, runtime_parameters: Dict[str, Any]) -> None:
        """Sets runtime parameters, recursing into nested models (``{"llm": {"generation_kwargs": {...}}}``) and
        lists of them (``{"llms": {"0": {...}}}``).

        Values are validated by pydantic on assignment, so a wrong type fails here with the field's name. A name
        the object does not have is skipped with a warning, as in distilabel (``Pipeline.run`` refuses it before).
        """
        nested = self._nested()
        for name, value in runtime_parameters.items():
            if isinstance(nested.get(name), RuntimeParametersMixin) and isinstance(value, dict):
                nested[name].set_runtime_parameters(value)  # type: ignore[union-attr]
            elif name in nested and isinstance(value, dict):
                for index, item in enumerate(nested[name]):  # type: ignore[arg-type]
                    # By position: "0" from the command line or JSON, 0 from YAML.
                    item.set_runtime_parameters(value.get(str(index), value.get(index, {})))
            elif name in self._runtime_parameter_fields():
                current = getattr(self, name)
                if isinstance(current, dict) and isinstance(value, dict):
                    # generation_kwargs given at run time extend the ones given in the constructor.
                    value = {**current, **value}
                setattr(self, name, value)
            else:
                # distilabel's mixin skips names it does not know. In a pipeline, run() has already refused them
                # (`unknown_runtime_parameters`): only a direct call gets here.
                logger.warning(
                    "%s: unknown runtime parameter %r ignored.%s",
                    type(self).__name__,
                    name,
                    did_you_mean(name, self.runtime_parameters_names),
                )


__all__ = ["RuntimeParameter", "RuntimeParametersMixin"]
