"""PrometheusEval: rubric validation, the four prompts, lenient `[RESULT]` parsing, and runs on Beam."""

from __future__ import annotations

import pickle

import pytest

from beam_distil.models import OpenAILLM
from beam_distil.pipeline import Pipeline
from beam_distil.steps.generators import LoadDataFromDicts
from beam_distil.steps.tasks import PrometheusEval
from beam_distil.steps.tasks.prometheus_eval import _DEFAULT_RUBRICS, DEFAULT_RUBRICS

ABS = {"instruction": "What is 2+2?", "generation": "4", "reference": "Four."}
REL = {"instruction": "What is 2+2?", "generations": ["4", "5"], "reference": "Four."}
CUSTOM = "[Is it short?]\nScore 1: Long.\nScore 2: Longish.\nScore 3: Medium.\nScore 4: Shortish.\nScore 5: Short."


def make(mode="absolute", rubric="helpfulness", **kwargs):
    llm = OpenAILLM(model="judge", base_url="http://127.0.0.1:1/v1", api_key="t")
    return PrometheusEval(llm=llm, mode=mode, rubric=rubric, **kwargs)


def test_default_rubrics_and_validation():
    assert set(DEFAULT_RUBRICS) == {"helpfulness", "harmlessness", "honesty", "factual-validity", "reasoning"}
    for name in DEFAULT_RUBRICS:
        make(rubric=name)
    assert make(rubric="brevity", rubrics={"brevity": CUSTOM}).rubric == "brevity"
    with pytest.raises(ValueError, match="not among the available rubrics"):
        make(rubric="creativity")
    with pytest.raises(ValueError, match="rubric format"):
        make(rubric="x", rubrics={"x": "Be nice."})
    with pytest.raises(ValueError, match="non-empty"):
        make(rubric="x", rubrics={})
    with pytest.raises(ValueError):
        make(mode="pairwise")


def test_default_rubrics_under_distilabels_name():
    assert _DEFAULT_RUBRICS is DEFAULT_RUBRICS
    task = make(rubric="honesty")
    assert task.rubrics == _DEFAULT_RUBRICS
    assert _DEFAULT_RUBRICS["honesty"] in task.format_input(ABS)[-1]["content"]

@pytest.mark.parametrize(
    "mode, reference, inputs",
    [
        ("absolute", False, ["instruction", "generation"]),
        ("absolute", True, ["instruction", "generation", "reference"]),
        ("relative", False, ["instruction", "generations"]),
        ("relative", True, ["instruction", "generations", "reference"]),
    ],
)
def test_columns(mode, reference, inputs):
    task = make(mode, reference=reference)
    assert task.inputs == inputs
    assert task.outputs == ["feedback", "result", "model_name"]


@pytest.mark.parametrize("reference", [False, True])
def test_absolute_prompt(reference):
    system, user = make("absolute", rubric="honesty", reference=reference).format_input(ABS)
    assert system["role"] == "system" and "single response" in system["content"]
    content = user["content"]
    assert "###Response to evaluate:\n4\n" in content
    assert "###The instruction to evaluate:\nWhat is 2+2?\n" in content
    assert DEFAULT_RUBRICS["honesty"] in content
    assert "[RESULT] (an integer from 1 to 5)" in content
    assert ("###Reference Answer (Score 5):\nFour." in content) == reference
    assert content.endswith("###Feedback: ")


@pytest.mark.parametrize("reference", [False, True])
def test_relative_prompt(reference):
    system, user = make("relative", rubric="reasoning", reference=reference).format_input(REL)
    assert "compare two responses" in system["content"]
    content = user["content"]
    assert "###Response A:\n4\n\n###Response B:\n5\n" in content
    assert DEFAULT_RUBRICS["reasoning"] in content
    assert "[RESULT] (A or B)" in content
    assert ("###Reference Answer:\nFour." in content) == reference


@pytest.mark.parametrize(
    "mode, row, message",
    [
        ("absolute", {"instruction": "q", "generation": None}, "'generation' must be a string"),
        ("absolute", {"instruction": 3, "generation": "g"}, "'instruction' must be a string"),
        ("relative", {"instruction": "q", "generations": ["a"]}, "exactly 2 strings"),
        ("relative", {"instruction": "q", "generations": ["a", None]}, "exactly 2 strings"),
        ("relative", {"instruction": "q", "generations": "ab"}, "exactly 2 strings"),
    ],
)
def test_format_input_checks_types(mode, row, message):
    with pytest.raises(ValueError, match=message):
        make(mode).format_input(row)


def test_a_reference_of_the_wrong_type_is_an_error():
    with pytest.raises(ValueError, match="'reference' must be a string"):
        make(reference=True).format_input({"instruction": "q", "generation": "g", "reference": None})


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Feedback: Correct and concise. [RESULT] 5", {"feedback": "Correct and concise.", "result": 5}),
        ("The answer is wrong.\n[RESULT] 1", {"feedback": "The answer is wrong.", "result": 1}),
        ("**Feedback:** ok [RESULT] **3**", {"feedback": "ok", "result": 3}),
        ("Feedback: ok [RESULT] 4/5", {"feedback": "ok", "result": 4}),
        ("Feedback: ok [RESULT] (2).", {"feedback": "ok", "result": 2}),
    ],
)
def test_parse_absolute(answer, expected):
    assert make("absolute").format_output(answer, ABS) == expected


@pytest.mark.parametrize(
    "answer",
    ["", "Feedback: fine", "Feedback: x [RESULT] 6", "Feedback: x [RESULT] 0", "Feedback: x [RESULT] great",
     "Feedback: x [RESULT] 4 [RESULT] 5", "Feedback: x [RESULT]", "Feedback: x [RESULT] 4.5", "Feedback: x [RESULT] A"],
)
def test_parse_absolute_malformed(answer):
    assert make("absolute").format_output(answer, ABS) == {"feedback": None, "result": None}


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Feedback: A is right. [RESULT] A", {"feedback": "A is right.", "result": "A"}),
        ("Feedback: B wins [RESULT] Response B", {"feedback": "B wins", "result": "B"}),
        ("Feedback: B wins [RESULT] **B**\n", {"feedback": "B wins", "result": "B"}),
    ],
)
def test_parse_relative(answer, expected):
    assert make("relative").format_output(answer, REL) == expected


@pytest.mark.parametrize("answer", ["Feedback: x [RESULT] C", "Feedback: x [RESULT] 4", "Feedback: x [RESULT] a or b", "x"])
def test_parse_relative_malformed(answer):
    assert make("relative").format_output(answer, REL) == {"feedback": None, "result": None}


@pytest.mark.parametrize("mode", ["absolute", "relative"])
def test_none_answer(mode):
    assert make(mode).format_output(None, ABS) == {"feedback": None, "result": None}


def test_pickles():
    task = make("relative", reference=True, rubric="brevity", rubrics={"brevity": CUSTOM})
    clone = pickle.loads(pickle.dumps(task))
    assert clone.format_input(REL) == task.format_input(REL)
    assert CUSTOM in clone.format_input(REL)[1]["content"]


def _judge(messages):
    content = messages[-1]["content"]
    if "###Response A:" in content:
        a = content.split("###Response A:\n", 1)[1].split("\n", 1)[0]
        return f"Feedback: compared. [RESULT] {'A' if a == '4' else 'B'}"
    response = content.split("###Response to evaluate:\n", 1)[1].split("\n", 1)[0]
    return "Feedback: correct. [RESULT] 5" if response == "4" else "Feedback: wrong. [RESULT] 1"


def test_prometheus_on_beam(openai_server):
    openai_server.set_answer("judge", _judge)
    llm = OpenAILLM(model="judge", base_url=openai_server.base_url, api_key="t")
    data = [
        {"id": 0, "instruction": "2+2?", "generation": "4", "generations": ["4", "5"], "reference": "4"},
        {"id": 1, "instruction": "2+2?", "generation": "5", "generations": ["5", "4"], "reference": "4"},
        {"id": 2, "instruction": "2+2?", "generation": None, "generations": ["5", None], "reference": "4"},
    ]
    with Pipeline("prometheus") as pipeline:
        load = LoadDataFromDicts(data=data)
        absolute = PrometheusEval(name="abs", llm=llm, mode="absolute", rubric="factual-validity", reference=True)
        relative = PrometheusEval(
            name="rel", llm=llm, mode="relative", rubric="helpfulness",
            output_mappings={"feedback": "rel_feedback", "result": "rel_result"},
        )
        # Relative first: its output_mappings would also rename the absolute step's feedback/result columns.
        load >> relative >> absolute
    rows = sorted(pipeline.run(use_cache=False)["default"]["train"].to_list(), key=lambda row: row["id"])
    assert [(row["result"], row["feedback"]) for row in rows] == [(5, "correct."), (1, "wrong."), (None, None)]
    assert [row["rel_result"] for row in rows] == ["A", "B", None]
    assert rows[0]["rel_feedback"] == "compared."
    metadata = rows[2]["distilabel_metadata"]
    assert "'generation' must be a string" in metadata["error_abs"]
    assert "exactly 2 strings" in metadata["error_rel"]
    assert openai_server.request_count == 4
    bodies = openai_server.requests
    assert sum("###Reference Answer (Score 5):\n4" in body["messages"][-1]["content"] for body in bodies) == 2


def test_a_missing_reference_is_a_key_error_as_in_distilabel():
    with pytest.raises(KeyError, match="reference"):
        make(reference=True).format_input({"instruction": "A", "generation": "B"})
    with pytest.raises(KeyError, match="generations"):
        make(mode="relative").format_input({"instruction": "A"})
    with pytest.raises(ValueError, match="'generation' must be a string"):
        make().format_input({"instruction": "A", "generation": 1})


def test_a_row_without_its_reference_is_kept_with_the_reason(openai_server):
    openai_server.set_answer("judge", lambda messages: "Feedback: fine [RESULT] 4")
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "q", "generation": "g", "reference": "r"}, {"instruction": "q", "generation": "g"}])
        load >> PrometheusEval(
            name="judge", mode="absolute", rubric="helpfulness", reference=True,
            llm=OpenAILLM(model="judge", base_url=openai_server.base_url, api_key="t"),
        )
    rows = pipeline.run()["default"]["train"].to_list()
    assert [row["result"] for row in rows] == [4, None]
    assert "no column 'reference'" in rows[1]["distilabel_metadata"]["error_judge"]
    assert openai_server.request_count == 1
