"""Runtime parameters: step and LLM attributes a user may set when the pipeline runs.

As in distilabel, an attribute annotated ``RuntimeParameter[T]`` can be given in the constructor or later in
``pipeline.run(parameters={"step_name": {"attribute": value, "llm": {"generation_kwargs": {...}}}})``::

    class MyStep(Step):
        threshold: RuntimeParameter[float] = Field(default=0.5, description="Rows below it are dropped.")

A runtime parameter whose type is not ``Optional`` and whose value is still ``None`` when the pipeline is
launched is *required*: validation fails before anything runs.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, TypeVar, Union

from pydantic import BaseModel
from typing_extensions import Annotated, get_args, get_origin

from beam_distil.helpers import did_you_mean

_T = TypeVar("_T")
_RUNTIME_PARAMETER_ANNOTATION = "beam_distil_runtime_parameter"

RuntimeParameter = Annotated[Union[_T, None], _RUNTIME_PARAMETER_ANNOTATION]
"""Marks an attribute as settable at run time. ``None`` means "not set yet"."""


def _field_kind(field: Any) -> Optional[str]:
    """``"required"``/``"optional"`` for a runtime parameter field, ``None`` for an ordinary field.

    ``RuntimeParameter[T]`` is required until it has a value; ``Optional[RuntimeParameter[T]]`` (as in
    distilabel) may stay ``None``. pydantic keeps the marker in ``metadata`` only for the first form; in the
    second it stays inside the outer ``Union``.
    """
    if _RUNTIME_PARAMETER_ANNOTATION in field.metadata:
        return "required"
    for arg in get_args(field.annotation):
        if get_origin(arg) is Annotated and _RUNTIME_PARAMETER_ANNOTATION in getattr(arg, "__metadata__", ()):
            return "optional"
    return None


class RuntimeParametersMixin(BaseModel):
    """Gives a pydantic model distilabel's runtime-parameter protocol (names, info, setting, validation)."""

    @classmethod
    def _runtime_parameter_fields(cls) -> Dict[str, Any]:
        return {name: field for name, field in cls.model_fields.items() if _field_kind(field)}

    def _nested_mixins(self) -> Dict[str, "RuntimeParametersMixin"]:
        return {
            name: getattr(self, name)
            for name in type(self).model_fields
            if isinstance(getattr(self, name, None), RuntimeParametersMixin)
        }

    @property
    def runtime_parameters_names(self) -> Dict[str, Any]:
        """Name -> ``True`` when optional, or a nested dict for a nested model such as ``llm``."""
        names: Dict[str, Any] = {}
        for name in self._runtime_parameter_fields():
            names[name] = not self._is_required(name)
        for name, nested in self._nested_mixins().items():
            names[name] = nested.runtime_parameters_names
        return names

    def _is_required(self, name: str) -> bool:
        return getattr(self, name) is None and _field_kind(type(self).model_fields[name]) == "required"

    def get_runtime_parameters_info(self) -> List[Dict[str, Any]]:
        """One entry per runtime parameter: ``name``, ``optional``, ``description`` (nested: ``runtime_parameters_info``)."""
        info: List[Dict[str, Any]] = []
        for name, field in self._runtime_parameter_fields().items():
            entry: Dict[str, Any] = {"name": name, "optional": not self._is_required(name)}
            if field.description:
                entry["description"] = field.description
            info.append(entry)
        for name, nested in self._nested_mixins().items():
            info.append({"name": name, "runtime_parameters_info": nested.get_runtime_parameters_info()})
        return info

    def missing_runtime_parameters(self, prefix: str = "") -> List[str]:
        """Dotted names of required runtime parameters that still have no value."""
        missing = [f"{prefix}{name}" for name in self._runtime_parameter_fields() if self._is_required(name)]
        for name, nested in self._nested_mixins().items():
            missing.extend(nested.missing_runtime_parameters(prefix=f"{prefix}{name}."))
        return missing

    def unknown_runtime_parameters(self, runtime_parameters: Dict[str, Any], prefix: str = "") -> List[str]:
        """Messages for each name in ``runtime_parameters`` this object does not have, with close names."""
        known = self.runtime_parameters_names
        problems: List[str] = []
        for name, value in runtime_parameters.items():
            if name not in known:
                hint = did_you_mean(name, known, prefix=prefix)
                problems.append(
                    f"unknown runtime parameter {prefix + name!r}.{hint} Known: {sorted(prefix + k for k in known)}"
                )
            elif isinstance(known[name], dict):
                if not isinstance(value, dict):
                    problems.append(f"runtime parameter {prefix + name!r} takes a dict of its own parameters, got {value!r}")
                else:
                    problems.extend(
                        self._nested_mixins()[name].unknown_runtime_parameters(value, prefix=f"{prefix}{name}.")
                    )
        return problems

    def set_runtime_parameters(self, runtime_parameters: Dict[str, Any]) -> None:
        """Sets runtime parameters, recursing into nested models (``{"llm": {"generation_kwargs": {...}}}``).

        Values are validated by pydantic on assignment, so a wrong type fails here with the field's name.
        """
        nested = self._nested_mixins()
        for name, value in runtime_parameters.items():
            if name in nested and isinstance(value, dict):
                nested[name].set_runtime_parameters(value)
            elif name in self._runtime_parameter_fields():
                current = getattr(self, name)
                if isinstance(current, dict) and isinstance(value, dict):
                    # generation_kwargs given at run time extend the ones given in the constructor.
                    value = {**current, **value}
                setattr(self, name, value)
            else:
                raise ValueError(f"{type(self).__name__}: unknown runtime parameter {name!r}")


__all__ = ["RuntimeParameter", "RuntimeParametersMixin"]
