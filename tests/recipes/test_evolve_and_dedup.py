"""The evolve-and-dedup recipe end to end against the local OpenAI-compatible server."""

from __future__ import annotations

import json
import re

import pytest

from beam_distil.distiset import Distiset
from beam_distil.pipeline import Pipeline
from pipelines import evolve_and_dedup


def evolve(messages):
    """Questions 2k and 2k+1 evolve to the same instruction up to one word: near-duplicates."""
    number = int(re.search(r"question (\d+)", messages[-1]["content"]).group(1))
    topic = number // 2
    tail = "carefully" if number % 2 else "clearly"
    return f"Explain in great detail how topic {topic} works in everyday practice and why it matters so much today {tail}"


def answer(messages):
    return f"Answer to: {messages[-1]['content'][:40]}"


def score(messages):
    count = len(re.findall(r"^\[\d+\] ", messages[-1]["content"], flags=re.M))
    return "\n".join(f"[{k}] Score: {k + 2}" for k in range(1, count + 1))


@pytest.fixture
def instructions(tmp_path):
    path = tmp_path / "instructions.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"question {i}"}) + "\n" for i in range(6)))
    return path


def _serve(openai_server, monkeypatch):
    openai_server.set_answer("evolver", evolve)
    openai_server.set_answer("writer", answer)
    openai_server.set_answer("scorer", score)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-123")


def _args(openai_server, instructions, output, *extra):
    return [
        "--backend", "openai", "--base-url", openai_server.base_url,
        "--evol-model", "evolver", "--model", "writer", "--scorer-model", "scorer",
        "--instructions", str(instructions), "--output", str(output),
        "--threshold", "0.8", *extra,
    ]


def test_recipe_evolves_answers_scores_and_dedups(openai_server, instructions, tmp_path, monkeypatch, capsys):
    _serve(openai_server, monkeypatch)
    output = tmp_path / "out"
    evolve_and_dedup.main(_args(openai_server, instructions, output, "--num-generations", "2"))

    rows = Distiset.load_from_disk(str(output))["default"]["train"].to_list()
    # One row of each near-duplicate pair survives: the first (even) question.
    assert sorted(row["original_instruction"] for row in rows) == ["question 0", "question 2", "question 4"]
    for row in rows:
        assert row["instruction"] == evolve([{"content": row["original_instruction"]}])
        assert row["generation"] == [f"Answer to: {row['instruction'][:40]}"] * 2
        assert row["scores"] == [3.0, 4.0]
        assert row["model_name"] == "scorer"
        assert "keep_row_after_minhash_filtering" not in row
    assert openai_server.requests_by_model["evolver"] == 6
    assert openai_server.requests_by_model["scorer"] == 6
    assert "3 rows after near-duplicate filtering." in capsys.readouterr().out


def test_recipe_complexity_scorer_and_keep_duplicates(openai_server, instructions, tmp_path, monkeypatch):
    _serve(openai_server, monkeypatch)
    output = tmp_path / "out"
    evolve_and_dedup.main(_args(openai_server, instructions, output, "--scorer", "complexity", "--keep-duplicates"))

    rows = Distiset.load_from_disk(str(output))["default"]["train"].to_list()
    assert len(rows) == 6
    marks = {row["original_instruction"]: row["keep_row_after_minhash_filtering"] for row in rows}
    assert marks == {f"question {i}": i % 2 == 0 for i in range(6)}
    for row in rows:
        assert row["instructions"] == [row["original_instruction"], row["instruction"]]
        assert row["generation"] == [f"Answer to: {row['instruction'][:40]}"]  # one generation, as a list
        assert row["scores"] == [3.0, 4.0]


def test_defaults_use_the_embedded_model():
    args, beam_options = evolve_and_dedup.parse_args(["--direct_num_workers=3"])
    assert (args.backend, args.model, args.max_new_tokens, args.scorer) == ("llamacpp", "default", 48, "quality")
    assert beam_options == ["--direct_num_workers=3"]
    pipeline = evolve_and_dedup.build_pipeline(args)
    names = [type(step).__name__ for step in pipeline.dag.steps.values()]
    assert names == [
        "LoadDataFromDicts", "EvolInstruct", "TextGeneration", "PrepareForScoring", "QualityScorer", "MinHashDedup"
    ]
    assert type(pipeline.dag.steps["evol_instruct"].llm).__name__ == "LlamaCppLLM"


def test_the_recipes_own_step_is_registered_so_its_saved_pipeline_loads(tmp_path):
    args, _ = evolve_and_dedup.parse_args([])
    path = tmp_path / "pipeline.yaml"
    evolve_and_dedup.build_pipeline(args).save(path)

    loaded = Pipeline.from_file(path)

    assert type(loaded.dag.steps["prepare_for_scoring"]).__name__ == "PrepareForScoring"
