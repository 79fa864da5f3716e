"""InstructionBacktranslation: prompt, lenient `Score: n` parsing, and a run on Beam."""

from __future__ import annotations

import pickle

import pytest

from beam_distil.models import OpenAILLM
from beam_distil.pipeline import Pipeline
from beam_distil.steps.generators import LoadDataFromDicts
from beam_distil.steps.tasks import InstructionBacktranslation

ROW = {"instruction": "What is 3 times 20?", "generation": "It's 60."}


def make(**kwargs):
    llm = OpenAILLM(model="rater", base_url="http://127.0.0.1:1/v1", api_key="t")
    return InstructionBacktranslation(llm=llm, **kwargs)


def test_columns():
    assert make().inputs == ["instruction", "generation"]
    assert make().outputs == ["score", "reason", "model_name"]


def test_format_input():
    [message] = make().format_input(ROW)
    assert message["role"] == "user"
    content = message["content"]
    assert "<instruction>\nWhat is 3 times 20?\n</instruction>" in content
    assert "<answer>\nIt's 60.\n</answer>" in content
    for point in range(1, 6):
        assert f"\n{point}: " in content
    assert '"Score: <rating>"' in content


@pytest.mark.parametrize("row", [{"instruction": None, "generation": "g"}, {"instruction": "q", "generation": None}, {}])
def test_format_input_checks_types(row):
    with pytest.raises(ValueError, match="must be a string|has no column"):
        make().format_input(row)


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Concise and correct.\nScore: 5", {"score": 5, "reason": "Concise and correct."}),
        ("Reasoning: Off-topic.\n\nScore: 1", {"score": 1, "reason": "Off-topic."}),
        ("It reads like a blog.\n**Score:** 3/5", {"score": 3, "reason": "It reads like a blog."}),
        ("A score: 2 seemed fair at first, but it is complete.\nScore: 4",
         {"score": 4, "reason": "A score: 2 seemed fair at first, but it is complete."}),
        ("Score: 4", {"score": 4, "reason": None}),
    ],
)
def test_parse(answer, expected):
    assert make().format_output(answer, ROW) == expected


@pytest.mark.parametrize("answer", ["", "Good answer.", "Score: 10", "Score: 0", "Score: high", "Score: 4.5", "Rating: 4"])
def test_parse_malformed(answer):
    assert make().format_output(answer, ROW) == {"score": None, "reason": None}


def test_none_answer():
    assert make().format_output(None, ROW) == {"score": None, "reason": None}


def test_pickles():
    task = make()
    assert pickle.loads(pickle.dumps(task)).format_input(ROW) == task.format_input(ROW)


def _rater(messages):
    answer = messages[-1]["content"].split("<answer>\n", 1)[1].split("\n</answer>", 1)[0]
    if answer == "???":
        return "I refuse to rate this."
    return f"Looked at {answer!r}.\nScore: {5 if '60' in answer else 2}"


def test_instruction_backtranslation_on_beam(openai_server):
    openai_server.set_answer("rater", _rater)
    data = [
        {"instruction": "3*20?", "generation": "60"},
        {"instruction": "3*20?", "generation": "about 50"},
        {"instruction": "3*20?", "generation": "???"},
        {"instruction": "3*20?", "generation": None},
    ]
    with Pipeline("backtranslation") as pipeline:
        LoadDataFromDicts(data=data) >> InstructionBacktranslation(
            name="ib", llm=OpenAILLM(model="rater", base_url=openai_server.base_url, api_key="t")
        )
    rows = {row["generation"]: row for row in pipeline.run(use_cache=False)["default"]["train"].to_list()}
    assert (rows["60"]["score"], rows["60"]["reason"]) == (5, "Looked at '60'.")
    assert (rows["about 50"]["score"], rows["about 50"]["reason"]) == (2, "Looked at 'about 50'.")
    assert (rows["???"]["score"], rows["???"]["reason"]) == (None, None)
    assert rows[None]["score"] is None
    assert "'generation' must be a string" in rows[None]["distilabel_metadata"]["error_ib"]
    assert rows["60"]["model_name"] == "rater"
    assert openai_server.request_count == 3
