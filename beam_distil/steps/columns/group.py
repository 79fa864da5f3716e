"""``GroupColumns``: joins the rows of several predecessors, gathering chosen columns into lists.

Typically placed after several tasks that ran on the same rows, to collect their generations::

    with Pipeline("compare") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "Say hi"}])
        gens = [TextGeneration(name=f"gen_{m}", llm=OpenAILLM(model=m)) for m in ("a", "b")]
        group = GroupColumns(columns=["generation", "model_name"], output_columns=["generations", "model_names"])
        load >> gens >> group

    next(GroupColumns(columns=["generation"]).process([{"generation": "x"}], [{"generation": "y"}]))
    # [{'grouped_generation': ['x', 'y']}]

On Beam, the rows of the predecessors are joined on their row id before ``process`` is called, so the i-th row
of every input descends from the same original row.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar, Dict, List, Optional, Union

from pydantic import model_validator

from beam_distil.rows import DISTILABEL_METADATA_KEY
from beam_distil.steps.base import Step, StepInput, StepOutput


def merge_distilabel_metadata(*rows: Dict[str, Any]) -> Union[Dict[str, Any], List[Dict[str, Any]]]:
    """Merges the ``distilabel_metadata`` of several rows, as distilabel does.

    Dict metadata is merged key by key: a key present in one row keeps its value, a key present in several
    rows gets the list of their values. If any row holds a list of metadata dicts (one per generation),
    the result is the concatenation of those lists.
    """
    merged: Dict[str, List[Any]] = defaultdict(list)
    merged_list: Optional[List[Any]] = None
    for row in rows:
        metadata = row.get(DISTILABEL_METADATA_KEY) or {}
        if isinstance(metadata, list):
            merged_list = (merged_list or []) + list(metadata)
        elif merged_list is None:
            for key, value in metadata.items():
                merged[key].append(value)
    if merged_list is not None:
        return merged_list
    return {key: values[0] if len(values) == 1 else values for key, values in merged.items()}


def _echoed_name(step: Step, column: str) -> str:
    """Name a column read by ``step`` has in the rows it yields (mirrors ``_Step.rename_outputs``)."""
    return step.output_mappings.get(column, step.input_mappings.get(column, column))


class GroupColumns(Step):
    """Zips the rows of its inputs and groups the values of ``columns`` into lists.

    Attributes:
        columns: the columns whose values are gathered, one value per input.
        output_columns: the names of the grouped columns; ``grouped_<column>`` by default.

    Input columns:
        - dynamic (``columns``).

    Output columns:
        - dynamic (``output_columns``): one list per grouped column. The other columns of the rows are kept
          (when inputs disagree, the later input wins); ``distilabel_metadata`` is merged.
    """

    expects_uniform_inputs: ClassVar[bool] = True

    columns: List[str]
    output_columns: Optional[List[str]] = None

    @model_validator(mode="after")
    def _check_lengths(self) -> "GroupColumns":
        if self.output_columns is not None and len(self.output_columns) != len(self.columns):
            raise ValueError(
                f"`output_columns` ({len(self.output_columns)} names) must have the same length as"
                f" `columns` ({len(self.columns)} names)."
            )
        return self

    @property
    def inputs(self) -> List[str]:
        return list(self.columns)

    @property
    def outputs(self) -> List[str]:
        if self.output_columns is not None:
            return list(self.output_columns)
        return [f"grouped_{column}" for column in self.columns]

    def columns_after(self, available: List[str]) -> List[str]:
        """The grouped columns replace ``columns``; the rest of the incoming columns stay."""
        grouped = set(self.get_inputs())
        return list(dict.fromkeys([*(c for c in available if c not in grouped), *self.get_outputs()]))

    def process(self, *inputs: StepInput) -> StepOutput:
        renames = dict(zip(self.inputs, self.outputs))
        result = []
        for rows in zip(*inputs):
            combined: Dict[str, Any] = {}
            metadata_rows = []
            for row in rows:
                if DISTILABEL_METADATA_KEY in row:
                    metadata_rows.append(row)
                for key, value in row.items():
                    if key == DISTILABEL_METADATA_KEY:
                        continue
                    if key in renames:
                        combined.setdefault(renames[key], []).append(value)
                    else:
                        combined[key] = value
            if metadata_rows:
                combined[DISTILABEL_METADATA_KEY] = merge_distilabel_metadata(*metadata_rows)
            result.append(combined)
        yield result
