"""``ExpandColumns``: turns a row whose columns hold lists into one row per list item.

Example::

    expand = ExpandColumns(columns=["generation"])
    next(expand.process([{"instruction": "i1", "generation": ["g1", "g2"]}]))
    # [{'instruction': 'i1', 'generation': 'g1'}, {'instruction': 'i1', 'generation': 'g2'}]

    ExpandColumns(columns={"generations": "generation"})   # the item goes to a new column
    ExpandColumns(columns=["generations"], encoded=True)   # the column holds a JSON-encoded list
    ExpandColumns(columns=["instructions"], split_statistics=True)   # token counts divided among the new rows

On Beam, the i-th row made from a row gets a child row id of it, so the output keeps the input order.
"""

from __future__ import annotations

import json
from itertools import zip_longest
from typing import Any, ClassVar, Dict, List, Union

from pydantic import ValidationInfo, field_validator

from beam_distil.rows import DISTILABEL_METADATA_KEY
from beam_distil.steps.base import Step, StepInput, StepOutput


class ExpandColumns(Step):
    """Expands list columns into multiple rows.

    Attributes:
        columns: column to expand -> the column its items go to; a list means the same name.
        encoded: the columns holding JSON-encoded lists (decoded before expanding); ``True`` means all of
            ``columns``.
        split_statistics: divide the token counts of each ``statistics_<step>`` entry of ``distilabel_metadata``
            by the number of rows a row expands into, so that summing them over the new rows does not count the
            tokens N times (a task that generated N instructions in one answer, expanded to one per row).

    Input columns:
        - dynamic (``columns`` keys): the columns to expand.

    Output columns:
        - dynamic (``columns`` values): the expanded columns.

    Several columns are expanded together, item by item (as distilabel's ``zip_longest``). As in distilabel, the
    number of new rows is the length of the first column, the counts are divided with ``//`` (a remainder is
    dropped), a count that is a number becomes a one-item list, and a ``statistics_<step>`` entry keeps only
    ``input_tokens`` and ``output_tokens``; a row without ``distilabel_metadata`` is expanded as it is.
    """

    changes_row_count: ClassVar[bool] = True

    columns: Union[Dict[str, str], List[str]]
    encoded: Union[bool, List[str]] = False
    split_statistics: bool = False

    @field_validator("columns")
    @classmethod
    def _always_dict(cls, value: Union[Dict[str, str], List[str]]) -> Dict[str, str]:
        return {column: column for column in value} if isinstance(value, list) else value

    @field_validator("encoded")
    @classmethod
    def _encoded_subset(cls, value: Union[bool, List[str]], info: ValidationInfo) -> Union[bool, List[str]]:
        columns = info.data.get("columns") or {}
        if isinstance(value, list):
            wrong = [column for column in value if column not in columns]
            if wrong:
                raise ValueError(f"The following encoded columns are not present in the columns to expand: {wrong}")
        return value

    @property
    def encoded_columns(self) -> List[str]:
        """The columns decoded from JSON before expanding."""
        if self.encoded is True:
            return list(self.columns)
        return list(self.encoded) if isinstance(self.encoded, list) else []

    @property
    def inputs(self) -> List[str]:
        return list(self.columns)

    @property
    def outputs(self) -> List[str]:
        return [new or column for column, new in self.columns.items()]  # type: ignore[union-attr]

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        yield [expanded for row in inputs for expanded in self._expand_columns(row)]

    def _expand_columns(self, row: Dict[str, Any]) -> List[Dict[str, Any]]:
        encoded = self.encoded_columns
        if encoded:
            row = {**row, **{column: json.loads(row[column]) for column in encoded}}
        expanded_rows: List[Dict[str, Any]] = []
        for index, (column, new_column) in enumerate(self.columns.items()):  # type: ignore[union-attr]
            data = row.get(column)
            if data is None:
                raise ValueError(f"ExpandColumns: column {column!r} is missing (or None) in row {row!r}")
            if index == 0 and self.split_statistics and row.get(DISTILABEL_METADATA_KEY):
                # The first column says how many rows this one becomes, as in distilabel.
                row = {**row, DISTILABEL_METADATA_KEY: split_statistics(row[DISTILABEL_METADATA_KEY], len(data))}
            expanded_rows = [
                {**expanded, (new_column or column): item}
                for item, expanded in zip_longest(data, expanded_rows, fillvalue=row)
            ]
        return expanded_rows


def split_statistics(metadata: Dict[str, Any], parts: int) -> Dict[str, Any]:
    """``metadata`` with the token counts of each ``statistics_<step>`` entry divided by ``parts`` (as distilabel's
    ``ExpandColumns(split_statistics=True)``: floor division, numbers become one-item lists)."""
    if parts < 1:
        return metadata
    split = dict(metadata)
    for key, value in metadata.items():
        if key.startswith("statistics_") and isinstance(value, dict) and "input_tokens" in value and "output_tokens" in value:
            split[key] = {
                "input_tokens": _divided(value["input_tokens"], parts),
                "output_tokens": _divided(value["output_tokens"], parts),
            }
    return split


def _divided(tokens: Any, parts: int) -> List[int]:
    return [count // parts for count in tokens] if isinstance(tokens, list) else [tokens // parts]
