"""A step, task or LLM as a dict with its ``type_info``, and back: what ``Step.dump()``/``Step.from_dict()`` give and
take, and what a saved pipeline's ``steps`` are made of (``beam_distil.pipeline.serialization``).

Example::

    task = TextGeneration(name="gen", llm=OpenAILLM(model="gpt-4o-mini"))
    data = task.dump()
    data["type_info"]           # {"module": "distilabel.steps.tasks.text_generation", "name": "TextGeneration"}
    data["llm"]["type_info"]    # {"module": "distilabel.models.llms.openai", "name": "OpenAILLM"}
    data["runtime_parameters_info"]     # what run(parameters=...) may set, as in the saved pipeline
    copy = TextGeneration.from_dict(data)

Saving, as distilabel's ``_Serializable.dump``: the fields, nested models (the LLM) with their own ``type_info``, and
for a step its ``runtime_parameters_info``. A class that ports a distilabel class is named by distilabel's module
(``beam_distil.steps.distilabel_names``), so that distilabel 1.5.3 loads what beam_distil saves; any other class by
its own module and name. Left out or changed:

* Secrets: every ``SecretStr``/``SecretBytes`` value, at any depth, is left out entirely (no masked value either).
  A loaded model gets the field's default, e.g. ``OpenAILLM.api_key`` is ``None`` and the worker reads
  ``OPENAI_API_KEY`` from its environment. A ``gcp-secret://`` Secret Manager reference is kept: it names where
  the key is rather than holding it.
* Fields marked ``exclude=True`` (the step's ``pipeline``) and private attributes are not saved.
* ``structured_output`` given as a pydantic model class is saved as its JSON schema and comes back as that schema
  (a dict): the LLM is constrained the same way and answers are validated with ``jsonschema`` instead of the model
  class, so an invalid answer's error message is worded differently.

Loading trusts nothing in the dict (it may come from a file from a URL or a colleague): every ``type_info`` is
looked up in the registry (``beam_distil.steps.registry``); a module it names is never imported, a class that is
not registered is refused before any code runs. ``runtime_parameters_info`` is information and is ignored.

A field the class does not have is an error in a pipeline file beam_distil wrote (a typo in a hand-edited file).
distilabel's classes have fields beam_distil's do not (``resources``...), so in a pipeline file
distilabel wrote, and in the dict given to ``Step.from_dict`` (which may be either, since both name distilabel's
classes), those are left out (``drop_unknown_fields=True``) as distilabel's own loader does, with a warning when they
hold a value that would have mattered (anything but distilabel's defaults, ``None``, ``False`` or empty).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterable, List, Optional, Type

from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError

from beam_distil.helpers import did_you_mean
from beam_distil.secrets import is_secret_reference
from beam_distil.steps.distilabel_names import DISTILABEL_MODULES, is_distilabel_module
from beam_distil.steps.registry import HOW_TO_REGISTER, REGISTRY, TypeRegistry

logger = logging.getLogger("beam_distil")

TYPE_INFO_KEY = "type_info"
RUNTIME_PARAMETERS_INFO_KEY = "runtime_parameters_info"
_SECRET_TYPES = (SecretStr, SecretBytes)

# What distilabel 1.5.3 writes for every step and that has no meaning on Beam (Beam sizes the workers; the response
# cache is the tasks' own `use_cache`): left out without a warning when it holds these values.
_DISTILABEL_STEP_DEFAULTS: Dict[str, Any] = {
    "resources": {"replicas": 1, "cpus": None, "gpus": None, "memory": None, "resources": None},
    "use_cache": True,
}


class PipelineSerializationError(ValueError):
    """A pipeline, step or LLM that cannot be saved, or a file/dict that does not describe one that can be loaded."""


# -- saving --------------------------------------------------------------------------------------------------


def type_info_of(obj: Any) -> Dict[str, str]:
    """``{module, name}`` naming ``obj``'s class in a saved file: distilabel's module for a beam_distil class that
    ports a distilabel class, else the class's own module."""
    cls = obj if isinstance(obj, type) else type(obj)
    if cls.__module__.startswith("beam_distil.") and cls.__qualname__ in DISTILABEL_MODULES:
        return {"module": DISTILABEL_MODULES[cls.__qualname__], "name": cls.__qualname__}
    return {"module": cls.__module__, "name": cls.__qualname__}


def _contains_secret(value: Any) -> bool:
    if isinstance(value, _SECRET_TYPES):
        return True
    if isinstance(value, dict):
        return any(_contains_secret(v) for v in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_contains_secret(v) for v in value)
    if isinstance(value, BaseModel):
        return True  # walked field by field by dump_model
    return False


def _dump_value(value: Any) -> Any:
    """A JSON-compatible copy of a value that holds secrets somewhere inside, with the secrets left out."""
    from pydantic_core import to_jsonable_python

    if isinstance(value, BaseModel):
        return dump_model(value)
    if isinstance(value, dict):
        return {str(k): _dump_value(v) for k, v in value.items() if not isinstance(v, _SECRET_TYPES)}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_dump_value(v) for v in value if not isinstance(v, _SECRET_TYPES)]
    return to_jsonable_python(value)


def _is_excluded(cls: type, name: str) -> bool:
    """Whether field ``name`` is ``exclude=True`` where it was declared.

    pydantic forgets ``exclude`` when a subclass inherits a field whose name is also an attribute of another
    base class (``_Step.pipeline`` and ``beam.PTransform.pipeline``), so the declaring class is asked.
    """
    for klass in cls.__mro__:
        if name in klass.__dict__.get("__annotations__", {}):
            field = klass.__dict__.get("__pydantic_fields__", {}).get(name)
            return bool(field is not None and field.exclude)
    return False


def _is_secret_annotation(annotation: Any) -> bool:
    """Whether a field's type is a secret (``SecretStr``, ``Optional[RuntimeParameter[SecretStr]]``...)."""
    from typing_extensions import get_args

    if isinstance(annotation, type) and issubclass(annotation, _SECRET_TYPES):
        return True
    args = get_args(annotation)
    # Only unions/Annotated wrappers: a dict or list *of* secrets is walked value by value instead.
    return bool(args) and _is_union_or_annotated(annotation) and any(_is_secret_annotation(a) for a in args)


def _is_union_or_annotated(annotation: Any) -> bool:
    import types
    from typing import Union

    from typing_extensions import Annotated, get_origin

    return get_origin(annotation) in (Union, types.UnionType, Annotated)


def dump_model(model: BaseModel, extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The fields of ``model`` as JSON-compatible data, nested models with their own ``type_info``, no secrets;
    ``extra`` entries (a step's ``runtime_parameters_info``) come after the fields, ``type_info`` last."""
    data: Dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        if field.exclude or _is_excluded(type(model), name):
            continue
        value = getattr(model, name)
        if isinstance(value, SecretStr) and is_secret_reference(value.get_secret_value()):
            # A Secret Manager reference names where the key is, not the key: it is what lets a saved pipeline
            # (a Flex Template's config) reach its key on the workers.
            data[name] = value.get_secret_value()
            continue
        if isinstance(value, _SECRET_TYPES) or _is_secret_annotation(field.annotation):
            continue  # left out even when unset, so a saved file does not tell whether a key was given
        if _contains_secret(value):
            data[name] = _dump_value(value)
        else:
            # Through pydantic, so that field serializers apply (structured_output -> JSON schema).
            data[name] = model.model_dump(mode="json", include={name}).get(name)
    data.update(extra or {})
    data[TYPE_INFO_KEY] = type_info_of(model)
    return data


# -- loading -------------------------------------------------------------------------------------------------


def where(source: Optional[str], step: Optional[str] = None) -> str:
    """`` (file 'x', step 'y')`` for an error message, or ``""``."""
    parts = []
    if source:
        parts.append(f"file {source!r}")
    if step:
        parts.append(f"step {step!r}")
    return f" ({', '.join(parts)})" if parts else ""


def find_registered(
    type_info: Any,
    what: str,
    kind: str,
    lookup: Callable[[str, str], Any],
    known_names: Callable[[str], List[str]],
    entry_point_errors: Iterable[str],
    source: Optional[str],
    step: Optional[str],
    hint: str = "",
) -> Any:
    """What ``lookup`` finds in the registry for ``type_info``, or an error saying what to do. Nothing named by
    ``type_info`` is imported: the file is untrusted, and importing a module runs its code."""
    if not isinstance(type_info, dict) or not type_info.get("module") or not type_info.get("name"):
        raise PipelineSerializationError(
            f"{what} needs `type_info: {{module: ..., name: ...}}`, got {type_info!r}{where(source, step)}"
        )
    module_name, name = str(type_info["module"]), str(type_info["name"])
    found = lookup(module_name, name)
    if found is not None:
        return found
    if kind == "class" and is_distilabel_module(module_name) and name in DISTILABEL_MODULES:
        raise PipelineSerializationError(
            f"{what}: distilabel's {name} ({module_name}) has no beam_distil counterpart{where(source, step)}."
            f" A file written by distilabel loads here when beam_distil has a class of the same name; replace"
            f" {name} with one of beam_distil's steps, or write it as your own step and {HOW_TO_REGISTER}."
        )
    known = known_names(module_name)
    if known:  # a misspelt name in a module we know: the message it always had, with a hint
        problem = (
            f"module {module_name!r} has no {name!r} that a pipeline file may name{where(source, step)}: {name!r} is"
            f" not registered."
        )
        problem += did_you_mean(name, known)
    else:
        problem = f"type_info {type_info!r} names a {kind} that is not registered{where(source, step)}.{hint}"
    errors = "".join(f" The {error}." for error in entry_point_errors)
    raise PipelineSerializationError(
        f"{what}: {problem} A pipeline file may name only beam_distil's own classes and what installed code"
        f" registers, and nothing it names is imported: if `{module_name}.{name}` is yours,"
        f" {HOW_TO_REGISTER}.{errors}"
    )


def model_class(
    data: Dict[str, Any], source: Optional[str] = None, step: Optional[str] = None, registry: TypeRegistry = REGISTRY
) -> Type[BaseModel]:
    """The registered pydantic model class ``data``'s ``type_info`` names (nothing is imported or built)."""
    cls = find_registered(
        data.get(TYPE_INFO_KEY),
        "A saved object",
        "class",
        registry.model_class,
        lambda module: registry.names_in(module, "class"),
        registry.entry_point_errors,
        source,
        step,
    )
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        raise PipelineSerializationError(
            f"type_info {data.get(TYPE_INFO_KEY)!r} names {cls!r}, which is not a pydantic model{where(source, step)}"
        )
    return cls


def _matters(name: str, value: Any) -> bool:
    """Whether leaving out a field distilabel wrote (and beam_distil's class lacks) could change what runs."""
    if value is None or value is False or value in ("", {}, []):
        return False
    return not (name in _DISTILABEL_STEP_DEFAULTS and _DISTILABEL_STEP_DEFAULTS[name] == value)


def _fields_of(cls: Type[BaseModel], data: Dict[str, Any], source: Optional[str], step: Optional[str]) -> Dict[str, Any]:
    """``data`` without the fields ``cls`` does not have (a file written by distilabel); warns for those that held
    a value that mattered."""
    left_out = {key: value for key, value in data.items() if key not in cls.model_fields}
    meaningful = {key: value for key, value in left_out.items() if _matters(key, value)}
    if meaningful:
        logger.warning(
            "%s%s: beam_distil's %s has no %s, which the data (written for distilabel) sets; left out: %r",
            cls.__name__, where(source, step), cls.__name__, sorted(meaningful), meaningful,
        )
    return {key: value for key, value in data.items() if key not in left_out}


def load_model(
    data: Dict[str, Any],
    source: Optional[str] = None,
    step: Optional[str] = None,
    registry: TypeRegistry = REGISTRY,
    drop_unknown_fields: bool = False,
) -> Any:
    """Rebuilds a pydantic model from ``dump_model`` output (nested ``type_info`` dicts become models too).

    Only classes in the registry are built; anything else is refused before any code runs. ``source`` and
    ``step`` name the file and the step in error messages. ``drop_unknown_fields``: leave out the fields the
    class does not have (see the module docstring) instead of refusing them.
    """
    cls = model_class(data, source, step, registry)
    fields = {key: value for key, value in data.items() if key not in (TYPE_INFO_KEY, RUNTIME_PARAMETERS_INFO_KEY)}
    if drop_unknown_fields:
        fields = _fields_of(cls, fields, source, step)
    kwargs = {key: _load_value(value, source, step, registry, drop_unknown_fields) for key, value in fields.items()}
    switched_on = sorted(name for name in getattr(cls, "runs_foreign_code_when", ()) if kwargs.get(name) is True)
    if switched_on:
        raise PipelineSerializationError(
            f"{cls.__name__}{where(source, step)}: a config may not set {switched_on} to true, which would run code"
            " the model's repository ships on every worker. Load the pipeline, then set it in your own code for a"
            f" repository you trust (e.g. `pipeline.dag.steps[...].llm.{switched_on[0]} = True`)."
        )
    try:
        return cls(**kwargs)
    except ValidationError as error:
        hint = ""
        if drop_unknown_fields and any(problem["type"] == "missing" for problem in error.errors()):
            hint = (
                "\ndistilabel leaves some fields out of the files it writes (LoadDataFromDicts' `data`, for"
                " one): add them to the file."
            )
        raise PipelineSerializationError(
            f"Invalid configuration for {cls.__name__}{where(source, step)}:\n{error}{hint}"
        ) from None
    except TypeError as error:  # an abstract class, or a constructor that takes other arguments
        raise PipelineSerializationError(f"Cannot create {cls.__name__}{where(source, step)}: {error}") from None


def _load_value(
    value: Any, source: Optional[str], step: Optional[str], registry: TypeRegistry, drop_unknown_fields: bool
) -> Any:
    if isinstance(value, dict) and isinstance(value.get(TYPE_INFO_KEY), dict):
        return load_model(value, source, step, registry, drop_unknown_fields)
    if isinstance(value, list):
        return [_load_value(item, source, step, registry, drop_unknown_fields) for item in value]
    return value


__all__ = [
    "PipelineSerializationError",
    "RUNTIME_PARAMETERS_INFO_KEY",
    "TYPE_INFO_KEY",
    "dump_model",
    "find_registered",
    "load_model",
    "model_class",
    "type_info_of",
    "where",
]
