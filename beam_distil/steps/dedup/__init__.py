"""Deduplication steps, distributed with Beam: ``MinHashDedup`` (near-duplicate texts) and ``ExactDedup``."""

from beam_distil.steps.dedup.exact import ExactDedup
from beam_distil.steps.dedup.minhash import (
    MinHashDedup,
    character_ngrams,
    jaccard,
    shingles,
    text_shingles,
    word_tokens,
)

__all__ = ["ExactDedup", "MinHashDedup", "character_ngrams", "jaccard", "shingles", "text_shingles", "word_tokens"]
