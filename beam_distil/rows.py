"""Rows on Beam: every element is ``(row_id, row)``, a row being a dict of columns.

A row id is a tuple of ints: ``(i,)`` for the i-th row of a generator, ``(*parent, k)`` for the k-th row a step
made from one parent row (``num_generations`` without grouping, ``ExpandColumns``). Tuples sort in the order
users expect (``(2,) < (2, 0) < (2, 1) < (10,)``), are deterministic Beam keys, and keep rows with identical
content distinct.

``distilabel_metadata`` is the column where tasks keep, per row, what distilabel keeps there: raw outputs, raw
inputs, token statistics and errors (``raw_output_<task>``, ``error_<task>``...).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

RowId = Tuple[int, ...]
Row = Dict[str, Any]
KeyedRow = Tuple[RowId, Row]

DISTILABEL_METADATA_KEY = "distilabel_metadata"


def child_ids(parent: RowId, count: int) -> List[RowId]:
    """Ids for the ``count`` rows made from ``parent``: the parent's own id when there is exactly one."""
    return [parent] if count == 1 else [(*parent, k) for k in range(count)]


def unencodable_text(value: Any) -> Optional[str]:
    """Where ``value`` (a string, or lists and dicts of them) holds text UTF-8 cannot encode, or ``None``.

    A lone surrogate (``"\\udce9"``, left by bytes decoded with ``errors="surrogateescape"``) is valid in a
    Python string but not in UTF-8, which Beam's coders and every output format use: one such value would fail
    the whole job when Beam encodes the row.
    """
    if isinstance(value, str):
        if value.isascii():
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            return f"character {error.start} is {value[error.start]!r}, a lone surrogate"
        return None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        problem = unencodable_text(item)
        if problem is not None:
            return f"[{key!r}]: {problem}"
    return None


def escape_unencodable(value: Any) -> Any:
    """``value`` with every lone surrogate written as its escape (``"\\\\udce9"``), the rest unchanged."""
    if isinstance(value, str):
        return value if value.isascii() else value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {key: escape_unencodable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [escape_unencodable(item) for item in value]
    if isinstance(value, tuple):
        return tuple(escape_unencodable(item) for item in value)
    return value


def encodable_row(row: Row, step_name: str, drop_values: bool) -> Tuple[Row, bool]:
    """``row`` made safe for Beam's coders, and whether it had to be.

    Each column holding text UTF-8 cannot encode is set to ``None`` (``drop_values``: an input row, whose bad
    text must not be sent to an LLM and paid for) or gets its lone surrogates escaped (an output, whose text
    was paid for); ``distilabel_metadata["error_<step>"]`` says which columns and why. The job goes on.
    """
    problems = {column: problem for column, value in row.items() if (problem := unencodable_text(value))}
    if not problems:
        return row, False
    fixed = {
        column: (None if drop_values else escape_unencodable(value)) if column in problems else value
        for column, value in row.items()
    }
    action = "set to None" if drop_values else "kept with the lone surrogates escaped"
    described = "; ".join(f"column {column!r}{'' if p.startswith('[') else ': '}{p}" for column, p in problems.items())
    metadata = fixed.get(DISTILABEL_METADATA_KEY)
    metadata = dict(metadata) if isinstance(metadata, dict) else {}
    metadata[f"error_{step_name}"] = f"text UTF-8 cannot encode ({described}): {action}"
    fixed[DISTILABEL_METADATA_KEY] = metadata
    return fixed, True
