"""``EmbeddingDedup``: near-duplicate rows by the cosine similarity of their embeddings, distributed with Beam.

Example::

    EmbeddingGeneration(embeddings=MiniLMEmbeddings()) >> EmbeddingDedup(threshold=0.95)
    EmbeddingDedup(threshold=0.9, keep_duplicates=True)   # adds `keep_row_after_embedding_filtering` (bool)

Each embedding is hashed by random hyperplanes (SimHash, seeded by ``seed``): ``bands`` bands of
``rows_per_band`` sign bits. Rows sharing a band are candidates (grouped by Beam), verified by their exact cosine
similarity ``>= threshold``. A row is a duplicate iff a verified near-duplicate with a smaller row id exists (the
first row of each group is kept), the rule ``MinHashDedup`` uses. The band defaults miss a pair at the threshold
with probability below 1/1000.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Dict, Hashable, List, Optional

import apache_beam as beam
import numpy as np
from pydantic import Field, PositiveInt, model_validator

from beam_distil.rows import Row
from beam_distil.steps.base import Step, StepColumns, StepInput, StepOutput
from beam_distil.steps.dedup.lsh import LSHDedup, Scheme, WithRowIds, check_bands, optimal_bands

KEEP_COLUMN = "keep_row_after_embedding_filtering"


def unit(vector: Any) -> Optional[np.ndarray]:
    """The vector scaled to length 1 (``None`` for a missing or zero vector: never a duplicate)."""
    if vector is None:
        return None
    array = np.asarray(vector, dtype=np.float64).ravel()
    norm = float(np.linalg.norm(array))
    return array / norm if norm > 0 else None


def cosine(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> float:
    if a is None or b is None or a.shape != b.shape:
        return -1.0
    return float(a @ b)


def hyperplane_collision(threshold: float) -> float:
    """Probability that one random hyperplane does not separate two vectors at cosine ``threshold``."""
    return 1.0 - math.acos(max(-1.0, min(1.0, threshold))) / math.pi


class SimHashScheme(Scheme):
    def __init__(self, column: str, seed: int, bands: int, rows_per_band: int, threshold: float) -> None:
        self.column, self.seed, self.bands, self.rows_per_band, self.threshold = column, seed, bands, rows_per_band, threshold
        self._planes: Dict[int, np.ndarray] = {}

    def planes(self, dimension: int) -> np.ndarray:
        # The same hyperplanes on every worker: drawn from (seed, dimension) only.
        if dimension not in self._planes:
            generator = np.random.RandomState([self.seed & 0xFFFFFFFF, dimension])
            self._planes[dimension] = generator.standard_normal((self.bands * self.rows_per_band, dimension))
        return self._planes[dimension]

    def feature(self, row: Row) -> Optional[np.ndarray]:
        return unit(row.get(self.column))

    def band_keys(self, feature: Optional[np.ndarray]) -> List[Hashable]:
        if feature is None:
            return []
        bits = (self.planes(feature.shape[0]) @ feature) >= 0
        r = self.rows_per_band
        return [(band, feature.shape[0], np.packbits(bits[band * r : (band + 1) * r]).tobytes()) for band in range(self.bands)]

    def similar(self, a: Optional[np.ndarray], b: Optional[np.ndarray]) -> bool:
        return cosine(a, b) >= self.threshold


class EmbeddingDedup(Step):
    """Removes (or marks) rows whose ``embedding`` is within cosine ``threshold`` of an earlier row's.

    Input columns:
        - embedding (``List[float]``).

    Output columns:
        - keep_row_after_embedding_filtering (``bool``): only with ``keep_duplicates=True``.

    Attributes:
        threshold: cosine similarity from which two rows are duplicates.
        bands, rows_per_band: SimHash banding (``None``: chosen from ``threshold`` among ``num_hyperplanes``).
        num_hyperplanes: hyperplanes to choose the banding from when it is not given.
        seed: seeds the hyperplanes.
        keep_duplicates: keep every row and say in ``keep_row_after_embedding_filtering`` which to keep.
    """

    threshold: float = Field(default=0.95, gt=-1.0, le=1.0)
    num_hyperplanes: PositiveInt = 256
    bands: Optional[PositiveInt] = None
    rows_per_band: Optional[PositiveInt] = None
    seed: int = 1
    keep_duplicates: bool = False

    changes_row_count: ClassVar[bool] = True

    @model_validator(mode="after")
    def _check_bands(self) -> "EmbeddingDedup":
        if self.bands is None or self.rows_per_band is None:
            check_bands(self.bands, self.rows_per_band, self.num_hyperplanes)
        return self

    @property
    def inputs(self) -> StepColumns:
        return ["embedding"]

    @property
    def outputs(self) -> StepColumns:
        return [KEEP_COLUMN]

    def columns_after(self, available: List[str]) -> List[str]:
        return super().columns_after(available) if self.keep_duplicates else list(available)

    def banding(self) -> tuple:
        """``(bands, rows_per_band)`` in use."""
        if self.bands is not None and self.rows_per_band is not None:
            return self.bands, self.rows_per_band
        return optimal_bands(self.num_hyperplanes, hyperplane_collision(self.threshold))

    def keyed_transform(self) -> beam.PTransform:
        bands, rows_per_band = self.banding()
        scheme = SimHashScheme(self.input_mappings.get("embedding", "embedding"), self.seed, bands, rows_per_band, self.threshold)
        column = self.output_mappings.get(KEEP_COLUMN, KEEP_COLUMN)
        return LSHDedup(scheme, self.name or "embedding_dedup", self.keep_duplicates, column)

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        return pcoll | WithRowIds(self.keyed_transform())

    def process(self, inputs: StepInput) -> StepOutput:
        """The same rule on one batch, exactly (for direct calls; on Beam the step runs ``keyed_transform()``)."""
        vectors = [unit(row.get("embedding")) for row in inputs]
        keep = [
            not any(cosine(vectors[j], vectors[i]) >= self.threshold for j in range(i)) for i in range(len(inputs))
        ]
        if self.keep_duplicates:
            yield [{**row, KEEP_COLUMN: k} for row, k in zip(inputs, keep)]
        else:
            yield [row for row, k in zip(inputs, keep) if k]
