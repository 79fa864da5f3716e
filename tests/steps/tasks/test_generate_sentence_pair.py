"""GenerateSentencePair: system prompt per action, section parsing, JSON answers and a run on Beam."""

from __future__ import annotations

import json

import pytest

from beam_distil.models import OpenAILLM
from beam_distil.pipeline import Pipeline
from beam_distil.steps.generators import LoadDataFromDicts
from beam_distil.steps.tasks import GenerateSentencePair
from beam_distil.steps.tasks.generate_sentence_pair import (
    CONTEXT_INTRO,
    NEGATIVE_STYLE,
    POSITIVE_NEGATIVE_SYSTEM_PROMPT,
    POSITIVE_SYSTEM_PROMPT,
)


def make(**kwargs):
    kwargs.setdefault("action", "paraphrase")
    return GenerateSentencePair(llm=OpenAILLM(model="m", base_url="http://127.0.0.1:1/v1", api_key="t"), **kwargs)


def test_columns():
    assert make().inputs == ["anchor"]
    assert make().outputs == ["positive", "model_name"]
    assert make(triplet=True).outputs == ["positive", "negative", "model_name"]
    with pytest.raises(ValueError):
        make(action="summarize")


@pytest.mark.parametrize(
    "action,sentence",
    [
        ("paraphrase", "must paraphrase the anchor"),
        ("semantically-similar", "must be semantically similar to the anchor"),
        ("query", "must be a query for the anchor"),
        ("answer", "must be an answer for the anchor"),
    ],
)
def test_system_prompt_names_the_action(action, sentence):
    system, user = make(action=action).format_input({"anchor": "Cats sleep a lot."})
    assert system["role"] == "system" and sentence in system["content"]
    assert "`## Positive`" in system["content"] and "## Negative" not in system["content"]
    assert user == {"role": "user", "content": "## Anchor\n\nCats sleep a lot.\n"}


def test_triplet_context_and_hard_negative():
    system, user = make(triplet=True, context="Pet care").format_input({"anchor": "A"})
    assert "`## Positive` and `## Negative`" in system["content"]
    assert "must not be related" in system["content"] and "hard negative" not in system["content"]
    assert "context" in system["content"]
    assert user["content"] == "## Context\n\nPet care\n\n## Anchor\n\nA\n"
    hard, _ = make(triplet=True, hard_negative=True).format_input({"anchor": "A"})
    assert "'hard negative'" in hard["content"]
    assert "context" not in hard["content"]
    with pytest.raises(ValueError, match="column 'anchor' must be a string"):
        make().format_input({"anchor": None})



@pytest.mark.parametrize("context", ["", "Pet care"])
def test_system_prompt_is_built_from_the_module_templates(context):
    """The templates under distilabel's names give exactly the system prompt the task sends."""
    intro = CONTEXT_INTRO if context else ""
    pair, _ = make(action="query", context=context).format_input({"anchor": "A"})
    assert pair["content"] == POSITIVE_SYSTEM_PROMPT.format(action_sentence="be a query for", context=intro)
    triplet, _ = make(triplet=True, hard_negative=True, context=context).format_input({"anchor": "A"})
    assert triplet["content"] == POSITIVE_NEGATIVE_SYSTEM_PROMPT.format(
        action_sentence="paraphrase", context=intro, negative_style=NEGATIVE_STYLE["hard-negative"]
    )
    assert (CONTEXT_INTRO.strip() in triplet["content"]) == bool(context)


def test_format_output_sections():
    pair = make()
    assert pair.format_output("## Positive\nDogs nap often.\n") == {"positive": "Dogs nap often."}
    assert pair.format_output("no sections here") == {"positive": None}
    assert pair.format_output(None) == {"positive": None}
    triplet = make(triplet=True)
    assert triplet.format_output("## Positive\n  P text \n\n## Negative\nN text\n") == {
        "positive": "P text", "negative": "N text"
    }
    assert triplet.format_output("## Positive\nonly positive") == {"positive": "only positive", "negative": None}
    assert triplet.format_output("garbage") == {"positive": None, "negative": None}
    assert triplet.format_output(None) == {"positive": None, "negative": None}


def test_structured_output():
    task = make(triplet=True, use_default_structured_output=True)
    schema = task.get_structured_output()
    assert schema["required"] == ["positive", "negative"]
    assert make().get_structured_output()["required"] == ["positive"]
    assert task.format_output(json.dumps({"positive": "p", "negative": "n"})) == {"positive": "p", "negative": "n"}
    assert task.format_output("{not json") == {"positive": None, "negative": None}
    assert task.format_output(json.dumps(["p"])) == {"positive": None, "negative": None}
    assert task.format_output(json.dumps({"positive": "p", "negative": 3})) == {"positive": "p", "negative": None}


def test_run_on_beam(openai_server):
    def answer(messages):
        anchor = messages[-1]["content"].split("## Anchor\n\n")[1].strip()
        if anchor == "broken":
            return "I cannot do that."
        return f"## Positive\nlike {anchor}\n## Negative\nunlike {anchor}"

    openai_server.set_answer("m", answer)
    with Pipeline("p") as pipeline:
        LoadDataFromDicts(data=[{"anchor": "a"}, {"anchor": "broken"}, {"anchor": "b"}]) >> GenerateSentencePair(
            llm=OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t"), action="paraphrase", triplet=True
        )
    rows = pipeline.run()["default"]["train"].to_list()
    assert [(row["anchor"], row["positive"], row["negative"]) for row in rows] == [
        ("a", "like a", "unlike a"),
        ("broken", None, None),
        ("b", "like b", "unlike b"),
    ]
    assert all(row["model_name"] == "m" for row in rows)
    assert openai_server.requests[0]["messages"][0]["role"] == "system"
