"""What OpenAILLM puts on the wire and what it makes of the answers, against real local HTTP servers."""

from __future__ import annotations

import json
import socket
from typing import Any, Dict, Iterator

import openai
import pytest

from beam_distil.models import OpenAILLM
from beam_distil.models.openai_rest import OpenAIRESTClient
from tests.llm_runs import agenerate_once
from tests.local_http_server import RecordingServer

CHAT = [{"role": "user", "content": "hi"}]


def generate(llm: OpenAILLM, input: Any = CHAT, **kwargs: Any) -> Dict[str, Any]:
    return agenerate_once(llm, input, **kwargs)


def completion(text: str = "ok") -> bytes:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 1}}).encode()


@pytest.fixture
def recording() -> Iterator[RecordingServer]:
    with RecordingServer(lambda path, body: (200, {}, completion())) as server:
        yield server


def test_requests_carry_the_key_and_the_organization_and_project_from_the_environment(recording, monkeypatch):
    monkeypatch.setenv("OPENAI_ORG_ID", "org-1")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-1")
    generate(OpenAILLM(model="m", base_url=recording.base_url, api_key="sk-test-key"))
    [request] = recording.seen
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test-key"
    assert request["headers"]["OpenAI-Organization"] == "org-1"
    assert request["headers"]["OpenAI-Project"] == "proj-1"
    assert request["headers"]["User-Agent"].startswith("beam-distil/")


def test_the_body_has_the_generation_kwargs_the_schema_and_extra_body_fields(openai_server):
    llm = OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t")
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    generate(llm, num_generations=2, max_new_tokens=7, stop=["\n"], seed=3, temperature=0.5,
             structured_output=schema, extra_body={"top_k": 20})
    [body] = openai_server.requests
    assert body["model"] == "m" and body["messages"] == CHAT
    assert (body["n"], body["max_tokens"], body["stop"], body["seed"], body["temperature"]) == (2, 7, ["\n"], 3, 0.5)
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    assert body["top_k"] == 20 and "extra_body" not in body


def test_a_string_input_is_a_text_completion(openai_server):
    output = generate(OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t"), "Once upon a time")
    assert openai_server.requests[0]["prompt"] == "Once upon a time"
    assert output["generations"] == ["m: Once upon a time"]


def test_answers_and_token_counts_are_read_and_missing_choices_are_none(openai_server):
    output = generate(OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t"), num_generations=2)
    assert output["generations"] == ["m: hi #0", "m: hi #1"]
    assert output["statistics"]["input_tokens"][0] > 0 and output["statistics"]["output_tokens"][0] > 0
    with RecordingServer(lambda path, body: (200, {}, completion("only one"))) as short:
        output = generate(OpenAILLM(model="m", base_url=short.base_url, api_key="t"), num_generations=3)
    assert output["generations"] == ["only one", None, None]


@pytest.mark.parametrize(
    "status, error_class, retryable",
    [(400, openai.BadRequestError, False), (401, openai.AuthenticationError, False),
     (404, openai.NotFoundError, False), (429, openai.RateLimitError, True),
     (500, openai.InternalServerError, True), (503, openai.InternalServerError, True)],
)
def test_http_errors_are_the_sdks_exception_classes_with_the_servers_message(status, error_class, retryable):
    error_body = json.dumps({"error": {"message": "the server says no", "type": "x"}}).encode()
    with RecordingServer(lambda path, body: (status, {"Retry-After": "2"}, error_body)) as server:
        llm = OpenAILLM(model="m", base_url=server.base_url, api_key="t")
        with pytest.raises(error_class, match="the server says no") as info:
            generate(llm)
    assert info.value.status_code == status
    decision = llm.classify_error(info.value)
    assert decision.retryable is retryable
    assert decision.rate_limited is (status == 429)
    if retryable:
        assert decision.retry_after == 2.0


@pytest.mark.parametrize(
    "answer, problem",
    [(b'{"object": "chat.completion"}', "has no `choices` list"), (b'{"choices": [{"mess', "is not JSON"),
     (b"\xff\xfe not utf-8", "is not JSON")],
)
def test_a_body_that_is_not_a_completion_is_a_retryable_validation_error(answer, problem):
    with RecordingServer(lambda path, body: (200, {}, answer)) as server:
        llm = OpenAILLM(model="m", base_url=server.base_url, api_key="t")
        with pytest.raises(openai.APIResponseValidationError, match=problem) as info:
            generate(llm)
    assert llm.classify_error(info.value).retryable


def test_a_refused_connection_is_a_retryable_connection_error():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    llm = OpenAILLM(model="m", base_url=f"http://127.0.0.1:{port}/v1", api_key="t")
    with pytest.raises(openai.APIConnectionError) as info:
        generate(llm)
    assert llm.classify_error(info.value).retryable


def test_more_than_a_hundred_requests_can_be_in_flight(openai_server):
    # aiohttp's default connection pool holds 100 connections; max_concurrency must be what bounds the client.
    openai_server.configure(latency=1.0)
    llm = OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t", max_concurrency=150)
    outputs = llm.generate([[{"role": "user", "content": f"q{i}"}] for i in range(150)])
    assert len(outputs) == 150
    assert 100 < openai_server.max_in_flight <= 150
    llm.unload()


def test_the_proxy_from_the_environment_is_used_unless_no_proxy_names_the_host(recording, monkeypatch):
    # The recording server plays the proxy: the request for an unresolvable host reaches it in absolute form.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{recording.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert generate(OpenAILLM(model="m", base_url="http://api.example.invalid/v1", api_key="t"))["generations"] == ["ok"]
    assert recording.seen[0]["url"] == "http://api.example.invalid/v1/chat/completions"
    monkeypatch.setenv("NO_PROXY", "api.example.invalid")
    assert OpenAIRESTClient(base_url="http://api.example.invalid/v1", api_key="t", timeout=1)._proxy is None


def test_a_direct_generate_error_never_shows_the_key_a_server_echoes():
    key = "sk-secret-0123456789"
    echo = json.dumps({"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error"}})
    with RecordingServer(lambda path, body: (401, {}, echo.encode())) as server:
        llm = OpenAILLM(model="m", base_url=server.base_url, api_key=key)
        llm.load()
        try:
            with pytest.raises(openai.AuthenticationError) as caught:
                llm.generate([CHAT])
        finally:
            llm.unload()

    error = caught.value
    assert key not in str(error) and key not in repr(error.args)
    assert key not in json.dumps(error.body) and key not in error.message
    assert "Incorrect API key provided: **********" in str(error)
