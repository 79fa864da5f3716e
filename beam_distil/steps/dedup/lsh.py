"""Distributed near-duplicate detection on ``(row_id, row)`` PCollections: LSH buckets grouped by Beam, candidate
pairs verified exactly, and the "keep the first" rule.

Nothing here holds every row in one place:

1. each row gives its feature (a shingle set, a unit vector) and one key per LSH band;
2. ``GroupByKey`` on the band keys gives buckets of row ids; every bucket gives its pairs ``(a, b)``, ``a < b``;
3. ``Distinct`` pairs are joined with ``a``'s feature (``CoGroupByKey`` on ``a``), then with row ``b`` itself
   (``CoGroupByKey`` on ``b``), where the exact similarity is computed;
4. a row is a duplicate iff a verified similar row with a smaller row id exists (so the first row of every group
   of near-duplicates is kept, and no global state such as connected components is needed).

A ``Scheme`` says what the feature, the band keys and the exact similarity are (MinHash over shingles, random
hyperplanes over embeddings).
"""

from __future__ import annotations

import itertools
import random
from abc import ABC, abstractmethod
from typing import Any, Dict, Hashable, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_distil.rows import KeyedRow, Row, RowId


class Scheme(ABC):
    """Feature, LSH band keys and exact verification of one kind of near-duplicate. Must pickle; ``setup`` runs
    once per worker before use (precomputed hash parameters, hyperplanes)."""

    def setup(self) -> None:
        pass

    @abstractmethod
    def feature(self, row: Row) -> Any:
        """What ``similar`` compares (and band keys are made of), read from one row."""

    @abstractmethod
    def band_keys(self, feature: Any) -> List[Hashable]:
        """One deterministic key per LSH band; rows sharing any key become candidates."""

    @abstractmethod
    def similar(self, a: Any, b: Any) -> bool:
        """The exact test a candidate pair must pass."""


class _SchemeDoFn(beam.DoFn):
    def __init__(self, scheme: Scheme) -> None:
        self._scheme = scheme

    def setup(self) -> None:
        self._scheme.setup()


class _BandKeys(_SchemeDoFn):
    def process(self, element: KeyedRow) -> Iterator[Tuple[Hashable, RowId]]:
        row_id, row = element
        for key in self._scheme.band_keys(self._scheme.feature(row)):
            yield key, row_id


class _Features(_SchemeDoFn):
    def process(self, element: KeyedRow) -> Iterator[Tuple[RowId, Any]]:
        row_id, row = element
        yield row_id, self._scheme.feature(row)


def _bucket_pairs(element: Tuple[Hashable, Iterable[RowId]]) -> Iterator[Tuple[RowId, RowId]]:
    ids = sorted(set(element[1]))
    yield from itertools.combinations(ids, 2)


def _attach_earlier_feature(element: Tuple[RowId, Dict[str, List[Any]]]) -> Iterator[Tuple[RowId, Tuple[RowId, Any]]]:
    row_id, grouped = element
    if not grouped["later"] or not grouped["feature"]:
        return
    feature = grouped["feature"][0]
    for later in grouped["later"]:
        yield later, (row_id, feature)


class _Decide(_SchemeDoFn):
    """Row ``b`` and its candidate earlier rows ``(a, feature_a)``: keep iff none is verified similar."""

    def __init__(self, scheme: Scheme, step_name: str, keep_duplicates: bool, column: str) -> None:
        super().__init__(scheme)
        self._keep_duplicates = keep_duplicates
        self._column = column
        self._candidates = Metrics.counter(step_name, "candidate_pairs")
        self._verified = Metrics.counter(step_name, "duplicate_pairs")
        self._dropped = Metrics.counter(step_name, "duplicates")

    def process(self, element: Tuple[RowId, Dict[str, List[Any]]]) -> Iterator[KeyedRow]:
        row_id, grouped = element
        for row in grouped["row"]:
            earlier = grouped["earlier"]
            duplicate = False
            if earlier:
                feature = self._scheme.feature(row)
                for _, other in sorted(earlier, key=lambda pair: pair[0]):
                    self._candidates.inc()
                    if self._scheme.similar(other, feature):
                        self._verified.inc()
                        duplicate = True
                        break
            if duplicate:
                self._dropped.inc()
            yield from keep_or_mark(row_id, row, not duplicate, self._keep_duplicates, self._column)


def keep_or_mark(row_id: RowId, row: Row, keep: bool, keep_duplicates: bool, column: str) -> Iterator[KeyedRow]:
    """The ``keep_duplicates`` rule: mark every row with ``column`` or pass only the rows to keep."""
    if keep_duplicates:
        yield row_id, {**row, column: keep}
    elif keep:
        yield row_id, row


class LSHDedup(beam.PTransform):
    """``PCollection[(row_id, row)]`` -> the same rows less (or marked as) near-duplicates of earlier rows."""

    def __init__(self, scheme: Scheme, step_name: str, keep_duplicates: bool, column: str) -> None:
        super().__init__()
        self._scheme = scheme
        self._step_name = step_name
        self._keep_duplicates = keep_duplicates
        self._column = column

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        scheme = self._scheme
        pairs = (
            rows
            | "BandKeys" >> beam.ParDo(_BandKeys(scheme))
            | "Buckets" >> beam.GroupByKey()
            | "CandidatePairs" >> beam.FlatMap(_bucket_pairs)
            | "DistinctPairs" >> beam.Distinct()
        )
        features = rows | "Features" >> beam.ParDo(_Features(scheme))
        earlier = (
            {"feature": features, "later": pairs}
            | "JoinEarlierFeature" >> beam.CoGroupByKey()
            | "ToLaterRow" >> beam.FlatMap(_attach_earlier_feature)
        )
        return (
            {"row": rows, "earlier": earlier}
            | "JoinCandidates" >> beam.CoGroupByKey()
            | "Decide" >> beam.ParDo(_Decide(scheme, self._step_name, self._keep_duplicates, self._column))
        )


class _RandomRowIds(beam.DoFn):
    """Row ids for Beam-native use (``rows | step``), where rows come without ids: random, so which of a group of
    duplicates is kept is arbitrary there."""

    def process(self, row: Row) -> Iterator[KeyedRow]:
        yield (random.getrandbits(62),), row


class WithRowIds(beam.PTransform):
    """Beam-native use of a dedup step: dict rows in, dict rows out (ids made up for the dedup itself)."""

    def __init__(self, keyed: beam.PTransform) -> None:
        super().__init__()
        self._keyed = keyed

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        return rows | "AddRowIds" >> beam.ParDo(_RandomRowIds()) | "Dedup" >> self._keyed | "DropRowIds" >> beam.Values()


def optimal_bands(num_hashes: int, collision_probability: float, max_miss: float = 1e-3) -> Tuple[int, int]:
    """``(bands, rows_per_band)`` with ``bands * rows_per_band <= num_hashes`` favouring recall: the most rows per
    band (fewest false candidates) for which a pair at the threshold is missed with probability ``<= max_miss``."""
    best = (num_hashes, 1)
    for rows_per_band in range(1, num_hashes + 1):
        bands = num_hashes // rows_per_band
        miss = (1.0 - collision_probability**rows_per_band) ** bands
        if miss <= max_miss:
            best = (bands, rows_per_band)
    return best


def check_bands(bands: Optional[int], rows_per_band: Optional[int], num_hashes: int) -> None:
    if (bands is None) != (rows_per_band is None):
        raise ValueError("give both `bands` and `rows_per_band`, or neither (chosen from the threshold)")
    if bands is not None and rows_per_band is not None and bands * rows_per_band > num_hashes:
        raise ValueError(f"bands * rows_per_band = {bands * rows_per_band} exceeds the {num_hashes} hashes")
