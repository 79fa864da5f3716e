"""Structured output configured on the LLM, as in distilabel: the schema forms distilabel accepts, a direct
``llm.generate`` call following the LLM's schema, a custom LLM written the distilabel way inside a Pipeline, and
StructuredGeneration's ``(chat, schema)`` input."""

from __future__ import annotations

import warnings
from typing import Any, Dict, List

import pytest
from pydantic import BaseModel

from beam_distil.models import OpenAILLM
from beam_distil.models.base import LLM
from beam_distil.models.structured_output import call_arguments, json_schema_of
from beam_distil.pipeline import Pipeline
from beam_distil.steps.generators import LoadDataFromDicts
from beam_distil.steps.tasks import StructuredGeneration, TextClassification, TextGeneration
from tests.steps.tasks.test_custom_llm_structured_output import DistilabelStyleLLM, sent_schemas


class User(BaseModel):
    name: str
    age: int


USER_SCHEMA = User.model_json_schema()
CHAT = [{"role": "user", "content": "Make a user"}]


def openai_llm(server: Any, **kwargs: Any) -> OpenAILLM:
    return OpenAILLM(model="m", base_url=server.base_url, api_key="t", **kwargs)


@pytest.mark.parametrize(
    "form",
    [
        User,
        USER_SCHEMA,
        {"format": "json", "schema": User},  # outlines' form
        {"schema": User, "mode": "tool_call", "max_retries": 2},  # instructor's form (OpenAILLM in distilabel)
    ],
)
def test_distilabels_schema_forms_give_the_json_schema(form):
    assert json_schema_of(form) == USER_SCHEMA
    assert OpenAILLM(model="m", structured_output=form).structured_output is not None


def test_a_regex_constraint_is_refused_when_the_llm_is_built():
    with pytest.raises(ValueError, match="format 'regex' is not supported"):
        OpenAILLM(model="m", structured_output={"format": "regex", "schema": r"\d+"})


def test_a_direct_generate_call_follows_the_llms_schema(openai_server):
    openai_server.set_answer("m", lambda messages: '{"name": "Ann", "age": 3}')
    llm = openai_llm(openai_server, structured_output={"schema": User, "mode": "json"})
    llm.load()
    try:
        [output] = llm.generate([CHAT])
    finally:
        llm.unload()
    assert output["generations"] == ['{"name": "Ann", "age": 3}']
    assert sent_schemas(openai_server) == [USER_SCHEMA]


def test_a_tasks_schema_is_passed_per_call_and_never_taken_from_a_shared_client():
    # Two tasks whose LLMs differ only in their schema share one client; the client's own schema must not leak
    # into the calls of the task that has none.
    shared_client = OpenAILLM(model="m", structured_output=User)
    assert call_arguments(shared_client, CHAT, {}) == (CHAT, {})
    assert call_arguments(shared_client, CHAT, {}, default_schema=User) == (CHAT, {"structured_output": USER_SCHEMA})
    assert call_arguments(shared_client, (CHAT, User), {}) == (CHAT, {"structured_output": USER_SCHEMA})


def test_a_custom_llm_written_the_distilabel_way_runs_in_a_pipeline(openai_server):
    """TextClassification uses a schema by default; the custom LLM's generate has no **kwargs and reads
    self.structured_output. The pipeline is validated before launch and runs on Beam."""
    openai_server.set_answer("custom", lambda messages: '{"labels": "positive"}')
    with Pipeline("custom-llm") as pipeline:
        LoadDataFromDicts(data=[{"text": "I loved it"}]) >> TextClassification(
            name="classify", llm=DistilabelStyleLLM(base_url=openai_server.base_url), available_labels=["positive", "negative"]
        )
    [row] = pipeline.run()["default"]["train"].to_list()
    assert row["labels"] == "positive"
    assert sent_schemas(openai_server) == [TextClassification(
        llm=DistilabelStyleLLM(base_url="x"), available_labels=["positive", "negative"]
    ).get_structured_output()]


def test_a_schema_set_on_a_custom_llm_reaches_it(openai_server):
    openai_server.set_answer("custom", lambda messages: '{"name": "Bo", "age": 9}')
    with Pipeline("custom-llm-schema") as pipeline:
        LoadDataFromDicts(data=[{"instruction": "Make a user"}]) >> TextGeneration(
            name="gen", llm=DistilabelStyleLLM(base_url=openai_server.base_url, structured_output={"format": "json", "schema": USER_SCHEMA})
        )
    [row] = pipeline.run()["default"]["train"].to_list()
    assert row["generation"] == '{"name": "Bo", "age": 9}'
    assert sent_schemas(openai_server) == [USER_SCHEMA]


class RecordingLLM(LLM):
    """A distilabel-style LLM that answers nothing useful but records what it was given."""

    seen: List[Any] = []

    @property
    def model_name(self) -> str:
        return "recording"

    def generate(self, inputs: List[Any], num_generations: int = 1) -> List[Dict[str, Any]]:  # type: ignore[override]
        self.seen.extend(inputs)
        return [{"generations": ['{"age": 1}'], "statistics": {"input_tokens": [1], "output_tokens": [1]}} for _ in inputs]


def test_structured_generation_format_input_is_chat_and_schema():
    task = StructuredGeneration(name="sg", llm=RecordingLLM())
    row = {"instruction": "Make a user", "structured_output": {"format": "json", "schema": USER_SCHEMA}}
    assert task.format_input(row) == (CHAT, {"format": "json", "schema": USER_SCHEMA})
    assert task.inputs == ["instruction", "structured_output"]

    with_system = StructuredGeneration(name="sg", llm=RecordingLLM(), use_system_prompt=True)
    assert with_system.inputs == ["system_prompt", "instruction", "structured_output"]
    chat, schema = with_system.format_input({**row, "system_prompt": "Be exact."})
    assert chat == [{"role": "system", "content": "Be exact."}, *CHAT] and schema == row["structured_output"]
    with pytest.warns(UserWarning, match="no `system_prompt`"):
        assert with_system.format_input(row)[0] == CHAT
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task.format_input(row)  # no warning without use_system_prompt


def test_structured_generation_process_gives_the_tuple_to_a_distilabel_style_llm():
    llm = RecordingLLM()
    llm.seen.clear()
    task = StructuredGeneration(name="sg", llm=llm)
    task.load()
    [rows] = list(task.process([{"instruction": "Make a user", "structured_output": {"type": "object"}}]))
    assert llm.seen == [(CHAT, {"type": "object"})]
    assert rows[0]["generation"] == '{"age": 1}'
    assert rows[0]["distilabel_metadata"]["raw_input_sg"] == CHAT
