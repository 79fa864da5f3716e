"""OllamaLLM against a local server speaking Ollama's native API (``POST /api/chat`` and ``/api/generate``)."""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from pydantic import ValidationError

from beam_distil.models.ollama import OllamaLLM
from beam_distil.models.rest import HTTPStatusError, MalformedResponseError
from beam_distil.pipeline import Pipeline
from beam_distil.pipeline.validation import PipelineValidationError
from beam_distil.steps import LoadDataFromDicts
from beam_distil.steps.tasks import TextGeneration
from tests.llm_runs import generate_one, run_text_generation
from tests.local_http_server import Reply, ScriptedServer

CHAT = [{"role": "user", "content": "hi"}]


def chat_answer(text: Optional[str], done_reason: str = "stop", counts: Tuple[int, int] = (9, 4)) -> Dict[str, Any]:
    return {
        "model": "llama-test",
        "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": text},
        "done": True,
        "done_reason": done_reason,
        "prompt_eval_count": counts[0],
        "eval_count": counts[1],
    }


class OllamaServer(ScriptedServer):
    """Answers chats with ``"<model>: <last user message>"`` and raw prompts with ``"<prompt>..."`` (plus
    `` #<seed>`` when a seed is sent), or ``answer_body`` when set; serves the scripted ``failures`` first."""

    def __init__(self) -> None:
        super().__init__()
        self.answer_body: Optional[Dict[str, Any]] = None

    @property
    def host(self) -> str:
        return self.base_url

    def answer(self, path: str, body: Any) -> Reply:
        if self.answer_body is not None:
            return 200, {}, self.answer_body
        seed = (body.get("options") or {}).get("seed")
        suffix = f" #{seed}" if seed is not None else ""
        if path == "/api/chat":
            last_user = [message for message in body["messages"] if message["role"] == "user"][-1]["content"]
            return 200, {}, chat_answer(f"{body['model']}: {last_user}{suffix}")
        if path == "/api/generate":
            return 200, {}, {"model": body["model"], "response": f"{body['prompt']}...{suffix}", "done": True,
                             "done_reason": "stop", "prompt_eval_count": 5, "eval_count": 2}
        return 404, {}, b"404 page not found"


@pytest.fixture(autouse=True)
def _no_ollama_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_HOST", raising=False)


@pytest.fixture
def server() -> Iterator[OllamaServer]:
    with OllamaServer() as running:
        yield running


def make_llm(server: OllamaServer, **kwargs: Any) -> OllamaLLM:
    return OllamaLLM(**{"model": "llama-test", "host": server.host, **kwargs})


def generate(llm: OllamaLLM, input: Any = CHAT, **kwargs: Any) -> Dict[str, Any]:
    return generate_one(llm, input, **kwargs)


def run_task(llm: OllamaLLM, instructions: List[str], **task_kwargs: Any) -> Tuple[Pipeline, List[Dict[str, Any]]]:
    return run_text_generation(llm, instructions, **task_kwargs)


def test_a_chat_goes_to_api_chat_without_streaming_or_credentials(server):
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"}, {"role": "user", "content": "how are you"}]
    output = generate(make_llm(server), chat)

    [request] = server.seen
    assert request["path"] == "/api/chat"
    assert "Authorization" not in request["headers"]
    # Unset generation kwargs are not sent: the model's own defaults apply.
    assert request["body"] == {"model": "llama-test", "messages": chat, "stream": False}
    assert output == {
        "generations": ["llama-test: how are you"],
        "statistics": {"input_tokens": [9], "output_tokens": [4]},
        "finish_reasons": ["stop"],
    }


def test_generation_kwargs_go_into_options_and_named_ones_win(server):
    generate(
        make_llm(server), CHAT, max_new_tokens=64, temperature=0.2, top_p=0.9, top_k=40, min_p=0.05,
        repeat_penalty=1.1, presence_penalty=0.5, frequency_penalty=0.25, seed=3, stop="END",
        options={"num_ctx": 4096, "temperature": 1.5}, keep_alive="10m",
    )
    [body] = server.bodies
    assert body["options"] == {
        "num_ctx": 4096, "num_predict": 64, "temperature": 0.2, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
        "repeat_penalty": 1.1, "presence_penalty": 0.5, "frequency_penalty": 0.25, "seed": 3, "stop": ["END"],
    }
    assert body["keep_alive"] == "10m" and "format" not in body


def test_options_given_as_none_are_left_out(server):
    # None is "unset" here, under a tokens_per_minute limit too (its estimate reads max_new_tokens).
    output = generate(make_llm(server, tokens_per_minute=100_000), CHAT, max_new_tokens=None, temperature=None)
    assert output["generations"] == ["llama-test: hi"]
    assert "options" not in server.bodies[0]


def test_a_string_is_a_raw_completion_on_api_generate(server):
    output = generate(make_llm(server), "<|im_start|>user\n")
    [request] = server.seen
    assert request["path"] == "/api/generate"
    assert request["body"] == {"model": "llama-test", "prompt": "<|im_start|>user\n", "raw": True, "stream": False}
    assert output["generations"] == ["<|im_start|>user\n..."]
    assert output["statistics"] == {"input_tokens": [5], "output_tokens": [2]}


def test_the_host_comes_from_ollama_host_and_may_leave_out_the_scheme(server, monkeypatch):
    llm = OllamaLLM(model="llama-test")
    assert llm.server_url() == "http://localhost:11434"
    monkeypatch.setenv("OLLAMA_HOST", server.host.removeprefix("http://"))
    assert llm.check_ready() == []
    assert generate(llm)["generations"] == ["llama-test: hi"]

    monkeypatch.setenv("OLLAMA_HOST", "ollama host")
    assert llm.check_ready() == [
        "host (from OLLAMA_HOST) 'ollama host' of model 'llama-test' is not an http(s) URL; write it like"
        " 'http://localhost:11434' or 'https://ollama.example.com'"
    ]


def test_429_is_retried_after_the_retry_after_delay(server):
    server.failures = [(429, {"Retry-After": "0.4"}, {"error": "too many requests"})]
    assert generate(make_llm(server))["generations"] == ["llama-test: hi"]
    assert len(server.seen) == 2
    assert server.times[1] - server.times[0] >= 0.4


def test_5xx_and_malformed_answers_are_retried_and_a_missing_model_is_final(server):
    server.failures = [(503, {}, {"error": "server busy, please try again. maximum pending requests exceeded"}),
                       (200, {}, {"model": "llama-test", "done": True})]
    assert generate(make_llm(server, retry_base_delay=0.01))["generations"] == ["llama-test: hi"]
    assert len(server.seen) == 3

    server.failures = [(200, {}, {"done": True})]
    with pytest.raises(MalformedResponseError, match="has no `message.content` string"):
        generate(make_llm(server, max_retries=0))

    server.failures = [(404, {}, {"error": "model 'llama-test' not found, try pulling it first"})]
    with pytest.raises(HTTPStatusError, match="try pulling it first") as caught:
        generate(make_llm(server, retry_base_delay=0.01))
    assert caught.value.status == 404
    assert len(server.seen) == 5  # one request each: a 404 is not retried


def test_usage_is_counted_in_a_pipeline_run(server):
    pipeline, rows = run_task(make_llm(server), ["a", "b"], system_prompt="Be brief.")

    assert [row["generation"] for row in rows] == ["llama-test: a", "llama-test: b"]
    assert rows[0]["distilabel_metadata"]["statistics_gen"] == {"input_tokens": 9, "output_tokens": 4}
    metrics = pipeline.last_run_metrics["gen"]
    assert (metrics["llm_requests"], metrics["llm_failures"]) == (2, 0)
    assert (metrics["input_tokens"], metrics["output_tokens"]) == (18, 8)
    assert all(body["messages"][0] == {"role": "system", "content": "Be brief."} for body in server.bodies)


@pytest.mark.parametrize(
    "answer, error",
    [(chat_answer(""), "no answer: empty text (stop)"), (chat_answer("  \n", done_reason="length"), "no answer: empty text (length)")],
    ids=["empty", "whitespace-at-the-length-limit"],
)
def test_an_answer_without_text_keeps_the_row_with_the_reason_and_is_counted(server, answer, error):
    server.answer_body = answer
    pipeline, [row] = run_task(make_llm(server), ["Think hard."])

    assert row["instruction"] == "Think hard."
    assert row["generation"] is None
    assert row["distilabel_metadata"]["error_gen"] == error
    assert pipeline.last_run_metrics["gen"]["llm_failures"] == 1


def test_structured_output_is_sent_as_format_and_answers_are_checked_against_it(server):
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    server.answer_body = chat_answer('{"name": "Ada"}')
    _, [valid] = run_task(make_llm(server, structured_output=schema), ["A character"])
    assert json.loads(valid["generation"]) == {"name": "Ada"}
    assert server.bodies[0]["format"] == schema

    server.answer_body = chat_answer('{"age": 36}')
    _, [invalid] = run_task(make_llm(server, structured_output=schema), ["Another character"])
    assert invalid["generation"] is None
    assert invalid["distilabel_metadata"]["error_gen"].startswith("structured output: answer does not match")

    generate(make_llm(server), CHAT, format="json")
    assert server.bodies[-1]["format"] == "json"


def test_two_generations_are_two_requests_with_seeds_apart(server):
    output = generate(make_llm(server), CHAT, num_generations=2, options={"seed": 7})
    assert sorted(body["options"]["seed"] for body in server.bodies) == [7, 8]
    assert output["generations"] == ["llama-test: hi #7", "llama-test: hi #8"]
    assert output["statistics"] == {"input_tokens": [9, 9], "output_tokens": [4, 4]}

    _, rows = run_task(make_llm(server), ["q"], num_generations=2, group_generations=True)
    assert rows[0]["generation"] == ["llama-test: q", "llama-test: q"]
    assert len(server.seen) == 4


def test_a_saved_pipeline_loads_back_and_runs(server, tmp_path):
    with Pipeline("ollama") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "again"}])
        llm = make_llm(server, timeout=30, generation_kwargs={"temperature": 0.5, "options": {"num_ctx": 2048}})
        load >> TextGeneration(name="gen", llm=llm)
    pipeline.save(str(tmp_path / "pipeline.yaml"))

    loaded = Pipeline.from_file(str(tmp_path / "pipeline.yaml"))
    loaded_llm = loaded.dag.steps["gen"].llm
    assert isinstance(loaded_llm, OllamaLLM) and loaded_llm.model_dump() == llm.model_dump()
    rows = loaded.run()["default"]["train"].to_list()
    assert rows[0]["generation"] == "llama-test: again"
    assert server.bodies[0]["options"] == {"num_ctx": 2048, "temperature": 0.5}


def test_a_bad_host_and_bad_kwargs_are_reported_before_any_request_and_redirects_cannot_be_refused(server):
    with Pipeline("ollama") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        load >> TextGeneration(name="bad_host", llm=OllamaLLM(model="llama-test", host="ftp://ollama.example.com"))
        load >> TextGeneration(name="bad_kwargs", llm=make_llm(server, generation_kwargs={"top_p": 7, "format": "yaml"}))
    with pytest.raises(PipelineValidationError) as caught:
        pipeline.run()
    message = str(caught.value)
    assert "Step 'bad_host': host 'ftp://ollama.example.com' of model 'llama-test' is not an http(s) URL" in message
    assert "Step 'bad_kwargs': generation parameter 'top_p' got 7: OllamaLLM takes top_p between 0.0 and 1.0" in message
    assert "Step 'bad_kwargs': generation parameter 'format' got 'yaml'" in message
    assert server.seen == []

    with pytest.raises(ValidationError, match="follow_redirects=False is not supported"):
        OllamaLLM(model="llama-test", follow_redirects=False)
