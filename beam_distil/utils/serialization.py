"""JSON and YAML files as distilabel's ``distilabel.utils.serialization`` reads and writes them.

Example::

    from pathlib import Path
    from beam_distil.utils.serialization import read_json, read_yaml, write_json, write_yaml

    write_json(Path("out/artifacts/metadata.json"), {"rows": 3})     # creates out/artifacts/ if needed
    read_json("out/artifacts/metadata.json")                         # {'rows': 3}
    write_yaml(Path("out/config.yaml"), {"name": "demo", "steps": []})
    read_yaml("out/config.yaml")                                     # {'name': 'demo', 'steps': []}

JSON is written compact and UTF-8 (as distilabel's ``orjson`` writes it); numpy arrays and scalars, dates and
times, UUIDs, enums and dataclasses are written as JSON values. YAML keeps the keys in their order.

A file may come from someone else, so ``read_yaml`` builds only plain data (dicts, lists, strings, numbers,
booleans, ``None``, and the ``!!python/tuple`` that ``yaml.dump`` writes for a tuple): unlike distilabel's
``yaml.FullLoader`` it refuses every other ``!!python/...`` tag. ``write_yaml`` accordingly writes only plain data.
From beam_distil it takes `TYPE_INFO_KEY` (steps) and, inside `read_yaml`, the pipeline layer's YAML guards.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import os
import uuid
from pathlib import Path
from typing import Any, Dict, Final, Literal, Union

import yaml

# The key under which a saved step, task or LLM names its class (``{"module": ..., "name": ...}``).
from beam_distil.steps.serialization import TYPE_INFO_KEY

DISTILABEL_FILENAME: Final[str] = "distilabel-file.json"
"""The file name distilabel's ``save`` uses when given a folder."""

StrOrPath = Union[str, os.PathLike]
SaveFormats = Literal["json", "yaml"]


def _json_value(value: Any) -> Any:
    """A JSON value for what ``json`` can't write but distilabel's ``orjson`` (with numpy support) can."""
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if type(value).__module__ == "numpy":
        # numpy arrays (`tolist`) and numpy scalars (`item`); checked by module so numpy is never imported here.
        if hasattr(value, "tolist"):
            return value.tolist()
    raise TypeError(
        f"write_json can't write a value of type {type(value).__name__!r} as JSON: convert it to a dict, list, "
        "str, number, bool or None first."
    )


def write_json(filename: StrOrPath, data: Any) -> None:
    """Writes ``data`` as JSON to ``filename``, creating its parent folders.

    Raises:
        TypeError: a value that has no JSON form (e.g. an arbitrary object), naming its type.
    """
    path = Path(filename)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=_json_value)
    path.write_bytes(text.encode("utf-8"))


def read_json(filename: StrOrPath) -> Any:
    """The data in the JSON file ``filename``."""
    with open(filename, "rb") as file:
        return json.loads(file.read())


class _PlainDataLoader(yaml.SafeLoader):
    """``SafeLoader`` that also reads the ``!!python/tuple`` tag ``yaml.dump`` writes (a tuple of plain values)."""


_PlainDataLoader.add_constructor(
    "tag:yaml.org,2002:python/tuple",
    lambda loader, node: tuple(loader.construct_sequence(node)),  # type: ignore[arg-type]
)


def write_yaml(filename: StrOrPath, data: Dict[str, Any]) -> None:
    """Writes ``data`` as block-style YAML to ``filename`` (keys in their order), creating its parent folders.

    Raises:
        yaml.representer.RepresenterError: a value that isn't plain data (an arbitrary object).
    """
    path = Path(filename)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as file:
        yaml.safe_dump(data, file, default_flow_style=False, sort_keys=False)


def read_yaml(filename: StrOrPath) -> Dict[str, Any]:
    """The data in the YAML file ``filename``, as plain data (see the module's notes on what it refuses).

    Raises:
        yaml.constructor.ConstructorError: the file asks for a Python object (a ``!!python/object`` tag, say).
        beam_distil.pipeline.serialization.PipelineSerializationError: an alias bomb, or a file too large or
            nested too deep to load safely.
    """
    # The project's guards for YAML from a file: a few KB of aliases must not take minutes and gigabytes.
    from beam_distil.pipeline.serialization import refuse_unsafe_yaml

    with open(filename, "r") as file:
        text = file.read()
    refuse_unsafe_yaml(text, _PlainDataLoader, str(filename))
    return yaml.load(text, Loader=_PlainDataLoader)  # noqa: S506 - a SafeLoader plus plain tuples


__all__ = [
    "DISTILABEL_FILENAME",
    "SaveFormats",
    "StrOrPath",
    "TYPE_INFO_KEY",
    "read_json",
    "read_yaml",
    "write_json",
    "write_yaml",
]
