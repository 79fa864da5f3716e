"""``MinHashDedup``: near-duplicate text removal with MinHash + LSH, as a distributed Beam transform.

Example::

    MinHashDedup(threshold=0.8)                           # rows with `text`; near-duplicates of earlier rows go
    MinHashDedup(tokenizer="ngrams", n=5)                 # compare character 5-grams rather than words
    MinHashDedup(tokenizer="word_ngrams", n=3)            # compare runs of 3 words
    MinHashDedup(keep_duplicates=True, input_mappings={"text": "generation"})
    # every row kept, with `keep_row_after_minhash_filtering` (bool)

Each text becomes a set of shingles, as ``tokenizer`` says: ``"words"`` (the default, as distilabel's) the set of
its words and punctuation marks (``n`` is not used, as in distilabel); ``"ngrams"`` (distilabel's) the set of its
character ``n``-grams (``n`` defaults to 5, as in distilabel); ``"word_ngrams"`` (beam_distil's) the set of its runs
of ``n`` consecutive lower-cased words. Giving ``n`` without ``tokenizer`` means ``"word_ngrams"``: what
``MinHashDedup(n=3)`` meant in beam_distil before it had ``tokenizer`` (and what its older saved pipelines hold);
a pipeline distilabel saved always names its tokenizer. Its MinHash signature has ``num_perm``
values from hash functions seeded by ``seed``, and the signature is cut into ``bands`` bands of ``rows_per_band``
values: texts sharing a band become candidates, grouped by Beam. Candidates are verified by their exact Jaccard
similarity (``>= threshold``), so the result is the exact one whenever LSH finds the pair (the band defaults miss a
pair at the threshold with probability below 1/1000, and a more similar pair far less often).

A row is a duplicate iff a verified near-duplicate with a smaller row id exists: the first row of each group is
kept. (distilabel's ``MinHashDedup`` decides greedily in the order rows reach it and compares against kept rows
only; this rule needs no global state and gives the same result whenever similarity is transitive in a group.)

``storage``: distilabel keeps its LSH index in one process, in a dict or (``"disk"``, for datasets larger than
memory) in a DiskCache index on local disk. Here there is no index in any process: the band keys are grouped by
Beam, whose shuffle already spills to disk (on Dataflow, to its shuffle service), so both values are accepted and
run the same way.

Differences from distilabel's tokenizers: ``"words"`` splits on a regular expression (runs of Unicode word
characters, and each other non-space character), case-sensitive like nltk's ``word_tokenize``, which distilabel uses
and which needs nltk and its ``punkt_tab`` data on every worker; the two differ on contractions and a few quote
marks (``don't`` is ``don ' t`` here, ``do n't`` for nltk). With ``"ngrams"`` a text shorter than ``n`` characters
is one shingle of the whole text (distilabel's gives it no n-gram, so all short texts are duplicates of each
other).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, ClassVar, FrozenSet, Hashable, List, Literal, Optional

import apache_beam as beam
import numpy as np
from pydantic import Field, PositiveInt, model_validator

from beam_distil.rows import Row
from beam_distil.steps.base import Step, StepColumns, StepInput, StepOutput
from beam_distil.steps.dedup.lsh import LSHDedup, Scheme, WithRowIds, check_bands, optimal_bands

_WORD = re.compile(r"\w+", re.UNICODE)
# A word or a punctuation mark, as a token of distilabel's "words" tokenizer.
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_MERSENNE_PRIME = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)


def shingles(text: Any, n: int) -> FrozenSet[str]:
    """The word ``n``-grams of ``text`` (lower-cased words); a text shorter than ``n`` words is one shingle, and a
    text with no word (or not a string) the empty shingle, so that two empty texts are duplicates."""
    words = _WORD.findall(text.lower()) if isinstance(text, str) else []
    if len(words) <= n:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))


def character_ngrams(text: Any, n: int) -> FrozenSet[str]:
    """The character ``n``-grams of ``text`` as written; a text shorter than ``n`` characters is one shingle (so that
    two short texts are duplicates only when equal), and a value that is not a string the empty shingle."""
    characters = text if isinstance(text, str) else ""
    if len(characters) <= n:
        return frozenset([characters])
    return frozenset(characters[i : i + n] for i in range(len(characters) - n + 1))


def word_tokens(text: Any) -> FrozenSet[str]:
    """The words and punctuation marks of ``text``, as written (distilabel's ``"words"`` tokenizer); a text with none
    (or not a string) is the empty shingle, so that two empty texts are duplicates."""
    tokens = _TOKEN.findall(text) if isinstance(text, str) else []
    return frozenset(tokens) if tokens else frozenset([""])


Tokenizer = Literal["words", "ngrams", "word_ngrams"]

# distilabel's default n-gram size.
DEFAULT_N = 5


def text_shingles(text: Any, tokenizer: Tokenizer, n: Optional[int]) -> FrozenSet[str]:
    """The shingle set ``MinHashDedup`` compares for ``text`` (see the module docstring)."""
    if tokenizer == "words":
        return word_tokens(text)
    size = n if n is not None else DEFAULT_N
    return character_ngrams(text, size) if tokenizer == "ngrams" else shingles(text, size)


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
    def __init__(
        self,
        column: str,
        tokenizer: Tokenizer,
        n: Optional[int],
        num_perm: int,
        seed: int,
        bands: int,
        rows_per_band: int,
        threshold: float,
    ):
        self.column, self.tokenizer, self.n, self.num_perm, self.seed = column, tokenizer, n, num_perm, seed
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
        return text_shingles(row.get(self.column), self.tokenizer, self.n)

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
        tokenizer: ``"words"`` (the set of words, distilabel's default), ``"ngrams"`` (character n-grams, as
            distilabel's) or ``"word_ngrams"`` (runs of ``n`` words); ``n`` alone means ``"word_ngrams"``.
        n: characters per n-gram with ``"ngrams"``, words per shingle with ``"word_ngrams"``; not used by
            ``"words"`` (as in distilabel).
        num_perm: MinHash hash functions.
        seed: seeds the hash functions.
        storage: distilabel's choice of where its single-process LSH index lives (``"dict"`` or ``"disk"``); on
            Beam the index is Beam's own grouping, which spills to disk, so both run the same way.
        bands, rows_per_band: the LSH banding (``None``: chosen from ``threshold`` for recall).
        keep_duplicates: keep every row and say in ``keep_row_after_minhash_filtering`` which to keep.
    """

    threshold: float = Field(default=0.9, gt=0.0, le=1.0)
    tokenizer: Tokenizer = "words"
    n: Optional[PositiveInt] = DEFAULT_N
    num_perm: PositiveInt = 128
    seed: int = 1
    storage: Literal["dict", "disk"] = "dict"
    bands: Optional[PositiveInt] = None
    rows_per_band: Optional[PositiveInt] = None
    keep_duplicates: bool = False

    changes_row_count: ClassVar[bool] = True

    @model_validator(mode="before")
    @classmethod
    def _n_alone_means_word_ngrams(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("n") is not None and "tokenizer" not in data:
            return {**data, "tokenizer": "word_ngrams"}
        return data

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
            self.get_inputs_column(),
            self.tokenizer,
            self.n,
            self.num_perm,
            self.seed,
            bands,
            rows_per_band,
            self.threshold,
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
        features = [text_shingles(row.get("text"), self.tokenizer, self.n) for row in inputs]
        keep = [
            not any(jaccard(features[j], features[i]) >= self.threshold for j in range(i)) for i in range(len(inputs))
        ]
        if self.keep_duplicates:
            yield [{**row, "keep_row_after_minhash_filtering": k} for row, k in zip(inputs, keep)]
        else:
            yield [row for row, k in zip(inputs, keep) if k]
