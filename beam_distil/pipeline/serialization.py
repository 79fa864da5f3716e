"""Saving a ``Pipeline`` as YAML/JSON and loading it back, in distilabel's ``pipeline.yaml`` layout.

Example::

    pipeline.save("pipeline.yaml")                       # or pipeline.dump() -> dict
    loaded = Pipeline.from_file("gs://bucket/pipeline.yaml")
    loaded.run(parameters={"gen_a": {"llm": {"generation_kwargs": {"temperature": 0.7}}}})

The layout::

    beam_distil:
      version: 0.1.0
    pipeline:
      name: pipe-name
      description: My first pipe
      steps:
      - step:
          name: gen_a
          input_mappings: {}
          ...
          llm:
            model: model-a
            base_url: http://127.0.0.1:8000/v1
            generation_kwargs: {}
            ...
            type_info: {module: beam_distil.models.openai, name: OpenAILLM}
          type_info: {module: beam_distil.steps.tasks.text_generation, name: TextGeneration}
        name: gen_a
        runtime_parameters_info:
        - {name: input_batch_size, optional: true, description: ...}
        - name: llm
          runtime_parameters_info: [...]
      connections:
      - {from: load_data_from_dicts_0, to: [gen_a, gen_b]}
      routing_batch_functions:
      - step: load_data_from_dicts_0
        routing_batch_function:
          type_info: {module: beam_distil.pipeline.routing, name: sample_n_steps}
          kwargs: {n: 2, seed: 0}
          description: Sample 2 steps from the list of downstream steps.
          seed: 0
          downstream: [gen_a, gen_b]
      type_info: {module: beam_distil.pipeline.pipeline, name: Pipeline}

What is left out or changed:

* Secrets: every ``SecretStr``/``SecretBytes`` value, at any depth, is left out entirely (no masked value
  either). A loaded step gets the field's default, e.g. ``OpenAILLM.api_key`` is ``None`` and the worker reads
  ``OPENAI_API_KEY`` from its environment. A ``gcp-secret://`` Secret Manager reference is kept: it names
  where the key is rather than holding it.
* Fields marked ``exclude=True`` (the step's ``pipeline``) and private attributes are not saved.
* ``structured_output`` given as a pydantic model class is saved as its JSON schema and comes back as that
  schema (a dict): the LLM is constrained the same way and answers are validated with ``jsonschema`` instead of
  the model class, so an invalid answer's error message is worded differently.
* A routing function made by a factory (``sample_n_steps``) is saved as the factory and its arguments. A user's
  plain function is saved by ``module`` + ``qualname`` and must be registered where the pipeline is loaded: a
  function defined inside another function, a lambda, or one in ``__main__`` cannot be saved.

Loading trusts nothing in the file (it may come from a URL or a colleague):

* Every ``type_info`` is looked up in ``beam_distil.pipeline.registry``: beam_distil's own steps, tasks and LLMs,
  and the classes and routing functions your code registers (``@register``, or an entry point of the
  ``beam_distil.registry`` group). A module named in the file is never imported, and the only callables a file
  may call with arguments of its choosing are the project's routing factories (``sample_n_steps``).
* YAML is read with the safe loader, at most ``MAX_CONFIG_BYTES``, and a file with anchors is refused when its
  aliases would expand to more than ``MAX_ALIAS_EXPANDED_NODES`` nodes (a "billion laughs" alias bomb: a few KB
  that would take minutes and gigabytes to load). ``save`` never writes anchors or aliases.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import re
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Type

from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError

import beam_distil.pipeline.registry as registry
from beam_distil.helpers import did_you_mean, is_url, to_text
from beam_distil.secrets import is_secret_reference

if TYPE_CHECKING:
    from beam_distil.pipeline.pipeline import Pipeline
    from beam_distil.pipeline.routing import RoutingBatchFunction

VERSION_KEY = "beam_distil"
TYPE_INFO_KEY = "type_info"
_SECRET_TYPES = (SecretStr, SecretBytes)

# A saved pipeline of 100,000 LoadDataFromDicts rows is ~11 MB; far above that is a mistake or an attack.
MAX_CONFIG_BYTES = 256 * 1024 * 1024
# What the aliases of a YAML file may add once expanded. A legitimate hand-written file reuses a few small
# blocks; the 3.6 KB "billion laughs" file expands to 10**9 nodes and took 78 s and 1.8 GB to load.
MAX_ALIAS_EXPANDED_NODES = 1_000_000
# Where a YAML anchor (``&name``) can start: after no word character (``Q&A`` and ``R&D`` are text, not
# anchors). The pattern starts with a literal ``&``: a large file without anchors is searched in milliseconds.
_YAML_ANCHOR = re.compile(r"&(?<!\w&)[\w-]")
# How deeply a file may nest lists and mappings. libyaml's C loader recurses once per level with no limit of its
# own, so 100,000 nested `[` (200 KB) crash the process; a real pipeline nests a few dozen levels at most.
MAX_NESTING_DEPTH = 500
_NON_BRACKETS = re.compile(r"[^\[\]{}]")
# Block YAML nests by "- - - x" on one line, or by indentation.
_DEEP_BLOCK = re.compile(r"(?:-[ \t]+){%d}|\n[ \t]{%d}" % (MAX_NESTING_DEPTH, 2 * MAX_NESTING_DEPTH))


class PipelineSerializationError(ValueError):
    """A pipeline that cannot be saved, or a file/dict that does not describe a loadable pipeline."""


# -- saving --------------------------------------------------------------------------------------------------


def _type_info(obj: Any) -> Dict[str, str]:
    cls = obj if isinstance(obj, type) else type(obj)
    return {"module": cls.__module__, "name": cls.__qualname__}


def _contains_secret(value: Any) -> bool:
    if isinstance(value, _SECRET_TYPES):
        return True
    if isinstance(value, dict):
        return any(_contains_secret(v) for v in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_contains_secret(v) for v in value)
    if isinstance(value, BaseModel):
        return True  # walked field by field by _dump_model
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


def dump_model(model: BaseModel) -> Dict[str, Any]:
    """The fields of ``model`` as JSON-compatible data, nested models with their own ``type_info``, no secrets."""
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
    data[TYPE_INFO_KEY] = _type_info(model)
    return data


def _routing_to_dict(routing: "RoutingBatchFunction", upstream: str) -> Dict[str, Any]:
    data: Dict[str, Any] = {}
    if routing.factory is not None:
        factory_name = routing.factory["name"]
        data[TYPE_INFO_KEY] = {"module": "beam_distil.pipeline.routing", "name": factory_name}
        data["kwargs"] = dict(routing.factory.get("kwargs", {}))
    else:
        function = routing.fn
        module = getattr(function, "__module__", None)
        qualname = getattr(function, "__qualname__", None)
        problem = None
        if not module or not qualname:
            problem = "it has no module or qualified name"
        elif "<locals>" in qualname or "<lambda>" in qualname:
            problem = f"{qualname!r} is defined inside a function or is a lambda"
        elif module == "__main__":
            problem = "it is defined in `__main__`, which another process cannot import"
        elif _resolve_routing_function(module, qualname) is not function:
            problem = f"`{module}.{qualname}` does not import back to the same function"
        if problem:
            raise PipelineSerializationError(
                f"Cannot save the routing function {routing.name!r} of step {upstream!r}: {problem}."
                " Define it at the top level of an importable module (or use a factory such as sample_n_steps)."
            )
        data[TYPE_INFO_KEY] = {"module": module, "name": qualname}
        data["takes_rng"] = bool(routing._takes_rng)
    data["description"] = routing.description
    data["seed"] = routing.seed
    data["downstream"] = list(routing.downstream)
    return data


def _resolve_routing_function(module: str, qualname: str) -> Any:
    """The plain function at ``module.qualname`` (unwrapping a ``@routing_batch_function``), or ``None``."""
    from beam_distil.pipeline.routing import RoutingBatchFunction

    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return obj.fn if isinstance(obj, RoutingBatchFunction) else obj


def _package_version() -> str:
    import beam_distil

    return getattr(beam_distil, "__version__", "unknown")


def pipeline_to_dict(pipeline: "Pipeline") -> Dict[str, Any]:
    """``pipeline`` as a dict of JSON-compatible data (see the module docstring for the layout)."""
    steps: List[Dict[str, Any]] = []
    for name, step in pipeline.dag.steps.items():
        steps.append(
            {"step": dump_model(step), "name": name, "runtime_parameters_info": step.get_runtime_parameters_info()}
        )
    connections = [
        {"from": name, "to": pipeline.dag.successors(name)}
        for name in pipeline.dag.steps
        if pipeline.dag.successors(name)
    ]
    routing = [
        {"step": upstream, "routing_batch_function": _routing_to_dict(function, upstream)}
        for upstream, function in pipeline.routing.items()
    ]
    return {
        VERSION_KEY: {"version": _package_version()},
        "pipeline": {
            "name": pipeline.name,
            "description": pipeline.description,
            "steps": steps,
            "connections": connections,
            "routing_batch_functions": routing,
            TYPE_INFO_KEY: _type_info(pipeline),
        },
    }


def format_of(path: str) -> str:
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json":
        return "json"
    raise PipelineSerializationError(
        f"Cannot tell the format of {str(path)!r} from its suffix: use .yaml/.yml or .json (or pass format=)."
    )


def save_pipeline(pipeline: "Pipeline", path: Any, format: Optional[str] = None) -> None:
    """Writes ``pipeline`` to ``path`` (local, or any Beam ``FileSystems`` path such as ``gs://``)."""
    path = os.fspath(path)
    text = to_text(pipeline_to_dict(pipeline), format or format_of(path))
    if is_url(path):
        from apache_beam.io.filesystems import CompressionTypes, FileSystems

        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            handle.write(text.encode("utf-8"))
        return
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


# -- loading -------------------------------------------------------------------------------------------------


def _where(source: Optional[str], step: Optional[str] = None) -> str:
    parts = []
    if source:
        parts.append(f"file {source!r}")
    if step:
        parts.append(f"step {step!r}")
    return f" ({', '.join(parts)})" if parts else ""


def _registered(
    type_info: Any,
    what: str,
    kind: str,
    lookup: Callable[[str, str], Any],
    source: Optional[str],
    step: Optional[str],
    hint: str = "",
) -> Any:
    """What ``lookup`` finds in the registry for ``type_info``. Nothing named by ``type_info`` is imported: the
    file is untrusted, and importing a module runs its code."""
    if not isinstance(type_info, dict) or not type_info.get("module") or not type_info.get("name"):
        raise PipelineSerializationError(
            f"{what} needs `type_info: {{module: ..., name: ...}}`, got {type_info!r}{_where(source, step)}"
        )
    module_name, name = str(type_info["module"]), str(type_info["name"])
    found = lookup(module_name, name)
    if found is not None:
        return found
    known = registry.REGISTRY.names_in(module_name, kind)
    if known:  # a misspelt name in a module we know: the message it always had, with a hint
        problem = f"module {module_name!r} has no {name!r} that a pipeline file may name{_where(source, step)}."
        problem += did_you_mean(name, known)
    else:
        problem = f"type_info {type_info!r} names a {kind} that is not registered{_where(source, step)}.{hint}"
    errors = "".join(f" The {error}." for error in registry.REGISTRY.entry_point_errors)
    raise PipelineSerializationError(
        f"{what}: {problem} A pipeline file may name only beam_distil's own classes and what installed code"
        f" registers, and nothing it names is imported: if `{module_name}.{name}` is yours,"
        f" {registry.HOW_TO_REGISTER}.{errors}"
    )


def _model_class(data: Dict[str, Any], source: Optional[str], step: Optional[str]) -> Type[BaseModel]:
    """The registered pydantic model class ``data``'s ``type_info`` names."""
    cls = _registered(
        data.get(TYPE_INFO_KEY), "A saved object", "class", registry.REGISTRY.model_class, source, step
    )
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        raise PipelineSerializationError(
            f"type_info {data.get(TYPE_INFO_KEY)!r} names {cls!r}, which is not a pydantic model{_where(source, step)}"
        )
    return cls


def load_model(data: Dict[str, Any], source: Optional[str] = None, step: Optional[str] = None) -> Any:
    """Rebuilds a pydantic model from ``dump_model`` output (nested ``type_info`` dicts become models too).

    Only classes in ``beam_distil.pipeline.registry`` are built; anything else is refused before any code runs.
    """
    cls = _model_class(data, source, step)
    kwargs = {key: _load_value(value, source, step) for key, value in data.items() if key != TYPE_INFO_KEY}
    switched_on = sorted(name for name in getattr(cls, "runs_foreign_code_when", ()) if kwargs.get(name) is True)
    if switched_on:
        raise PipelineSerializationError(
            f"{cls.__name__}{_where(source, step)}: a config may not set {switched_on} to true, which would run code"
            " the model's repository ships on every worker. Load the pipeline, then set it in your own code for a"
            f" repository you trust (e.g. `pipeline.dag.steps[...].llm.{switched_on[0]} = True`)."
        )
    try:
        return cls(**kwargs)
    except ValidationError as error:
        raise PipelineSerializationError(
            f"Invalid configuration for {cls.__name__}{_where(source, step)}:\n{error}"
        ) from None
    except TypeError as error:  # an abstract class, or a constructor that takes other arguments
        raise PipelineSerializationError(f"Cannot create {cls.__name__}{_where(source, step)}: {error}") from None


def _load_value(value: Any, source: Optional[str], step: Optional[str]) -> Any:
    if isinstance(value, dict) and isinstance(value.get(TYPE_INFO_KEY), dict):
        return load_model(value, source, step)
    if isinstance(value, list):
        return [_load_value(item, source, step) for item in value]
    return value


def _routing_from_dict(data: Any, upstream: str, source: Optional[str]) -> "RoutingBatchFunction":
    from beam_distil.pipeline.routing import RoutingBatchFunction

    if not isinstance(data, dict):
        raise PipelineSerializationError(
            f"routing_batch_function must be a mapping, got {data!r}{_where(source, upstream)}"
        )
    description = data.get("description")
    seed = data.get("seed", 0)
    if "kwargs" in data:
        # Called with arguments from the file: only the project's own factories, checked before the call.
        factory = _registered(
            data.get(TYPE_INFO_KEY),
            "Routing function",
            "routing factory",
            registry.REGISTRY.routing_factory,
            source,
            upstream,
            hint=" Only beam_distil's routing factories (sample_n_steps) are called with `kwargs`.",
        )
        try:
            routing = factory(**(data.get("kwargs") or {}))
        except (TypeError, ValueError) as error:
            raise PipelineSerializationError(
                f"Cannot make routing function {data[TYPE_INFO_KEY]['name']!r}: {error}{_where(source, upstream)}"
            ) from None
        if not isinstance(routing, RoutingBatchFunction):
            raise PipelineSerializationError(
                f"{data[TYPE_INFO_KEY]!r} did not make a RoutingBatchFunction{_where(source, upstream)}"
            )
        if description is not None:
            routing.description = description
    else:
        target = _registered(
            data.get(TYPE_INFO_KEY),
            "Routing function",
            "routing function",
            registry.REGISTRY.routing_function,
            source,
            upstream,
        )
        if isinstance(target, RoutingBatchFunction):  # a function decorated with @routing_batch_function
            function, takes_rng = target.fn, target._takes_rng
        elif callable(target):
            function, takes_rng = target, bool(data.get("takes_rng", False))
        else:
            raise PipelineSerializationError(
                f"Routing function {data[TYPE_INFO_KEY]!r} is not callable{_where(source, upstream)}"
            )
        routing = RoutingBatchFunction(function, description=description, takes_rng=takes_rng, seed=seed)
    return routing


def _require(mapping: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise PipelineSerializationError(f"Missing `{key}`{where}")
    value = mapping[key]
    if not isinstance(value, kind):
        raise PipelineSerializationError(f"`{key}` must be a {kind.__name__}, got {value!r}{where}")
    return value


def pipeline_from_dict(data: Any, pipeline_cls: Type["Pipeline"], source: Optional[str] = None) -> "Pipeline":
    """Rebuilds a ``pipeline_cls`` from ``pipeline_to_dict`` output. ``source`` names the file in error messages."""
    where = _where(source)
    if not isinstance(data, dict) or not isinstance(data.get("pipeline"), dict):
        raise PipelineSerializationError(f"A saved pipeline is a mapping with a `pipeline` section{where}")
    section = data["pipeline"]
    name = _require(section, "name", str, where)
    steps = _require(section, "steps", list, where)
    connections = section.get("connections") or []
    routings = section.get("routing_batch_functions") or []

    pipeline = pipeline_cls(name, description=section.get("description"))
    from beam_distil.steps.base import _Step

    with pipeline:
        for index, entry in enumerate(steps):
            step_data = _require(entry, "step", dict, f"{where} in steps[{index}]")
            step_name = entry.get("name") or step_data.get("name")
            step_data = {**step_data, "name": step_name} if step_name else step_data
            where_step = step_name or f"steps[{index}]"
            cls = _model_class(step_data, source, where_step)
            if not issubclass(cls, _Step):  # refused before it is built: no constructor runs for a non-step
                raise PipelineSerializationError(f"{cls.__name__} is not a step{_where(source, step_name)}")
            load_model(step_data, source, where_step)
    for connection in connections:
        from_name = _require(connection, "from", str, f"{where} in connections")
        targets = connection.get("to") or []
        if not isinstance(targets, list):
            raise PipelineSerializationError(f"`to` of step {from_name!r} must be a list{where}")
        for to_name in targets:
            try:
                pipeline.add_edge(from_name, to_name)
            except ValueError as error:
                raise PipelineSerializationError(f"Connection {from_name!r} -> {to_name!r}: {error}{where}") from None
    for entry in routings:
        upstream = _require(entry, "step", str, f"{where} in routing_batch_functions")
        if upstream not in pipeline.dag.steps:
            raise PipelineSerializationError(f"Routing names step {upstream!r}, which is not in the pipeline{where}")
        routing = _routing_from_dict(entry.get("routing_batch_function"), upstream, source)
        downstream = entry["routing_batch_function"].get("downstream") or pipeline.dag.successors(upstream)
        routing.upstream = pipeline.dag.steps[upstream]
        pipeline.set_routing(upstream, list(downstream), routing)
    return pipeline


def _refuse_oversized(size: int, source: Optional[str]) -> None:
    if size > MAX_CONFIG_BYTES:
        raise PipelineSerializationError(
            f"Pipeline file {source or 'pipeline'!r} is larger than the limit of {MAX_CONFIG_BYTES:,} bytes"
            " (beam_distil.pipeline.serialization.MAX_CONFIG_BYTES). A config describes the pipeline: read large"
            " data from files with LoadDataFromFileSystem or LoadDataFromHub rather than inlining it."
        )


def _utf8_size(text: str) -> int:
    # Every character is 1 to 4 bytes: encode only when that range straddles the limit.
    if len(text) > MAX_CONFIG_BYTES or len(text) * 4 <= MAX_CONFIG_BYTES:
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def _refuse_alias_bombs(text: str, loader: Any, source: Optional[str]) -> None:
    """Refuses YAML whose aliases would expand to more than ``MAX_ALIAS_EXPANDED_NODES`` nodes, or that holds a
    node containing itself, before it is loaded.

    The YAML loader shares one object between an anchor and its aliases (except merge keys, ``<<: *a``, which it
    copies), but everything after it (the models' validation, ``dump``, pickling for Beam) copies, so a few KB of
    nested aliases become gigabytes. The event stream is walked once, each alias counted at the expanded size of
    its anchor's node, and the walk stops at the limit: a bomb is refused in milliseconds.
    """
    import yaml

    sizes: Dict[str, int] = {}  # anchor -> expanded node count of the node it names
    open_collections: List[List[Any]] = []  # [anchor, expanded node count so far] of each unclosed collection
    added_by_aliases = 0
    where = source or "pipeline"
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            open_collections.append([event.anchor, 1])
            continue
        if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            anchor, size = open_collections.pop()
            if anchor is not None:
                sizes[anchor] = size
        elif isinstance(event, yaml.ScalarEvent):
            size = 1
            if event.anchor is not None:
                sizes[event.anchor] = size
        elif isinstance(event, yaml.AliasEvent):
            if any(anchor == event.anchor for anchor, _ in open_collections):
                raise PipelineSerializationError(
                    f"YAML in {where!r}: alias *{event.anchor} is inside the node &{event.anchor} it names, a"
                    " structure that contains itself, which a pipeline cannot hold; write the data out in full."
                )
            size = sizes.get(event.anchor, 0)  # an undefined alias is reported by the loader
            added_by_aliases += size
            if added_by_aliases > MAX_ALIAS_EXPANDED_NODES:
                raise PipelineSerializationError(
                    f"YAML in {where!r} looks like an alias bomb (\"billion laughs\"): its aliases (*name) expand"
                    f" to more than {MAX_ALIAS_EXPANDED_NODES:,} nodes"
                    " (beam_distil.pipeline.serialization.MAX_ALIAS_EXPANDED_NODES), so it was not loaded. Write"
                    " repeated data out in full, without anchors (&name) and aliases; Pipeline.save never writes them."
                )
        else:
            continue
        if open_collections:
            open_collections[-1][1] += size


def parse_text(text: str, format: str, source: Optional[str] = None) -> Any:
    """Parses YAML or JSON text, naming ``source`` in the error; refuses oversized text and YAML alias bombs."""
    _refuse_oversized(_utf8_size(text), source)
    _refuse_deep_nesting(text, format, source)
    if format == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise PipelineSerializationError(
                f"Malformed JSON in {source or 'pipeline'!r}: {error.msg} at line {error.lineno}, column {error.colno}"
            ) from None
        except RecursionError:
            raise _too_deep(source) from None
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        if _YAML_ANCHOR.search(text):  # no anchor, no alias: nothing to expand
            _refuse_alias_bombs(text, loader, source)
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as error:
        raise PipelineSerializationError(f"Malformed YAML in {source or 'pipeline'!r}: {error}") from None
    except RecursionError:
        raise _too_deep(source) from None


def _refuse_deep_nesting(text: str, format: str, source: Optional[str]) -> None:
    """Refuses text nesting deeper than ``MAX_NESTING_DEPTH`` before a parser recurses into it. Brackets in
    quoted strings count too: a rough but safe bound, far above what a pipeline needs."""
    brackets = _NON_BRACKETS.sub("", text)
    if len(brackets) > MAX_NESTING_DEPTH and max(
        itertools.accumulate(1 if bracket in "[{" else -1 for bracket in brackets)
    ) > MAX_NESTING_DEPTH:
        raise _too_deep(source)
    if format == "yaml" and _DEEP_BLOCK.search(text):
        raise _too_deep(source)


def _too_deep(source: Optional[str]) -> "PipelineSerializationError":
    return PipelineSerializationError(
        f"{source or 'The pipeline'!r} nests lists or mappings more than {MAX_NESTING_DEPTH} levels deep"
        " (beam_distil.pipeline.serialization.MAX_NESTING_DEPTH); a pipeline file never needs that many."
    )


def _read_limited(handle: Any) -> Any:
    """What ``handle`` holds (text or bytes), read in chunks up to just past ``MAX_CONFIG_BYTES``: one
    ``read(limit)`` would allocate the whole limit up front, and ``read()`` would read a file of any size."""
    chunks = []
    total = 0
    while total <= MAX_CONFIG_BYTES:
        chunk = handle.read(1024 * 1024)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return chunks[0][:0].join(chunks) if chunks else handle.read(0)


def read_text(path: str) -> str:
    """The text at ``path``: a local file, or any Beam ``FileSystems`` path (``gs://...``). A file larger than
    ``MAX_CONFIG_BYTES`` is refused without reading it all."""
    if is_url(path):
        from apache_beam.io.filesystems import CompressionTypes, FileSystems

        try:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                raw = _read_limited(handle)
            _refuse_oversized(len(raw), path)
            return raw.decode("utf-8")
        except PipelineSerializationError:
            raise
        except Exception as error:  # Beam wraps backend errors in BeamIOError
            raise FileNotFoundError(f"Cannot read pipeline file {path!r}: {error}") from error
    with open(path, encoding="utf-8") as handle:
        text = _read_limited(handle)
    _refuse_oversized(len(text), path)  # characters: more of them than the limit is more bytes too
    return text


def load_pipeline(path: Any, pipeline_cls: Type["Pipeline"], format: Optional[str] = None) -> "Pipeline":
    """Reads a ``pipeline_cls`` saved by ``save_pipeline`` (``format`` defaults to the path's suffix)."""
    path = os.fspath(path)
    format = format or format_of(path)
    data = parse_text(read_text(path), format, source=path)
    try:
        return pipeline_from_dict(data, pipeline_cls, source=path)
    except RecursionError:  # nesting under the limit, but deeper than Python's own recursion allows
        raise _too_deep(path) from None


__all__ = [
    "PipelineSerializationError",
    "dump_model",
    "load_model",
    "load_pipeline",
    "pipeline_from_dict",
    "pipeline_to_dict",
    "save_pipeline",
]
