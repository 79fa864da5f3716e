"""UltraFeedback: prompt building, lenient parsing of the judge's answer, and a run on Beam."""

from __future__ import annotations

import pickle

import pytest

from beam_distil.models import OpenAILLM
from beam_distil.pipeline import Pipeline
from beam_distil.steps.generators import LoadDataFromDicts
from beam_distil.steps.tasks import UltraFeedback

ASPECTS = ["overall-rating", "helpfulness", "honesty", "instruction-following", "truthfulness"]
TYPED = {"helpfulness", "truthfulness"}


def make(aspect="overall-rating", **kwargs):
    return UltraFeedback(llm=OpenAILLM(model="judge", base_url="http://127.0.0.1:1/v1", api_key="t"), aspect=aspect, **kwargs)


def section(number, rating, rationale, typed=False, type_="1, 3", type_rationale="kinds"):
    lines = [f"#### Output for Text {number}"]
    if typed:
        lines += [f"Type: {type_}", f"Rationale: {type_rationale}"]
    lines += [f"Rating: {rating}", f"Rationale: {rationale}"]
    return "\n".join(lines)


ROW = {"instruction": "What is 2+2?", "generations": ["4", "five", "22"]}


def test_outputs_per_aspect():
    assert make("overall-rating").outputs == ["ratings", "rationales", "model_name"]
    assert make("honesty").outputs == ["ratings", "rationales", "model_name"]
    assert make("helpfulness").outputs == ["types", "rationales", "ratings", "rationales-for-ratings", "model_name"]
    assert make("truthfulness").outputs == ["types", "rationales", "ratings", "rationales-for-ratings", "model_name"]
    assert make().aspect == "overall-rating"
    assert make().inputs == ["instruction", "generations"]
    with pytest.raises(ValueError):
        make("creativity")


@pytest.mark.parametrize("aspect", ASPECTS)
def test_format_input_numbers_the_generations(aspect):
    task = make(aspect)
    system, user = task.format_input(ROW)
    assert system["role"] == "system" and "3 candidate answers" in system["content"]
    assert user["role"] == "user"
    content = user["content"]
    annotation = content.split("## Annotation", 1)[1]
    assert "Instruction: What is 2+2?" in annotation
    assert "<text 1> 4\n<text 2> five\n<text 3> 22" in annotation
    for number in (1, 2, 3):
        assert f"#### Output for Text {number}" in content
    assert "#### Output for Text 4" not in content
    assert "Rating:" in content and "Rationale:" in content
    assert ("Type:" in content) == (aspect in TYPED)
    assert "integer from 1 to 5" in content


def test_format_input_uses_the_aspect_instructions():
    titles = {
        "overall-rating": "# Overall Quality Assessment",
        "helpfulness": "# Helpfulness and Informativeness Assessment",
        "honesty": "# Honesty and Uncertainty Assessment",
        "instruction-following": "# Instruction-Following Assessment",
        "truthfulness": "# Truthfulness and Hallucination Assessment",
    }
    contents = {aspect: make(aspect).format_input(ROW)[1]["content"] for aspect in ASPECTS}
    for aspect, title in titles.items():
        assert contents[aspect].startswith(title)
        assert all(other == aspect or title not in contents[other] for other in ASPECTS)
    assert "hallucination" in contents["truthfulness"].lower()


def test_a_missing_generation_is_shown_as_no_answer_and_never_rated():
    task = make()
    row = {"instruction": "q", "generations": ["a", None]}
    assert "<text 2> (no answer)" in task.format_input(row)[1]["content"]
    answer = section(1, 4, "fine") + "\n\n" + section(2, 5, "judge rated it anyway")
    assert task.format_output(answer, row) == {"ratings": [4, None], "rationales": ["fine", None]}


@pytest.mark.parametrize(
    "row, message",
    [
        ({"instruction": None, "generations": ["a"]}, "'instruction' must be a string"),
        ({"instruction": "q", "generations": "a"}, "'generations' must be a non-empty list"),
        ({"instruction": "q", "generations": []}, "'generations' must be a non-empty list"),
        ({"instruction": "q", "generations": ["a", 3]}, "must hold strings"),
        ({"instruction": "q"}, "no column 'generations'"),
    ],
)
def test_format_input_checks_types(row, message):
    with pytest.raises(ValueError, match=message):
        make().format_input(row)


@pytest.mark.parametrize("aspect", ["overall-rating", "honesty", "instruction-following"])
def test_parse_well_formed(aspect):
    answer = "\n\n".join([section(1, 5, "Correct and short."), section(2, 1, "Wrong\nover two lines."), section(3, "3", "Meh.")])
    assert make(aspect).format_output(answer, ROW) == {
        "ratings": [5, 1, 3],
        "rationales": ["Correct and short.", "Wrong\nover two lines.", "Meh."],
    }


@pytest.mark.parametrize("aspect", ["helpfulness", "truthfulness"])
def test_parse_well_formed_with_types(aspect):
    answer = "\n\n".join(
        [
            section(1, 5, "Right.", typed=True, type_="1, 2", type_rationale="Clear."),
            section(2, 2, "Wrong.", typed=True, type_="None", type_rationale="Nothing applies."),
            section(3, 3, "Ok.", typed=True, type_="3", type_rationale="Short."),
        ]
    )
    assert make(aspect).format_output(answer, ROW) == {
        "types": [1, None, 3],
        "rationales": ["Clear.", "Nothing applies.", "Short."],
        "ratings": [5, 2, 3],
        "rationales-for-ratings": ["Right.", "Wrong.", "Ok."],
    }


@pytest.mark.parametrize("aspect", ASPECTS)
def test_none_answer_gives_lists_of_none(aspect):
    result = make(aspect).format_output(None, ROW)
    expected = [c for c in make(aspect).outputs if c != "model_name"]
    assert set(result) == set(expected)
    assert all(value == [None, None, None] for value in result.values())


@pytest.mark.parametrize("aspect", ASPECTS)
@pytest.mark.parametrize(
    "answer",
    ["", "I cannot rate these.", "#### Output for Text 1\nRating:", "Rating: \nRationale: ", "#### Output for Text 9\nRating: 5"],
)
def test_malformed_answer_never_raises_and_gives_none(aspect, answer):
    result = make(aspect).format_output(answer, ROW)
    assert result["ratings"] == [None, None, None]
    assert all(len(value) == 3 for value in result.values())


@pytest.mark.parametrize("aspect", ASPECTS)
def test_partial_answer_fills_what_it_can(aspect):
    typed = aspect in TYPED
    # Text 2 is missing, text 3 is cut off in the middle of the rating line.
    answer = section(1, 4, "Good.", typed=typed) + "\n\n#### Output for Text 3\n" + ("Type: 1\nRationale: x\n" if typed else "") + "Rating:"
    result = make(aspect).format_output(answer, ROW)
    assert result["ratings"] == [4, None, None]
    key = "rationales-for-ratings" if typed else "rationales"
    assert result[key] == ["Good.", None, None]
    if typed:
        assert result["types"] == [1, None, 1]


def test_rating_values_out_of_range_or_not_numbers_are_none():
    values = ["N/A", "10", "0", "4/5", "**3**", "2.0", "4.5"]
    generations = [f"g{i}" for i in range(len(values))]
    answer = "\n\n".join(section(i + 1, value, "r") for i, value in enumerate(values))
    result = make().format_output(answer, {"instruction": "q", "generations": generations})
    assert result["ratings"] == [None, None, None, 4, 3, 2, None]


def test_lenient_headers_order_and_blank_line_fallback():
    task = make()
    # Sections out of order, header decorated, extra section ignored.
    answer = "**Output for Text 2:**\nRating: 2\nRationale: b\n\n### Output for Text 1\nRating: 5\nRationale: a\n\n#### Output for Text 4\nRating: 1\nRationale: extra"
    assert task.format_output(answer, {"generations": ["x", "y"]}) == {"ratings": [5, 2], "rationales": ["a", "b"]}
    # No headers: blocks in order, as distilabel splits on blank lines.
    answer = "Rating: 3\nRationale: first\n\nRating: 1\nRationale: second"
    assert task.format_output(answer, {"generations": ["x", "y", "z"]}) == {
        "ratings": [3, 1, None],
        "rationales": ["first", "second", None],
    }


def test_bad_generations_in_format_output_give_none_columns():
    assert make().format_output(section(1, 5, "a"), {"generations": "oops"}) == {"ratings": None, "rationales": None}


def test_the_task_pickles():
    task = make("truthfulness")
    task.format_input(ROW)
    clone = pickle.loads(pickle.dumps(task))
    assert clone.aspect == "truthfulness"
    assert clone.format_input(ROW) == task.format_input(ROW)


def _judge(messages):
    """Rates 5 a text containing 'good', 1 one containing 'bad', 3 otherwise."""
    content = messages[-1]["content"].split("## Annotation", 1)[1]
    texts = [line.split("> ", 1)[1] for line in content.splitlines() if line.startswith("<text ")]
    sections = []
    for number, text in enumerate(texts, start=1):
        rating = 5 if "good" in text else 1 if "bad" in text else 3
        sections.append(f"#### Output for Text {number}\nRating: {rating}\nRationale: saw {text!r}")
    return "\n\n".join(sections)


def test_ultrafeedback_on_beam(openai_server):
    openai_server.set_answer("judge", _judge)
    data = [
        {"instruction": "q1", "generations": ["a bad one", "a good one", "so-so"]},
        {"instruction": "q2", "generations": ["so-so", None]},
        {"instruction": None, "generations": ["unrated"]},
    ]
    with Pipeline("uf") as pipeline:
        load = LoadDataFromDicts(data=data)
        load >> UltraFeedback(name="uf", llm=OpenAILLM(model="judge", base_url=openai_server.base_url, api_key="t"))
    rows = pipeline.run(use_cache=False)["default"]["train"].to_list()
    rows = sorted(rows, key=lambda row: row["instruction"] or "~")
    assert rows[0]["ratings"] == [1, 5, 3]
    assert rows[0]["rationales"][1] == "saw 'a good one'"
    assert rows[0]["model_name"] == "judge"
    assert rows[1]["ratings"] == [3, None]
    assert rows[2]["ratings"] == [None]  # the row is kept, unrated
    assert "'instruction' must be a string" in rows[2]["distilabel_metadata"]["error_uf"]
    assert openai_server.request_count == 2


@pytest.mark.parametrize(
    "aspect, answer, expected",
    [
        ("honesty", "{ \n   random\n}", {"ratings": [None, None], "rationales": [None, None]}),
        (
            "honesty",
            '{"ratings": [1, 5], "rationales": ["r1", "r2"]}',
            {"ratings": [1, 5], "rationales": ["r1", "r2"]},
        ),
        (
            "helpfulness",
            "{ \n   random\n}",
            {"types": [None, None], "rationales": [None, None], "ratings": [None, None], "rationales-for-ratings": [None, None]},
        ),
        (  # the keys of distilabel's schema
            "helpfulness",
            '{"types": [1, null], "rationales": ["t1", "t2"], "ratings": [1, 5], "rationales_for_rating": ["r1", "r2"]}',
            {"types": [1, None], "rationales": ["t1", "t2"], "ratings": [1, 5], "rationales-for-ratings": ["r1", "r2"]},
        ),
        (  # the column names, as distilabel's own tests write them
            "truthfulness",
            '{"ratings": [1, 5], "rationales": ["t1", "t2"], "rationales-for-ratings": ["r1", "r2"], "types": [1, 2]}',
            {"types": [1, 2], "rationales": ["t1", "t2"], "ratings": [1, 5], "rationales-for-ratings": ["r1", "r2"]},
        ),
        (  # wrong JSON types give None where they are, not a crash
            "truthfulness",
            '{"ratings": ["x", 4], "rationales": [3, "t2"], "rationales_for_rating": ["r1"], "types": "1"}',
            {"types": [None, None], "rationales": [None, "t2"], "ratings": [None, 4], "rationales-for-ratings": ["r1", None]},
        ),
    ],
)
def test_json_answers_keep_distilabels_types(aspect, answer, expected):
    task = make(aspect, use_default_structured_output=True)
    assert task.format_output(answer, {"instruction": "2+2?", "generations": ["4", "something weird"]}) == expected


def test_the_json_schema_of_the_typed_aspects_asks_for_types_and_both_rationales():
    schema = make("truthfulness", use_default_structured_output=True).get_structured_output()
    assert schema["required"] == ["types", "ratings", "rationales", "rationales_for_rating"]
    assert schema["properties"]["types"]["items"] == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert make("honesty").get_structured_output()["required"] == ["ratings", "rationales"]
    prompt = make("helpfulness", use_default_structured_output=True).format_input(ROW)[1]["content"]
    assert '"types"' in prompt and '"rationales_for_rating"' in prompt


def test_typed_json_answers_on_beam(openai_server):
    answer = '{"types": [2, 1], "rationales": ["t1", "t2"], "ratings": [4, 2], "rationales_for_rating": ["r1", "r2"]}'
    openai_server.set_answer("judge", lambda messages: answer)
    with Pipeline("p") as pipeline:
        LoadDataFromDicts(data=[{"instruction": "q", "generations": ["a", "b"]}]) >> UltraFeedback(
            name="uf",
            aspect="helpfulness",
            use_default_structured_output=True,
            llm=OpenAILLM(model="judge", base_url=openai_server.base_url, api_key="t"),
        )
    [row] = pipeline.run()["default"]["train"].to_list()
    assert (row["types"], row["rationales"], row["ratings"], row["rationales-for-ratings"]) == (
        [2, 1], ["t1", "t2"], [4, 2], ["r1", "r2"]
    )
    sent = openai_server.requests[0]["response_format"]["json_schema"]["schema"]
    assert sent == make("helpfulness").get_structured_output()
