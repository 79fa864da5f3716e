"""EvolQuality: mutation prompts with instruction and response, seeded picks, evolutions on Beam."""

from __future__ import annotations

import re

import pytest

from beam_distil.models import OpenAILLM
from beam_distil.pipeline import Pipeline
from beam_distil.steps.generators import LoadDataFromDicts
from beam_distil.steps.tasks import EvolQuality
from beam_distil.steps.tasks.evol_quality import MUTATION_TEMPLATES


def llm(url="http://127.0.0.1:1/v1"):
    return OpenAILLM(model="m", base_url=url, api_key="t")


def given_response(content):
    return re.search(r"#Given Response#:\n(.*?)\n#Rewritten Response#:", content, re.S).group(1)


def improving_answer(messages):
    return given_response(messages[-1]["content"]) + "!"


def run(server, task_factory, data):
    with Pipeline("p") as pipeline:
        LoadDataFromDicts(data=data) >> task_factory(llm(server.base_url))
    return pipeline.run()["default"]["train"].to_list()


def test_columns():
    assert EvolQuality(llm=llm(), num_evolutions=1).inputs == ["instruction", "response"]
    assert EvolQuality(llm=llm(), num_evolutions=1).outputs == ["evolved_response", "model_name"]
    assert EvolQuality(llm=llm(), num_evolutions=1, store_evolutions=True).outputs == ["evolved_responses", "model_name"]
    with pytest.raises(ValueError, match="no <RESPONSE> placeholder"):
        EvolQuality(llm=llm(), num_evolutions=1, mutation_templates={"X": "<PROMPT> only"})


def test_format_input_holds_instruction_and_whole_response():
    task = EvolQuality(llm=llm(), num_evolutions=1)
    [message] = task.format_input({"instruction": "Why is the sky blue?", "response": "Rayleigh scattering."})
    assert message["role"] == "user"
    assert "#Given Prompt#:\nWhy is the sky blue?\n" in message["content"]
    assert given_response(message["content"]) == "Rayleigh scattering."  # the whole response, not its last char
    expected = {
        t.replace("<PROMPT>", "Why is the sky blue?").replace("<RESPONSE>", "Rayleigh scattering.")
        for t in MUTATION_TEMPLATES.values()
    }
    assert message["content"] in expected
    assert task.format_input({"instruction": "Why is the sky blue?", "response": "Rayleigh scattering."}) == [message]
    rows = [{"instruction": f"q{i}", "response": "r"} for i in range(20)]
    picks = lambda seed: [EvolQuality(llm=llm(), num_evolutions=1, seed=seed).format_input(r) for r in rows]
    assert picks(3) == picks(3) and picks(3) != picks(4)
    with pytest.raises(ValueError, match="column 'response' must be a string"):
        task.format_input({"instruction": "q", "response": None})


def test_format_output():
    task = EvolQuality(llm=llm(), num_evolutions=2)
    assert task.format_output(["a", "b"]) == {"evolved_response": "b"}
    assert task.format_output("only") == {"evolved_response": "only"}
    assert task.format_output(None) == {"evolved_response": None}
    stored = EvolQuality(llm=llm(), num_evolutions=2, store_evolutions=True)
    assert stored.format_output(["a", "b"]) == {"evolved_responses": ["a", "b"]}
    assert stored.format_output(None) == {"evolved_responses": None}


def test_evolves_responses_on_beam(openai_server):
    openai_server.set_answer("m", improving_answer)
    rows = run(
        openai_server,
        lambda l: EvolQuality(llm=l, num_evolutions=2),
        [{"instruction": "q1", "response": "r1"}, {"instruction": "q2", "response": "r2"}],
    )
    assert [row["evolved_response"] for row in rows] == ["r1!!", "r2!!"]
    assert [row["response"] for row in rows] == ["r1", "r2"]
    assert all(row["model_name"] == "m" for row in rows)
    assert openai_server.request_count == 4
    # distilabel's layout: only the tokens of each evolution call (the server counts words)
    assert rows[0]["distilabel_metadata"] == {
        "statistics_evol_quality_0": {
            "input_tokens": rows[0]["distilabel_metadata"]["statistics_evol_quality_0"]["input_tokens"],
            "output_tokens": [1, 1],
        }
    }
    assert len(rows[0]["distilabel_metadata"]["statistics_evol_quality_0"]["input_tokens"]) == 2


def test_store_evolutions_with_the_original(openai_server):
    openai_server.set_answer("m", improving_answer)
    rows = run(
        openai_server,
        lambda l: EvolQuality(llm=l, num_evolutions=2, store_evolutions=True, include_original_response=True),
        [{"instruction": "q", "response": "r"}],
    )
    assert rows[0]["evolved_responses"] == ["r", "r!", "r!!"]


def test_a_row_that_cannot_be_formatted_is_kept(openai_server):
    openai_server.set_answer("m", improving_answer)
    rows = run(
        openai_server,
        lambda l: EvolQuality(llm=l, num_evolutions=1),
        [{"instruction": "q", "response": "r"}, {"instruction": "q", "response": None}],
    )
    assert rows[0]["evolved_response"] == "r!"
    assert rows[1]["evolved_response"] is None
    assert "column 'response' must be a string" in rows[1]["distilabel_metadata"]["error_evol_quality_0"]
    assert openai_server.request_count == 1
