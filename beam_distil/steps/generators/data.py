"""``LoadDataFromDicts``: a generator step over an in-memory list of rows."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from pydantic import Field, field_validator

from beam_distil.steps.base import GeneratorStep, GeneratorStepOutput


class LoadDataFromDicts(GeneratorStep):
    """Yields the rows of ``data`` in batches of ``batch_size``.

    Its outputs are the keys of the first row. Example::

        with Pipeline("demo") as pipeline:
            load = LoadDataFromDicts(data=[{"instruction": "Tell me a joke."}])

        # or inside any Beam job
        rows = p | LoadDataFromDicts(data=[{"a": 1}, {"a": 2}])
    """

    data: List[Dict[str, Any]] = Field(..., description="The rows to yield; the first row's keys are the outputs.")

    @field_validator("data")
    @classmethod
    def _check_data(cls, data: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        if not data:
            raise ValueError(
                "LoadDataFromDicts needs at least one row in `data` (got an empty list); its output columns"
                " are the keys of the first row."
            )
        return data

    @property
    def outputs(self) -> List[str]:  # type: ignore[override]
        return list(self.data[0].keys())

    def rows_between(self, first_row: int, row_limit: Optional[int]) -> "LoadDataFromDicts":
        """A copy holding only ``data[first_row:row_limit]``: what one slice of a local run carries."""
        return self.model_copy(update={"data": self.data[first_row:row_limit]})

    def process(self, offset: int = 0) -> GeneratorStepOutput:  # type: ignore[override]
        """Yields ``(rows, is_last_batch)`` of at most ``batch_size`` rows, starting at row ``offset``."""
        data = self.data
        total = len(data)
        batch_size = self.batch_size or 50
        for start in range(max(offset, 0), total, batch_size):
            end = min(start + batch_size, total)
            yield [dict(row) for row in data[start:end]], end >= total


__all__ = ["LoadDataFromDicts"]
