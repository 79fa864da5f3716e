"""Checks of a row's input columns shared by the tasks: a wrong type is an error naming the column, which the
Task turns into a kept row with ``error_<step>`` instead of a prompt built from garbage. A missing column is a
``MissingColumnError``: a ``KeyError``, as distilabel raises when it indexes the row, and a ``ValueError``, like
every other bad input here::

    string_column({"instruction": "Hi"}, "instruction")   # "Hi"
    string_column({}, "reference")                          # MissingColumnError (KeyError and ValueError)
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional


class MissingColumnError(KeyError, ValueError):
    """A row lacks a column the task reads."""

    def __init__(self, column: str, row: Dict[str, Any]) -> None:
        super().__init__(column)
        self.column = column
        self.message = f"the row has no column {column!r} (its columns: {sorted(row)})"

    def __str__(self) -> str:  # KeyError would show the repr of its argument
        return self.message


def required_column(row: Dict[str, Any], column: str) -> Any:
    """``row[column]``; ``MissingColumnError`` when the row has no such column."""
    if column not in row:
        raise MissingColumnError(column, row)
    return row[column]


def string_column(row: Dict[str, Any], column: str) -> str:
    """``row[column]``, which must be a string."""
    value = required_column(row, column)
    if not isinstance(value, str):
        raise ValueError(f"column {column!r} must be a string, got {type(value).__name__}: {value!r:.80}")
    return value


def texts_column(row: Dict[str, Any], column: str, allow_none: bool = False) -> List[Optional[str]]:
    """``row[column]``, which must be a non-empty list of strings (``None`` entries too with ``allow_none``)."""
    value = required_column(row, column)
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        raise ValueError(
            f"column {column!r} must be a non-empty list of strings, got {type(value).__name__}: {value!r:.80}"
        )
    bad = [item for item in value if not isinstance(item, str) and not (allow_none and item is None)]
    if bad:
        allowed = "strings (or None)" if allow_none else "strings"
        raise ValueError(f"column {column!r} must hold {allowed}, got {type(bad[0]).__name__}: {bad[0]!r:.80}")
    return list(value)
