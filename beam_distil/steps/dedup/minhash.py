"""``MinHashDedup``: near-duplicate text removal with MinHash + LSH, as a distributed Beam transform.

Example::

    MinHashDedup(threshold=0.8, n=3)                      # rows with `text`; near-duplicates of earlier rows go
    MinHashDedup(keep_duplicates=True, input_mappings={"text": "generation"})
    # every row kept, with `keep_row_after_minhash_filtering` (bool)

Each text becomes a set of shingles (``n`` consecutive lower-cased words), its MinHash signature has ``num_perm``
values from hash functions seeded by ``seed``, and the signature is cut into ``bands`` bands of ``rows_per_band``
values: texts sharing a band become candidates, grouped by Beam. Candidates are verified by their exact Jaccard
similarity (``>= threshold``), so the result is the exact one whenever LSH finds the pair (the band defaults miss a
pair at the threshold with probability below 1/1000, and a more similar pair far less often).

A row is a duplicate iff a verified near-duplicate with a smaller row id exists: the first row of each group is
kept. (distilabel's ``MinHashDedup`` decides greedily in the order rows reach it and compares against kept rows
only; this rule needs no global state and gives the same result whenever similarity is transitive in a group.)
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, ClassVar, FrozenSet, Hashable, List, Optional

import apache_beam as beam
import numpy as np
from pydantic import Field, PositiveInt, model_validator

from beam_distil.rows import Row
from beam_distil.steps.base import Step, StepColumns, StepInput, StepOutput
from beam_distil.steps.dedup.lsh import LSHDedup, Scheme, WithRowIds, check_bands, optimal_bands

_WORD = re.compile(r"\w+", re.UNICODE)
_MERSENNE_PRIME = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)


def shingles(text: Any, n: int) -> FrozenSet[str]:
    """The word ``n``-grams of ``text`` (lower-cased words); a text shorter than ``n`` words is one shingle, and a
    text with no word (or not a string) the empty shingle, so that two empty texts are duplicates."""
    words = _WORD.findall(text.lower()) if isinstance(text, str) else []
    if len(words) <= n:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))


def jaccard(a: FrozenSet[str], b: FrozenSet[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def _base_hashes(items: FrozenSet[str]) -> np.ndarray:
    # A stable 32-bit hash (Python's hash() differs from one process to the next).
    return np.array(
        [int.from_bytes(hashlib.blake2b(item.encode("utf-8"), digest_size=4).digest(), "little") for item in items],
        dtype=np.uint64,
    )


class MinHashScheme(Scheme):
    def __init__(self, column: str, n: int, num_perm: int, seed: int, bands: int, rows_per_band: int, threshold: float):
        self.column, self.n, self.num_perm, self.seed = column, n, num_perm, seed
        self.bands, self.rows_per_band, self.threshold = bands, rows_per_band, threshold
        self._a: Optional[np.ndarray] = None
        self._b: Optional[np.ndarray] = None

    def setup(self) -> None:
        generator = np.random.RandomState(self.seed)
        # Universal hashing h(x) = (a x + b) mod p, as datasketch does.
        self._a = generator.randint(1, int(_MERSENNE_PRIME), size=self.num_perm, dtype=np.uint64)
        self._b = generator.randint(0, int(_MERSENNE_PRIME), size=self.num_perm, dtype=np.uint64)

    def signature(self, items: FrozenSet[str]) -> np.ndarray:
        if self._a is None:
            self.setup()
        values = _base_hashes(items)
        with np.errstate(over="ignore"):
            permuted = (np.outer(values, self._a) + self._b) % _MERSENNE_PRIME & _MAX_HASH
        return permuted.min(axis=0)

    def feature(self, row: Row) -> FrozenSet[str]:
        return shingles(row.get(self.column), self.n)

    def band_keys(self, feature: FrozenSet[str]) -> List[Hashable]:
        signature = self.signature(feature)
        r = self.rows_per_band
        return [(band, signature[band * r : (band + 1) * r].tobytes()) for band in range(self.bands)]

    def similar(self, a: FrozenSet[str], b: FrozenSet[str]) -> bool:
        return jaccard(a, b) >= self.threshold


class MinHashDedup(Step):
    """Removes (or marks) near-duplicate texts with MinHash + LSH, distributed with Beam.

    Input columns:
        - text (``str``): the text to deduplicate on.

    Output columns:
        - keep_row_after_minhash_filtering (``bool``): only with ``keep_duplicates=True``.

    Attributes:
        threshold: Jaccard similarity of shingle sets from which two texts are duplicates.
        n: words per shingle.
        num_perm: MinHash hash functions.
        seed: seeds the hash functions.
        bands, rows_per_band: the LSH banding (``None``: chosen from ``threshold`` for recall).
        keep_duplicates: keep every row and say in ``keep_row_after_minhash_filtering`` which to keep.
    """

    threshold: float = Field(default=0.9, gt=0.0, le=1.0)
    n: PositiveInt = 3
    num_perm: PositiveInt = 128
    seed: int = 1
    bands: Optional[PositiveInt] = None
    rows_per_band: Optional[PositiveInt] = None
    keep_duplicates: bool = False

    changes_row_count: ClassVar[bool] = True

    @model_validator(mode="after")
    def _check_bands(self) -> "MinHashDedup":
        check_bands(self.bands, self.rows_per_band, self.num_perm)
        return self

    @property
    def inputs(self) -> StepColumns:
        return ["text"]

    @property
    def outputs(self) -> StepColumns:
        return ["keep_row_after_minhash_filtering"]

    def columns_after(self, available: List[str]) -> List[str]:
        return super().columns_after(available) if self.keep_duplicates else list(available)

    def banding(self) -> tuple:
        """``(bands, rows_per_band)`` in use."""
        if self.bands is not None and self.rows_per_band is not None:
            return self.bands, self.rows_per_band
        return optimal_bands(self.num_perm, self.threshold)

    def scheme(self) -> MinHashScheme:
        bands, rows_per_band = self.banding()
        return MinHashScheme(
            self.get_inputs_column(), self.n, self.num_perm, self.seed, bands, rows_per_band, self.threshold
        )

    def get_inputs_column(self) -> str:
        """The incoming rows' column holding the text (``input_mappings`` applied)."""
        return self.input_mappings.get("text", "text")

    def keyed_transform(self) -> beam.PTransform:
        column = self.output_mappings.get("keep_row_after_minhash_filtering", "keep_row_after_minhash_filtering")
        return LSHDedup(self.scheme(), self.name or "minhash_dedup", self.keep_duplicates, column)

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        return pcoll | WithRowIds(self.keyed_transform())

    def process(self, inputs: StepInput) -> StepOutput:
        """The same rule on one batch, exactly (pairwise Jaccard): for direct calls. On Beam the step runs
        ``keyed_transform()`` over all rows instead."""
        features = [shingles(row.get("text"), self.n) for row in inputs]
        keep = [
            not any(jaccard(features[j], features[i]) >= self.threshold for j in range(i)) for i in range(len(inputs))
        ]
        if self.keep_duplicates:
            yield [{**row, "keep_row_after_minhash_filtering": k} for row, k in zip(inputs, keep)]
        else:
            yield [row for row, k in zip(inputs, keep) if k]
