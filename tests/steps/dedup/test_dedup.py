"""MinHashDedup and ExactDedup: distributed results equal an exact single-machine reference."""

from __future__ import annotations

import random
from typing import Any, Dict, List

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from pydantic import ValidationError

from beam_distil.pipeline import Pipeline
from beam_distil.steps import LoadDataFromDicts
from beam_distil.steps.columns import KeepColumns
from beam_distil.steps.dedup import (
    ExactDedup,
    MinHashDedup,
    character_ngrams,
    jaccard,
    shingles,
    text_shingles,
    word_tokens,
)
from beam_distil.steps.dedup.lsh import optimal_bands

THRESHOLD = 0.7
N = 3


def make_corpus(count: int = 300, seed: int = 7) -> List[str]:
    """Random texts, about a third of them near-duplicates of an earlier text (a few words changed, dropped or
    added, some exact copies, some past the threshold)."""
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(400)]
    texts: List[str] = []
    while len(texts) < count:
        if texts and rng.random() < 0.35:
            words = rng.choice(texts).split()
            for _ in range(rng.choice([0, 0, 1, 1, 2, 3, 5, 8])):
                action = rng.random()
                position = rng.randrange(len(words))
                if action < 0.4:
                    words[position] = rng.choice(vocabulary)
                elif action < 0.7 and len(words) > 5:
                    del words[position]
                else:
                    words.insert(position, rng.choice(vocabulary))
            texts.append(" ".join(words))
        else:
            texts.append(" ".join(rng.choice(vocabulary) for _ in range(rng.randint(20, 40))))
    return texts


def reference_keep(texts: List[str], threshold: float = THRESHOLD, n: int = N) -> List[bool]:
    """Exact pairwise Jaccard: row i is kept iff no earlier row is a near-duplicate."""
    sets = [shingles(text, n) for text in texts]
    return [not any(jaccard(sets[j], sets[i]) >= threshold for j in range(i)) for i in range(len(texts))]


CORPUS = make_corpus()
REFERENCE = reference_keep(CORPUS)


def test_corpus_has_planted_duplicates_and_borderline_pairs() -> None:
    dropped = REFERENCE.count(False)
    assert 50 <= dropped <= 150
    sets = [shingles(text, N) for text in CORPUS]
    similarities = [jaccard(sets[i], sets[j]) for i in range(len(sets)) for j in range(i)]
    # Pairs just below and just above the threshold exist, so a sloppy estimate would show.
    assert any(THRESHOLD - 0.15 <= s < THRESHOLD for s in similarities)
    assert any(THRESHOLD <= s < THRESHOLD + 0.1 for s in similarities)


def test_shingles_and_jaccard() -> None:
    assert shingles("The cat, the HAT!", 2) == {"the cat", "cat the", "the hat"}
    assert shingles("two words", 3) == {"two words"}
    assert shingles("", 3) == shingles(None, 3) == {""}
    assert jaccard(frozenset("ab"), frozenset("bc")) == pytest.approx(1 / 3)


def test_optimal_bands_favour_recall() -> None:
    bands, rows = optimal_bands(128, 0.7**1)
    assert bands * rows <= 128
    assert (1 - 0.7**rows) ** bands <= 1e-3
    assert (1 - 0.7 ** (rows + 1)) ** (128 // (rows + 1)) > 1e-3


def test_band_options_are_checked() -> None:
    with pytest.raises(ValidationError, match="both"):
        MinHashDedup(bands=4)
    with pytest.raises(ValidationError, match="exceeds"):
        MinHashDedup(bands=20, rows_per_band=10, num_perm=128)


def _run_pipeline(step_kwargs: Dict[str, Any], options: Any = None, texts: List[str] = CORPUS) -> List[Dict[str, Any]]:
    with Pipeline("minhash-dedup") as pipeline:
        load = LoadDataFromDicts(data=[{"id": i, "text": text} for i, text in enumerate(texts)], batch_size=37)
        dedup = MinHashDedup(**step_kwargs)
        load >> dedup
    distiset = pipeline.run(options=options, use_cache=False)
    return distiset["default"]["train"].to_list()


@pytest.mark.parametrize(
    "options",
    [None, ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]],
    ids=["in_memory", "multi_processing"],
)
def test_minhash_dedup_equals_exact_reference(options: Any) -> None:
    rows = _run_pipeline({"threshold": THRESHOLD, "n": N, "num_perm": 128, "seed": 3}, options)
    kept = [row["id"] for row in rows]
    assert sorted(kept) == [i for i, keep in enumerate(REFERENCE) if keep]
    assert "keep_row_after_minhash_filtering" not in rows[0]


def test_minhash_dedup_keep_duplicates_marks_rows() -> None:
    rows = _run_pipeline({"threshold": THRESHOLD, "n": N, "keep_duplicates": True})
    assert len(rows) == len(CORPUS)
    marks = {row["id"]: row["keep_row_after_minhash_filtering"] for row in rows}
    assert [marks[i] for i in range(len(CORPUS))] == REFERENCE


def test_minhash_dedup_with_few_bands_misses_pairs_but_never_drops_a_non_duplicate() -> None:
    # One band of 16 rows: LSH misses most pairs. Verification keeps false positives out whatever the banding.
    rows = _run_pipeline({"threshold": THRESHOLD, "n": N, "bands": 1, "rows_per_band": 16, "keep_duplicates": True})
    marks = {row["id"]: row["keep_row_after_minhash_filtering"] for row in rows}
    assert all(marks[i] for i, keep in enumerate(REFERENCE) if keep)
    assert sum(not marks[i] for i in marks) < REFERENCE.count(False)


def test_minhash_dedup_on_keyed_rows_in_beam_and_input_mappings() -> None:
    texts = ["a b c d e f g h", "a b c d e f g x", "q r s t u v w", "a b c d e f g h"]
    step = MinHashDedup(threshold=0.7, n=2, input_mappings={"text": "generation"})
    keyed = [((7, i), {"generation": text}) for i, text in enumerate(texts)]
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create(keyed) | step.keyed_transform()
        assert_that(out, equal_to([keyed[0], keyed[2]]))


def test_minhash_dedup_beam_native_keeps_one_of_each_group() -> None:
    texts = ["one two three four five", "one two three four five", "six seven eight nine ten"]
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create([{"text": t} for t in texts]) | "dedup" >> MinHashDedup(threshold=0.9, n=2)
        assert_that(out, equal_to([{"text": texts[0]}, {"text": texts[2]}]))


def test_minhash_dedup_process_and_validation_columns() -> None:
    step = MinHashDedup(threshold=0.7, n=2, keep_duplicates=True)
    rows = next(step.process([{"text": "a b c d"}, {"text": "a b c d"}, {"text": "x y"}]))
    assert [row["keep_row_after_minhash_filtering"] for row in rows] == [True, False, True]
    assert step.columns_after(["text"]) == ["text", "keep_row_after_minhash_filtering"]
    assert MinHashDedup().columns_after(["text"]) == ["text"]
    with Pipeline("bad") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        load >> MinHashDedup() >> KeepColumns(columns=["instruction", "keep_row_after_minhash_filtering"])
    with pytest.raises(ValueError, match="text"):
        pipeline.run(use_cache=False)



# -- distilabel's tokenizer= and storage= ---------------------------------------------------------------------

# distilabel's own test texts: 0 and 1 have the same words; 2 and 3 too, but for the case of "Test"/"Document".
DISTILABEL_TEXTS = [
    "This is a test document.",
    "This document is a test.",
    "Test document for duplication.",
    "Document for duplication test.",
    "This is another unique document.",
]


def test_tokenizers_as_distilabel() -> None:
    assert word_tokens(DISTILABEL_TEXTS[0]) == {".", "This", "a", "document", "is", "test"}  # distilabel's expectation
    assert word_tokens("") == word_tokens(None) == {""}
    assert all(len(gram) == 3 for gram in character_ngrams(DISTILABEL_TEXTS[0], 3))
    assert character_ngrams("abcdef", 5) == {"abcde", "bcdef"}
    assert text_shingles("A b A", "words", 3) == {"A", "b"}  # `n` is not used by "words", as in distilabel
    assert text_shingles("A b c", "word_ngrams", 2) == {"a b", "b c"}
    assert text_shingles("abcdef", "ngrams", None) == {"abcde", "bcdef"}  # distilabel's default n=5


def test_defaults_and_options_are_distilabels() -> None:
    step = MinHashDedup()
    assert (step.tokenizer, step.n, step.storage, step.threshold, step.num_perm, step.seed) == ("words", 5, "dict", 0.9, 128, 1)
    assert MinHashDedup(tokenizer="ngrams", n=3, storage="disk").storage == "disk"
    # `n` alone keeps beam_distil's word shingles; with a tokenizer it is distilabel's.
    assert MinHashDedup(n=3).tokenizer == "word_ngrams"
    assert MinHashDedup(tokenizer="words", n=3).tokenizer == "words"
    with pytest.raises(ValidationError, match="tokenizer"):
        MinHashDedup(tokenizer="sentencepiece")
    with pytest.raises(ValidationError, match="storage"):
        MinHashDedup(storage="redis")


@pytest.mark.parametrize(
    "threshold, kept, storage", [(0.1, 1, "dict"), (0.9, 4, "dict"), (0.9, 4, "disk")]
)
def test_distilabels_own_cases(threshold: float, kept: int, storage: str) -> None:
    step = MinHashDedup(threshold=threshold, storage=storage, keep_duplicates=True)
    rows = next(step.process([{"text": text} for text in DISTILABEL_TEXTS]))
    assert sum(row["keep_row_after_minhash_filtering"] for row in rows) == kept


@pytest.mark.parametrize("storage", ["dict", "disk"])
def test_character_ngrams_on_beam_equal_the_exact_reference(storage: str) -> None:
    texts = CORPUS[:150]
    sets = [character_ngrams(text, 4) for text in texts]
    reference = [not any(jaccard(sets[j], sets[i]) >= THRESHOLD for j in range(i)) for i in range(len(texts))]
    assert 0 < reference.count(False) < len(texts) // 2
    rows = _run_pipeline({"threshold": THRESHOLD, "tokenizer": "ngrams", "n": 4, "storage": storage}, texts=texts)
    assert sorted(row["id"] for row in rows) == [i for i, keep in enumerate(reference) if keep]


def test_a_minhash_dedup_saved_by_distilabel_loads_with_its_tokenizer() -> None:
    # What distilabel 1.5.3 writes for MinHashDedup(tokenizer="words", storage="disk"): every field, `n` included.
    data = {
        "name": "minhash_dedup_0", "input_mappings": {}, "output_mappings": {}, "input_batch_size": 50,
        "num_perm": 128, "seed": 1, "tokenizer": "words", "n": 5, "threshold": 0.9, "storage": "disk",
        "runtime_parameters_info": [],
        "type_info": {"module": "distilabel.steps.filtering.minhash", "name": "MinHashDedup"},
    }
    step = MinHashDedup.from_dict(data)
    assert (step.tokenizer, step.n, step.storage) == ("words", 5, "disk")
    assert step.dump()["type_info"] == data["type_info"]
    rows = _run_pipeline({**step.model_dump(include={"tokenizer", "n", "storage", "threshold"}), "keep_duplicates": True},
                         texts=DISTILABEL_TEXTS)
    assert [row["keep_row_after_minhash_filtering"] for row in rows] == [True, False, True, True, True]


# -- ExactDedup -------------------------------------------------------------------------------------------


def test_exact_dedup_keeps_the_first_row_of_each_value() -> None:
    rng = random.Random(1)
    data = [{"id": i, "a": rng.randint(0, 9), "b": rng.choice(["x", "y"]), "c": rng.random()} for i in range(120)]
    expected, seen = [], set()
    for row in data:
        if (row["a"], row["b"]) not in seen:
            seen.add((row["a"], row["b"]))
            expected.append(row["id"])
    with Pipeline("exact") as pipeline:
        load = LoadDataFromDicts(data=data, batch_size=16)
        load >> ExactDedup(columns=["a", "b"])
    rows = pipeline.run(options=["--direct_num_workers=2"], use_cache=False)["default"]["train"].to_list()
    assert sorted(row["id"] for row in rows) == expected
    assert len(expected) < len(data)


def test_exact_dedup_keep_duplicates_and_nested_values() -> None:
    data = [
        {"id": 0, "m": {"k": [1, 2]}},
        {"id": 1, "m": {"k": [1, 3]}},
        {"id": 2, "m": {"k": [1, 2]}},
        {"id": 3, "m": None},
        {"id": 4, "m": None},
    ]
    with Pipeline("exact-mark") as pipeline:
        load = LoadDataFromDicts(data=data)
        load >> ExactDedup(columns=["m"], keep_duplicates=True)
    rows = pipeline.run(use_cache=False)["default"]["train"].to_list()
    assert {row["id"]: row["keep_row_after_exact_dedup"] for row in rows} == {
        0: True, 1: True, 2: False, 3: True, 4: False
    }


def test_exact_dedup_process() -> None:
    step = ExactDedup(columns=["t"])
    assert next(step.process([{"t": 1}, {"t": 2}, {"t": 1}])) == [{"t": 1}, {"t": 2}]
    with pytest.raises(ValidationError):
        ExactDedup(columns=[])
