"""EvolInstruct and EvolInstructGenerator: mutation prompts, seeded picks, parsing, sequential calls on Beam."""

from __future__ import annotations

import pickle
import re

import pytest

from beam_distil.models import OpenAILLM
from beam_distil.pipeline import Pipeline
from beam_distil.steps.generators import LoadDataFromDicts
from beam_distil.steps.tasks import EvolInstruct, EvolInstructGenerator
from beam_distil.steps.tasks.evol_instruct import (
    GENERATION_MUTATION_TEMPLATES,
    MUTATION_TEMPLATES,
    parse_evolved_instruction,
)

DEAD_URL = "http://127.0.0.1:1/v1"


def llm(url=DEAD_URL, model="m"):
    return OpenAILLM(model=model, base_url=url, api_key="t")


def given_prompt(content: str) -> str:
    """The instruction inside a mutation prompt."""
    return re.search(r"#(?:The )?Given Prompt#:\n(.*?)\n#(?:Rewritten|Created) Prompt#:", content, re.S).group(1)


def evolving_answer(messages):
    """A mutation prompt gets its instruction with '+' appended; anything else is answered."""
    content = messages[-1]["content"]
    if "Given Prompt#:" in content:
        return f"#Rewritten Prompt#:\n{given_prompt(content)}+"
    return f"answer to {content}"


def run(server, task_factory, data):
    with Pipeline("p") as pipeline:
        LoadDataFromDicts(data=data) >> task_factory(llm(server.base_url))
    return pipeline.run()["default"]["train"].to_list()


def test_columns_follow_the_flags():
    assert EvolInstruct(llm=llm(), num_evolutions=1).outputs == ["evolved_instruction", "model_name"]
    assert EvolInstruct(llm=llm(), num_evolutions=1, generate_answers=True).outputs == [
        "evolved_instruction", "model_name", "answer"
    ]
    assert EvolInstruct(llm=llm(), num_evolutions=1, store_evolutions=True, generate_answers=True).outputs == [
        "evolved_instructions", "model_name", "answers"
    ]
    assert EvolInstruct(llm=llm(), num_evolutions=1).inputs == ["instruction"]
    assert EvolInstruct.changes_row_count is False
    with pytest.raises(ValueError, match="no <PROMPT> placeholder"):
        EvolInstruct(llm=llm(), num_evolutions=1, mutation_templates={"X": "no placeholder"})


def test_format_input_wraps_the_instruction_in_a_seeded_mutation():
    task = EvolInstruct(llm=llm(), num_evolutions=1)
    assert task.format_input("plain") == [{"role": "user", "content": "plain"}]
    [message] = task.format_input({"instruction": "Explain tides."})
    assert message["role"] == "user"
    assert given_prompt(message["content"]) == "Explain tides."
    assert message["content"] in {t.replace("<PROMPT>", "Explain tides.") for t in MUTATION_TEMPLATES.values()}
    assert task.format_input({"instruction": "Explain tides."}) == [message]  # reproducible
    pickled = pickle.loads(pickle.dumps(task))
    assert pickled.format_input({"instruction": "Explain tides."}) == [message]
    # the pick depends on the seed and the row, not on global state
    rows = [{"instruction": f"q{i}"} for i in range(20)]
    picks = lambda seed: [EvolInstruct(llm=llm(), num_evolutions=1, seed=seed).format_input(r)[0]["content"] for r in rows]
    assert picks(1) == picks(1)
    assert picks(1) != picks(2)
    assert len({content.split("\n")[3] for content in picks(1)}) > 1  # several mutations are used
    with pytest.raises(ValueError, match="column 'instruction' must be a string"):
        task.format_input({"instruction": None})


def test_a_placeholder_inside_the_instruction_is_left_alone():
    task = EvolInstruct(llm=llm(), num_evolutions=1, mutation_templates={"ONLY": "A <PROMPT> B"})
    assert task.format_input({"instruction": "x <PROMPT> y"})[0]["content"] == "A x <PROMPT> y B"


def test_parse_evolved_instruction():
    assert parse_evolved_instruction("#Rewritten Prompt#:\n  Harder question?  ") == "Harder question?"
    assert parse_evolved_instruction("#Created Prompt#: new one") == "new one"
    assert parse_evolved_instruction("no marker at all") == "no marker at all"  # malformed: kept whole
    assert parse_evolved_instruction("#Rewritten Prompt#:   ") is None
    assert parse_evolved_instruction("") is None
    assert parse_evolved_instruction(None) is None


def test_format_output():
    last = EvolInstruct(llm=llm(), num_evolutions=2, generate_answers=True)
    assert last.format_output(["a", "b"], ["x", "y"]) == {"evolved_instruction": "b", "answer": "y"}
    assert last.format_output(None) == {"evolved_instruction": None, "answer": None}
    stored = EvolInstruct(llm=llm(), num_evolutions=2, store_evolutions=True)
    assert stored.format_output(["a", "b"]) == {"evolved_instructions": ["a", "b"]}
    assert stored.format_output("a") == {"evolved_instructions": ["a"]}
    assert stored.format_output(None) == {"evolved_instructions": None}


def test_evolves_each_row_on_beam(openai_server):
    openai_server.set_answer("m", evolving_answer)
    rows = run(openai_server, lambda l: EvolInstruct(llm=l, num_evolutions=3), [{"instruction": "a"}, {"instruction": "b"}])
    assert [row["evolved_instruction"] for row in rows] == ["a+++", "b+++"]
    assert all(row["model_name"] == "m" for row in rows)
    assert openai_server.request_count == 6
    # distilabel's layout: the tokens of each evolution call (the server counts words), no raw prompts or answers
    meta = rows[0]["distilabel_metadata"]
    assert list(meta) == ["statistics_instruction_evol_instruct_0"]
    assert meta["statistics_instruction_evol_instruct_0"]["output_tokens"] == [3, 3, 3]
    assert len(meta["statistics_instruction_evol_instruct_0"]["input_tokens"]) == 3
    # the first call of a row is the one format_input shows
    first = EvolInstruct(llm=llm(), num_evolutions=3).format_input({"instruction": "a"})
    assert first in [request["messages"] for request in openai_server.requests]


def test_every_call_goes_through_the_response_cache(openai_server):
    """A re-run pays nothing; after a run that failed half-way, only the calls never answered are sent."""
    state = {"fail_second_evolution": True}

    def answer(messages):
        content = messages[-1]["content"]
        if state["fail_second_evolution"] and "Given Prompt#:" in content and given_prompt(content).endswith("+"):
            return "#Rewritten Prompt#:"  # an empty evolution: the row stops after its first call
        return evolving_answer(messages)

    openai_server.set_answer("m", answer)
    data = [{"instruction": "a"}, {"instruction": "b"}]
    evolve = lambda l: EvolInstruct(llm=l, num_evolutions=2, generate_answers=True)

    failed = run(openai_server, evolve, data)
    assert [row["evolved_instruction"] for row in failed] == [None, None]
    assert openai_server.request_count == 4  # two calls per row, the second one empty

    state["fail_second_evolution"] = False
    finished = run(openai_server, evolve, data)
    assert [row["evolved_instruction"] for row in finished] == ["a++", "b++"]
    # Per row: the first evolution came from the cache; the empty answer was not kept, so it was asked again.
    assert openai_server.request_count == 4 + 2 * 2
    again = run(openai_server, evolve, data)
    assert openai_server.request_count == 8
    assert again == finished


def test_store_evolutions_with_answers_and_original(openai_server):
    openai_server.set_answer("m", evolving_answer)
    rows = run(
        openai_server,
        lambda l: EvolInstruct(
            llm=l, num_evolutions=2, store_evolutions=True, generate_answers=True, include_original_instruction=True
        ),
        [{"instruction": "a"}],
    )
    assert rows[0]["evolved_instructions"] == ["a", "a+", "a++"]
    assert rows[0]["answers"] == ["answer to a", "answer to a+", "answer to a++"]
    assert openai_server.request_count == 5


def test_an_empty_evolution_keeps_the_row_with_its_error(openai_server):
    def answer(messages):
        content = messages[-1]["content"]
        if "Given Prompt#:" in content and given_prompt(content).startswith("bad"):
            return "#Rewritten Prompt#:"
        return evolving_answer(messages)

    openai_server.set_answer("m", answer)
    rows = run(
        openai_server,
        lambda l: EvolInstruct(llm=l, num_evolutions=2, generate_answers=True),
        [{"instruction": "good"}, {"instruction": "bad"}],
    )
    assert rows[0]["evolved_instruction"] == "good++" and rows[0]["answer"] == "answer to good++"
    assert rows[1]["evolved_instruction"] is None and rows[1]["answer"] is None
    assert "empty instruction" in rows[1]["distilabel_metadata"]["error_evol_instruct_0"]


def test_process_outside_beam(openai_server):
    openai_server.set_answer("m", evolving_answer)
    task = EvolInstruct(llm=llm(openai_server.base_url), num_evolutions=1, add_raw_input=False)
    task.load()
    [rows] = list(task.process([{"instruction": "x"}, {"instruction": "y"}]))
    task.unload()
    assert [row["evolved_instruction"] for row in rows] == ["x+", "y+"]
    assert list(rows[0]["distilabel_metadata"]) == ["statistics_instruction_evol_instruct_0"]


def test_answers_metadata_is_the_answer_calls_statistics_as_in_distilabel(openai_server):
    openai_server.set_answer("m", evolving_answer)
    rows = run(openai_server, lambda l: EvolInstruct(llm=l, num_evolutions=2, generate_answers=True), [{"instruction": "a"}])
    assert rows[0]["answer"] == "answer to a++"
    statistics = rows[0]["distilabel_metadata"]["statistics_answer_evol_instruct_0"]
    assert list(rows[0]["distilabel_metadata"]) == ["statistics_answer_evol_instruct_0"]
    assert statistics["output_tokens"] == [3]  # "answer to a++"
    assert len(statistics["input_tokens"]) == 1


# -- EvolInstructGenerator ------------------------------------------------------------------------------


def generator_answer(messages):
    """A fresh start gets a too-short question; an evolution makes it long enough."""
    content = messages[-1]["content"]
    if content.startswith("Write one question"):
        return "Short?"
    if "Given Prompt#:" in content:
        return f"#Rewritten Prompt#:\n{given_prompt(content)} And explain it in detail."
    return f"answer to {content}"


def make_generator(url, **kwargs):
    return EvolInstructGenerator(llm=llm(url), min_length=20, max_length=200, **kwargs)


def test_generator_columns_and_templates():
    gen = make_generator(DEAD_URL, num_instructions=2)
    assert gen.outputs == ["instruction", "model_name"]
    assert make_generator(DEAD_URL, num_instructions=2, generate_answers=True).outputs == ["instruction", "model_name", "answer"]
    assert "FRESH_START" in GENERATION_MUTATION_TEMPLATES and gen.is_generator
    pickle.loads(pickle.dumps(gen))


def test_generator_evolves_until_long_enough(openai_server):
    openai_server.set_answer("m", generator_answer)
    gen = make_generator(openai_server.base_url, num_instructions=3, seed=7)
    gen.load()
    batches = list(gen.process())
    first_prompts = [r["messages"][0]["content"] for r in openai_server.requests]
    again = list(gen.process())
    gen.unload()
    rows = [row for batch, _ in batches for row in batch]
    assert len(rows) == 3
    assert batches[-1][1] is True and all(last is False for _, last in batches[:-1])
    for row in rows:
        assert row["instruction"].startswith("Short?") and row["instruction"].endswith("in detail.")
        assert 20 <= len(row["instruction"]) <= 200
        assert row["model_name"] == "m"
    assert first_prompts[0].startswith("Write one question or request containing")
    # same seed, same prompts and rows
    assert [r["messages"][0]["content"] for r in openai_server.requests[len(first_prompts):]] == first_prompts
    assert again == batches


def test_generator_gives_up_after_max_rounds(openai_server):
    openai_server.set_answer("m", "x")
    gen = make_generator(openai_server.base_url, num_instructions=2, max_rounds=3)
    gen.load()
    batches = list(gen.process())
    assert batches == [([], True)]
    assert openai_server.request_count == 6


def test_generator_in_a_pipeline_with_answers(openai_server):
    openai_server.set_answer("m", generator_answer)
    with Pipeline("p") as pipeline:
        make_generator(openai_server.base_url, num_instructions=2, generate_answers=True)
    rows = pipeline.run()["default"]["train"].to_list()
    assert len(rows) == 2
    for row in rows:
        assert row["answer"] == f"answer to {row['instruction']}"
        assert row["instruction"].endswith("in detail.")
        # distilabel's layout: the answer call's tokens (the server counts words)
        assert row["distilabel_metadata"] == {
            "statistics_answer_evol_instruct_generator_0": {
                "input_tokens": [len(row["instruction"].split())],
                "output_tokens": [len(row["answer"].split())],
            }
        }


def test_generator_rows_carry_the_statistics_of_the_calls_that_made_them(openai_server):
    openai_server.set_answer("m", generator_answer)
    gen = make_generator(openai_server.base_url, num_instructions=3, seed=7)
    gen.load()
    try:
        rows = [row for batch, _ in gen.process() for row in batch]
    finally:
        gen.unload()
    for row in rows:
        assert list(row["distilabel_metadata"]) == [f"statistics_instruction_{gen.name}"]
        statistics = row["distilabel_metadata"][f"statistics_instruction_{gen.name}"]
        # a fresh start ("Short?", 1 word) then the evolution that made it long enough, at least
        assert len(statistics["input_tokens"]) == len(statistics["output_tokens"]) >= 2
        assert statistics["output_tokens"][0] == 1
        assert statistics["output_tokens"][-1] == len(row["instruction"].split()) + 2  # "#Rewritten Prompt#:" too
    assert sum(len(row["distilabel_metadata"][f"statistics_instruction_{gen.name}"]["input_tokens"]) for row in rows) <= openai_server.request_count
