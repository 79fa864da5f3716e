"""``CombineOutputs``: merges the rows of several predecessors into one row each.

Example::

    with Pipeline("combine") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "Say hi"}])
        a, b = TextGeneration(name="a", llm=...), UltraFeedback(name="b", llm=..., input_mappings=...)
        combine = CombineOutputs()
        load >> [a, b] >> combine

    next(CombineOutputs().process([{"a": 1}], [{"b": 2}]))
    # [{'a': 1, 'b': 2, 'distilabel_metadata': {}}]

Later predecessors' columns win; ``distilabel_metadata`` is merged (see ``merge_distilabel_metadata``).
"""

from __future__ import annotations

from typing import Any, Dict

from beam_distil.rows import DISTILABEL_METADATA_KEY
from beam_distil.steps.base import Step, StepInput, StepOutput
from beam_distil.steps.columns.group import merge_distilabel_metadata


class CombineOutputs(Step):
    """Combines the i-th rows of all its inputs into one row with all their columns.

    Input columns: none required. Output columns: the union of the inputs' columns, plus
    ``distilabel_metadata`` (always present, possibly empty).
    """

    def process(self, *inputs: StepInput) -> StepOutput:
        combined_rows = []
        for rows in zip(*inputs):
            combined: Dict[str, Any] = {}
            for row in rows:
                combined.update({k: v for k, v in row.items() if k != DISTILABEL_METADATA_KEY})
            combined[DISTILABEL_METADATA_KEY] = merge_distilabel_metadata(*rows)
            combined_rows.append(combined)
        yield combined_rows
