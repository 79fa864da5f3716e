"""Rows on Beam: every element is ``(row_id, row)``, a row being a dict of columns.

A row id is a tuple of ints: ``(i,)`` for the i-th row of a generator, ``(*parent, k)`` for the k-th row a step
made from one parent row (``num_generations`` without grouping, ``ExpandColumns``). Tuples sort in the order
users expect (``(2,) < (2, 0) < (2, 1) < (10,)``), are deterministic Beam keys, and keep rows with identical
content distinct.

``distilabel_metadata`` is the column where tasks keep, per row, what distilabel keeps there: raw outputs, raw
inputs, token statistics and errors (``raw_output_<task>``, ``error_<task>``...).
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

RowId = Tuple[int, ...]
Row = Dict[str, Any]
KeyedRow = Tuple[RowId, Row]

DISTILABEL_METADATA_KEY = "distilabel_metadata"


def child_ids(parent: RowId, count: int) -> List[RowId]:
    """Ids for the ``count`` rows made from ``parent``: the parent's own id when there is exactly one."""
    return [parent] if count == 1 else [(*parent, k) for k in range(count)]
