"""Structured output the distilabel way: the schema lives on the LLM. A custom LLM whose ``generate``/``agenerate``
has no ``**kwargs`` works with tasks that use a schema (TextClassification does by default), and the project's
backends still serve tasks and rows with different schemas from one client.

The custom LLMs below are user code, written as distilabel's docs show, talking to the local OpenAI-compatible
server over HTTP."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import tempfile
import urllib.request
from typing import Any, Dict, List, Optional

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from pydantic import BaseModel

from beam_distil.beam import shared_llms
from beam_distil.models import OpenAILLM
from beam_distil.models.base import LLM, AsyncLLM
from beam_distil.steps.tasks import StructuredGeneration, TextClassification

NUMBER = {"type": "object", "properties": {"value": {"type": "integer"}}, "required": ["value"]}
WORD = {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}


def _post_chat(base_url: str, body: Dict[str, Any]) -> Dict[str, Any]:
    request = urllib.request.Request(
        f"{base_url}/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _chat_body(model: str, input: Any, schema: Optional[Dict[str, Any]], num_generations: int) -> Dict[str, Any]:
    # As a distilabel LLM does: a StructuredGeneration row arrives as (chat, schema); else the LLM's own schema.
    chat, row_schema = input if isinstance(input, tuple) else (input, None)
    schema = row_schema or schema
    body: Dict[str, Any] = {"model": model, "messages": chat, "n": num_generations}
    if schema:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "out", "schema": schema.get("schema", schema)}}
    return body


def _output(answer: Dict[str, Any]) -> Dict[str, Any]:
    count = len(answer["choices"])
    return {
        "generations": [choice["message"]["content"] for choice in answer["choices"]],
        "statistics": {
            "input_tokens": [answer["usage"]["prompt_tokens"]] * count,
            "output_tokens": [answer["usage"]["completion_tokens"]] * count,
        },
    }


class DistilabelStyleLLM(LLM):
    """``generate`` without ``**kwargs``; the schema is read from ``self.structured_output``."""

    base_url: str
    model: str = "custom"

    @property
    def model_name(self) -> str:
        return self.model

    def generate(self, inputs: List[Any], num_generations: int = 1) -> List[Dict[str, Any]]:  # type: ignore[override]
        return [_output(_post_chat(self.base_url, _chat_body(self.model, i, self.structured_output, num_generations))) for i in inputs]


class DistilabelStyleAsyncLLM(AsyncLLM):
    """``agenerate`` without ``**kwargs``; the schema is read from ``self.structured_output``."""

    base_url: str
    model: str = "custom"

    @property
    def model_name(self) -> str:
        return self.model

    async def agenerate(self, input: Any, num_generations: int = 1) -> Dict[str, Any]:  # type: ignore[override]
        body = _chat_body(self.model, input, self.structured_output, num_generations)
        return _output(await asyncio.to_thread(_post_chat, self.base_url, body))


def run_beam(rows: List[Dict[str, Any]], *tasks: Any) -> List[List[Dict[str, Any]]]:
    """Each task applied to ``rows`` in one Beam job on FnApiRunner; the output rows of each, in row order. The
    rows come back through files: the job's functions run on pickled copies, so they cannot fill a list here."""
    with tempfile.TemporaryDirectory() as folder:
        with beam.Pipeline(runner=FnApiRunner()) as p:
            source = p | beam.Create(rows)
            for index, task in enumerate(tasks):
                _ = (
                    source
                    | f"task{index}" >> task
                    | f"json{index}" >> beam.Map(json.dumps)
                    | f"write{index}" >> beam.io.WriteToText(os.path.join(folder, f"task{index}"))
                )
        results = []
        for index in range(len(tasks)):
            found = [json.loads(line) for path in glob.glob(os.path.join(folder, f"task{index}*")) for line in open(path)]
            results.append(sorted(found, key=lambda row: row["text"] if "text" in row else row["instruction"]))
    return results


def sent_schemas(server: Any) -> List[Dict[str, Any]]:
    return [body["response_format"]["json_schema"]["schema"] for body in server.requests if "response_format" in body]


def test_text_classification_runs_on_custom_llms_without_kwargs(openai_server):
    openai_server.set_answer("custom", lambda messages: '{"labels": "positive"}')
    for llm_class in (DistilabelStyleLLM, DistilabelStyleAsyncLLM):
        openai_server.reset_counters()
        task = TextClassification(
            name="classify", llm=llm_class(base_url=openai_server.base_url), available_labels=["positive", "negative"]
        )
        [rows] = run_beam([{"text": "I loved it"}, {"text": "Great"}], task)

        assert [row["labels"] for row in rows] == ["positive", "positive"]
        assert all("error_classify" not in row["distilabel_metadata"] for row in rows)
        # The task's schema reached the LLM on self.structured_output, in distilabel's form.
        assert task.llm.structured_output == {"format": "json", "schema": task.get_structured_output()}
        assert sent_schemas(openai_server) == [task.get_structured_output()] * 2


def test_tasks_sharing_a_custom_llm_keep_their_own_schemas(openai_server):
    openai_server.set_answer("custom", lambda messages: '{"labels": ["a", "b"]}' if "list of 2" in messages[-1]["content"] else '{"labels": "a"}')
    shared = DistilabelStyleLLM(base_url=openai_server.base_url)
    one = TextClassification(name="one", llm=shared, available_labels=["a", "b"])
    two = TextClassification(name="two", llm=shared, available_labels=["a", "b"], n=2)

    [rows_one, rows_two] = run_beam([{"text": "x"}], one, two)

    assert rows_one[0]["labels"] == "a" and rows_two[0]["labels"] == ["a", "b"]
    assert sorted(json.dumps(s, sort_keys=True) for s in sent_schemas(openai_server)) == sorted(
        json.dumps(task.get_structured_output(), sort_keys=True) for task in (one, two)
    )
    assert shared.structured_output is None  # the user's object is left as it was


def test_structured_generation_gives_a_custom_llm_each_rows_chat_and_schema(openai_server):
    answers = {"A number": '{"value": 3}', "A word": '{"word": "tea"}'}
    openai_server.set_answer("custom", lambda messages: answers[messages[-1]["content"]])
    task = StructuredGeneration(name="structured", llm=DistilabelStyleLLM(base_url=openai_server.base_url))
    rows = [
        {"instruction": "A number", "structured_output": NUMBER},
        {"instruction": "A word", "structured_output": {"format": "json", "schema": WORD}},
    ]
    [out] = run_beam(rows, task)

    assert [row["generation"] for row in out] == ['{"value": 3}', '{"word": "tea"}']
    assert sorted(json.dumps(s, sort_keys=True) for s in sent_schemas(openai_server)) == sorted(
        json.dumps(s, sort_keys=True) for s in (NUMBER, WORD)
    )
    # raw_input keeps the chat the LLM answered, not the schema beside it
    assert out[0]["distilabel_metadata"]["raw_input_structured"] == [{"role": "user", "content": "A number"}]


def test_one_openai_client_serves_tasks_with_different_schemas(openai_server):
    openai_server.set_answer("m", lambda messages: '{"labels": ["a", "b"]}' if "list of 2" in messages[-1]["content"] else '{"labels": "a"}')
    llm = OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t", max_concurrency=3)
    one = TextClassification(name="one", llm=llm, available_labels=["a", "b"])
    two = TextClassification(name="two", llm=llm, available_labels=["a", "b"], n=2)
    loads_before = shared_llms.loads_in_this_process()

    [rows_one, rows_two] = run_beam([{"text": "x"}, {"text": "y"}], one, two)

    assert shared_llms.loads_in_this_process() - loads_before == 1  # one client for both tasks
    assert [row["labels"] for row in rows_one] == ["a", "a"]
    assert [row["labels"] for row in rows_two] == [["a", "b"], ["a", "b"]]
    schemas = sent_schemas(openai_server)
    assert schemas.count(one.get_structured_output()) == 2 and schemas.count(two.get_structured_output()) == 2
    assert one.llm is llm and llm.structured_output is None  # a built-in backend is not copied


class Verdict(BaseModel):
    labels: str
    confidence: float


def test_a_schema_on_the_llm_wins_over_the_tasks_default(openai_server):
    openai_server.set_answer("m", lambda messages: '{"labels": "a", "confidence": 0.9}')
    llm = OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t", structured_output=Verdict)
    task = TextClassification(name="classify", llm=llm, available_labels=["a", "b"])

    [rows] = run_beam([{"text": "x"}], task)

    assert sent_schemas(openai_server) == [Verdict.model_json_schema()]
    assert rows[0]["labels"] == "a"


def test_a_built_in_llm_takes_distilabels_chat_and_schema_input(openai_server):
    openai_server.set_answer("m", lambda messages: '{"value": 1}')
    llm = OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t")
    llm.load()
    try:
        [output] = llm.generate([([{"role": "user", "content": "A number"}], {"format": "json", "schema": NUMBER})])
    finally:
        llm.unload()
    assert output["generations"] == ['{"value": 1}']
    assert sent_schemas(openai_server) == [NUMBER]
    assert openai_server.requests[0]["messages"] == [{"role": "user", "content": "A number"}]
