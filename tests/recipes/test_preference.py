"""The preference recipe (the README's main job) end to end: against the local server, and on the embedded model."""

from __future__ import annotations

import json
import re

from beam_distil.distiset import Distiset
from pipelines import preference


def judge_by_length(messages):
    """Rates each text by its length (longer is better), in the Markdown answer format."""
    texts = [t for t in re.findall(r"<text \d+> (.*)", messages[-1]["content"]) if not t.startswith("[Text")]
    sections = []
    for index, text in enumerate(texts, start=1):
        rating = min(5, max(1, len(text) // 10))
        sections.append(f"#### Output for Text {index}\nRating: {rating}\nRationale: length {len(text)}")
    return "\n\n".join(sections)


def test_recipe_against_the_local_server(openai_server, tmp_path, monkeypatch, capsys):
    openai_server.set_answer("short", lambda messages: "Ok.")
    openai_server.set_answer("medium", lambda messages: "A reasonable answer here.")
    openai_server.set_answer("long", lambda messages: "A much longer and more detailed answer to the question.")
    openai_server.set_answer("judge", judge_by_length)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-123")
    instructions = tmp_path / "instructions.jsonl"
    instructions.write_text("".join(json.dumps({"instruction": f"question {i}"}) + "\n" for i in range(6)))
    output = tmp_path / "out"

    preference.main(
        [
            "--backend", "openai", "--base-url", openai_server.base_url,
            "--models", "short,medium,long", "--judge", "judge",
            "--instructions", str(instructions), "--output", str(output),
        ]
    )

    rows = Distiset.load_from_disk(str(output))["default"]["train"].to_list()
    assert [row["instruction"] for row in rows] == [f"question {i}" for i in range(6)]
    for row in rows:
        assert row["generation_models"] == ["short", "medium", "long"]
        assert row["ratings"] == [1, 2, 5]
        assert row["chosen_model"] == "long" and row["chosen_rating"] == 5
        assert row["rejected_model"] == "short" and row["rejected_rating"] == 1
        assert row["chosen"][-1] == {"role": "assistant", "content": "A much longer and more detailed answer to the question."}
        assert row["chosen"][0] == {"role": "user", "content": row["instruction"]}
    assert openai_server.requests_by_model == {"short": 6, "medium": 6, "long": 6, "judge": 6}
    assert "6 rows, 6 with a chosen/rejected pair." in capsys.readouterr().out


def test_recipe_offline_on_the_embedded_model(tmp_path):
    output = tmp_path / "out"
    preference.main(["--num-rows", "2", "--max-new-tokens", "12", "--output", str(output)])

    rows = Distiset.load_from_disk(str(output))["default"]["train"].to_list()
    assert len(rows) == 2
    for row in rows:
        assert len(row["generations"]) == 2 and all(isinstance(g, str) for g in row["generations"])
        assert len(row["ratings"]) == 2
        assert all(rating is None or 1 <= rating <= 5 for rating in row["ratings"])
        assert row["model_name"] == "SmolLM2-135M-Instruct.Q4_1"


def test_config_file_supplies_options(tmp_path):
    config = tmp_path / "preference.yaml"
    config.write_text("backend: openai\nmodels: [a, b]\njudge: j\nnum_rows: 3\n")
    args, beam_options = preference.parse_args(["--config", str(config), "--direct_num_workers=3"])
    assert (args.backend, args.models, args.judge, args.num_rows) == ("openai", ["a", "b"], "j", 3)
    assert beam_options == ["--direct_num_workers=3"]
