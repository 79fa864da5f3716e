"""Runtime parameters given as text, turned into the nested ``parameters`` of ``Pipeline.run``.

The command line (``beam-distil pipeline run --param ...``) and the Dataflow Flex Template launcher
(``--param``/``--params``) read overrides through these functions, so both merge them the same way::

    overrides_from_params(["gen.llm.generation_kwargs.temperature=0.7", "load.batch_size=10"])
    # {"gen": {"llm": {"generation_kwargs": {"temperature": 0.7}}}, "load": {"batch_size": 10}}
    overrides_from_json('{"gen.llm.generation_kwargs.max_new_tokens": 17, "load": {"batch_size": 10}}')
    # {"gen": {"llm": {"generation_kwargs": {"max_new_tokens": 17}}}, "load": {"batch_size": 10}}

Two overrides of the same parameter with different values are an error rather than "last one wins": a
template parameter and a command-line flag that disagree are more likely a mistake than an intent.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Sequence, Tuple

Parameters = Dict[str, Any]


class ParameterOverrideError(ValueError):
    """An override that cannot be read, or that conflicts with another one; the message says which."""


def parse_param(text: str) -> Tuple[List[str], Any]:
    """``"gen.llm.generation_kwargs.temperature=0.7"`` -> ``(["gen", "llm", "generation_kwargs", "temperature"], 0.7)``.

    The value is YAML: ``0.7`` is a float, ``true`` a bool, ``[a, b]`` a list, ``'010'`` a string.
    """
    import yaml

    if "=" not in text:
        raise ParameterOverrideError(f"--param {text!r} has no '=': write --param STEP.PARAMETER=VALUE")
    path_text, value_text = text.split("=", 1)
    path = path_text.strip().split(".")
    if not path_text.strip() or any(not part.strip() for part in path):
        raise ParameterOverrideError(
            f"--param {text!r} has an empty name in {path_text!r}: write --param STEP.PARAMETER=VALUE"
        )
    if len(path) < 2:
        raise ParameterOverrideError(
            f"--param {text!r} names no parameter of step {path[0]!r}: write --param STEP.PARAMETER=VALUE"
        )
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else ""
    except yaml.YAMLError as error:
        raise ParameterOverrideError(f"--param {text!r}: cannot read the value {value_text!r} ({error})") from None
    return [part.strip() for part in path], value


def merge_override(target: Parameters, path: Sequence[str], value: Any, origin: str) -> None:
    """Sets ``value`` at ``path`` in ``target``; dicts merge key by key, differing values are an error."""
    node = target
    for depth, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ParameterOverrideError(
                f"{origin} conflicts with the value {child!r} already given for {'.'.join(path[: depth + 1])}"
            )
        node = child
    leaf = path[-1]
    if leaf in node:
        if isinstance(node[leaf], dict) and isinstance(value, dict):
            for key, item in value.items():
                merge_override(node[leaf], [key], item, origin)
            return
        if node[leaf] != value:
            raise ParameterOverrideError(
                f"{origin} conflicts with the value {node[leaf]!r} already given for {'.'.join(path)}"
            )
    node[leaf] = value


def overrides_from_params(params: Sequence[str]) -> Parameters:
    """``--param STEP.PATH=VALUE`` flags as nested parameters."""
    parameters: Parameters = {}
    for text in params:
        path, value = parse_param(text)
        merge_override(parameters, path, value, f"--param {text!r}")
    return parameters


def overrides_from_json(text: str, into: Parameters | None = None) -> Parameters:
    """One JSON object of overrides; keys are step names with nested objects or dotted paths, mixed freely.

    With ``into``, the overrides are merged into that dict (and it is returned).
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ParameterOverrideError(f"--params is not valid JSON ({error}): {text!r}") from None
    if not isinstance(data, dict):
        raise ParameterOverrideError(f"--params must be a JSON object, got {type(data).__name__}: {text!r}")
    parameters: Parameters = {} if into is None else into
    for key, value in data.items():
        path = [part.strip() for part in str(key).split(".")]
        if any(not part for part in path):
            raise ParameterOverrideError(f"--params has an empty name in key {key!r}")
        if len(path) == 1 and not isinstance(value, dict):
            raise ParameterOverrideError(
                f"--params key {key!r} names no parameter: use {{\"{key}\": {{...}}}} or \"{key}.PARAMETER\""
            )
        merge_override(parameters, path, value, f"--params key {key!r}")
    return parameters
