"""Saving a ``Pipeline`` as YAML/JSON and loading it back, in distilabel's ``pipeline.yaml`` layout.

Example::

    pipeline.save("pipeline.yaml")                       # or pipeline.dump() -> dict
    loaded = Pipeline.from_file("gs://bucket/pipeline.yaml")
    loaded.run(parameters={"gen_a": {"llm": {"generation_kwargs": {"temperature": 0.7}}}})

The layout is distilabel 1.5.3's: the top-level ``distilabel`` key holds the version of distilabel whose layout the
file follows, as distilabel writes its own version there, and ``beam_distil`` the version of beam_distil that wrote
it. A file written by distilabel loads here, and a file written here loads in distilabel as far as its steps exist
there (distilabel ignores the ``beam_distil`` key)::

    distilabel:
      version: 1.5.3
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
            type_info: {module: distilabel.models.llms.openai, name: OpenAILLM}
          runtime_parameters_info:
          - {name: input_batch_size, optional: true, description: ...}
          - name: llm
            runtime_parameters_info: [...]
          type_info: {module: distilabel.steps.tasks.text_generation, name: TextGeneration}
        name: gen_a
      connections:
      - {from: load_data_from_dicts_0, to: [gen_a, gen_b]}
      routing_batch_functions:
      - step: load_data_from_dicts_0
        description: Sample 2 steps from the list of downstream steps.
        type_info: {module: distilabel.pipeline.routing_batch_function, name: sample_n_steps, kwargs: {n: 2}}
        seed: 0
        downstream: [gen_a, gen_b]
      type_info: {module: beam_distil.pipeline.pipeline, name: Pipeline}
    requirements: [nltk>=3.8]

* Each step is its ``Step.dump()`` (``beam_distil.steps.serialization`` says how classes are named, what is left
  out, secrets first among them, and how a dict is loaded without trusting it).
* A routing function made by a factory (``sample_n_steps``) is saved as the factory and its arguments, as
  distilabel saves it; its ``seed`` and ``downstream`` steps beside them (distilabel ignores both). A user's plain
  function is saved by ``module`` + ``qualname`` and must be registered where the pipeline is loaded: a function
  defined inside another function, a lambda, or one in ``__main__`` cannot be saved. distilabel itself rebuilds
  only factory-made routing functions.
* ``requirements`` are the pipeline's and its steps' (``beam_distil.utils.requirements``).
* Files written by beam_distil before it wrote distilabel's layout (only a ``beam_distil`` top-level key,
  ``runtime_parameters_info`` beside ``step``, the routing function nested under ``routing_batch_function``) still
  load.
* A file with a ``distilabel`` key and no ``beam_distil`` key was written by distilabel: its steps' fields that
  beam_distil's classes lack (``resources``...) are left out, with a warning when they held a value that mattered
  (``beam_distil.steps.serialization``); in any other file an unknown field is an error (a typo).

Loading trusts nothing in the file (it may come from a URL or a colleague):

* Every ``type_info`` is looked up in the registry (``beam_distil.pipeline.registry``): beam_distil's own steps,
  tasks and LLMs, under their names and distilabel's, and the classes and routing functions your code registers
  (``@register``, or an entry point of the ``beam_distil.registry`` group). A module named in the file is never
  imported, and the only callables a file may call with arguments of its choosing are the project's routing
  factories (``sample_n_steps``).
* YAML is read with the safe loader, at most ``MAX_CONFIG_BYTES``, and a file with anchors is refused when its
  aliases would expand to more than ``MAX_ALIAS_EXPANDED_NODES`` nodes (a "billion laughs" alias bomb: a few KB
  that would take minutes and gigabytes to load). ``save`` never writes anchors or aliases.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Type

import beam_distil.pipeline.registry as registry
from beam_distil.helpers import is_url, to_text
from beam_distil.steps.distilabel_names import DISTILABEL_VERSION
from beam_distil.steps.serialization import (
    TYPE_INFO_KEY,
    PipelineSerializationError,
    dump_model,
    load_model,
    model_class,
    type_info_of,
    where,
)

if TYPE_CHECKING:
    from beam_distil.pipeline.pipeline import Pipeline
    from beam_distil.pipeline.routing import RoutingBatchFunction

# The version of beam_distil that wrote a file; files written before the layout was distilabel's have only this key.
VERSION_KEY = "beam_distil"
# Where distilabel writes its version. beam_distil writes the distilabel version whose layout it follows; a file
# with this key and without VERSION_KEY was written by distilabel.
DISTILABEL_VERSION_KEY = "distilabel"
REQUIREMENTS_KEY = "requirements"

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


# -- saving --------------------------------------------------------------------------------------------------


def _routing_to_dict(routing: "RoutingBatchFunction", upstream: str) -> Dict[str, Any]:
    """The routing function of ``upstream`` as ``RoutingBatchFunction.dump`` writes it (distilabel's layout)."""
    return {"step": upstream, **{key: value for key, value in routing.dump().items() if key != "step"}}


def _package_version() -> str:
    import beam_distil

    return getattr(beam_distil, "__version__", "unknown")


def pipeline_to_dict(pipeline: "Pipeline") -> Dict[str, Any]:
    """``pipeline`` as a dict of JSON-compatible data (see the module docstring for the layout)."""
    steps = [{"step": step.dump(), "name": name} for name, step in pipeline.dag.steps.items()]
    connections = [
        {"from": name, "to": pipeline.dag.successors(name)}
        for name in pipeline.dag.steps
        if pipeline.dag.successors(name)
    ]
    routing = [_routing_to_dict(function, upstream) for upstream, function in pipeline.routing.items()]
    return {
        DISTILABEL_VERSION_KEY: {"version": DISTILABEL_VERSION},
        VERSION_KEY: {"version": _package_version()},
        "pipeline": {
            "name": pipeline.name,
            "description": pipeline.description,
            "steps": steps,
            "connections": connections,
            "routing_batch_functions": routing,
            TYPE_INFO_KEY: type_info_of(pipeline),
        },
        REQUIREMENTS_KEY: pipeline.requirements,
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


def _require(mapping: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise PipelineSerializationError(f"Missing `{key}`{where}")
    value = mapping[key]
    if not isinstance(value, kind):
        raise PipelineSerializationError(f"`{key}` must be a {kind.__name__}, got {value!r}{where}")
    return value


def pipeline_from_dict(data: Any, pipeline_cls: Type["Pipeline"], source: Optional[str] = None) -> "Pipeline":
    """Rebuilds a ``pipeline_cls`` from ``pipeline_to_dict`` output, or from a ``pipeline.yaml`` distilabel wrote.
    ``source`` names the file in error messages."""
    from beam_distil.pipeline.routing import RoutingBatchFunction
    from beam_distil.steps.base import _Step

    in_file = where(source)
    if not isinstance(data, dict) or not isinstance(data.get("pipeline"), dict):
        raise PipelineSerializationError(f"A saved pipeline is a mapping with a `pipeline` section{in_file}")
    section = data["pipeline"]
    name = _require(section, "name", str, in_file)
    steps = _require(section, "steps", list, in_file)
    connections = section.get("connections") or []
    routings = section.get("routing_batch_functions") or []
    requirements = data.get(REQUIREMENTS_KEY) or []
    if not isinstance(requirements, list) or not all(isinstance(r, str) for r in requirements):
        raise PipelineSerializationError(f"`requirements` must be a list of strings, got {requirements!r}{in_file}")

    # distilabel's steps have fields beam_distil's do not: in its files they are left out rather than refused.
    written_by_distilabel = DISTILABEL_VERSION_KEY in data and VERSION_KEY not in data
    pipeline = pipeline_cls(name, description=section.get("description"), requirements=requirements)
    with pipeline:
        for index, entry in enumerate(steps):
            step_data = _require(entry, "step", dict, f"{in_file} in steps[{index}]")
            step_name = entry.get("name") or step_data.get("name")
            step_data = {**step_data, "name": step_name} if step_name else step_data
            where_step = step_name or f"steps[{index}]"
            cls = model_class(step_data, source, where_step, registry.REGISTRY)
            if not issubclass(cls, _Step):  # refused before it is built: no constructor runs for a non-step
                raise PipelineSerializationError(f"{cls.__name__} is not a step{where(source, step_name)}")
            load_model(step_data, source, where_step, registry.REGISTRY, drop_unknown_fields=written_by_distilabel)
    for connection in connections:
        from_name = _require(connection, "from", str, f"{in_file} in connections")
        targets = connection.get("to") or []
        if not isinstance(targets, list):
            raise PipelineSerializationError(f"`to` of step {from_name!r} must be a list{in_file}")
        for to_name in targets:
            try:
                pipeline.add_edge(from_name, to_name)
            except ValueError as error:
                raise PipelineSerializationError(f"Connection {from_name!r} -> {to_name!r}: {error}{in_file}") from None
    for entry in routings:
        upstream = _require(entry, "step", str, f"{in_file} in routing_batch_functions")
        if upstream not in pipeline.dag.steps:
            raise PipelineSerializationError(f"Routing names step {upstream!r}, which is not in the pipeline{in_file}")
        routing = RoutingBatchFunction.from_dict(entry, source=source)
        downstream = routing.downstream or pipeline.dag.successors(upstream)
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


def refuse_unsafe_yaml(text: str, loader: Any, source: Optional[str] = None) -> None:
    """The checks ``parse_text`` makes on YAML, for a reader with its own loader: refuses text that is
    oversized, nested deeper than ``MAX_NESTING_DEPTH`` or an alias bomb (``PipelineSerializationError`` naming
    ``source``), before it is loaded."""
    _refuse_oversized(_utf8_size(text), source)
    _refuse_deep_nesting(text, "yaml", source)
    if _YAML_ANCHOR.search(text):  # no anchor, no alias: nothing to expand
        _refuse_alias_bombs(text, loader, source)


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
