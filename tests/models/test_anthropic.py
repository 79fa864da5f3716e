"""AnthropicLLM against a real HTTP server on 127.0.0.1 speaking Anthropic's Messages API: what goes on the wire,
what the answers become, which errors are retried, and where the key never shows."""

from __future__ import annotations

import json
import pickle
from typing import Any, Dict, Iterator, List, Optional

import pytest

from beam_distil.models.anthropic import API_VERSION, STRUCTURED_OUTPUT_TOOL, AnthropicLLM
from beam_distil.models.event_loop import run_coroutine
from beam_distil.models.rest import HTTPStatusError
from beam_distil.pipeline import Pipeline
from beam_distil.pipeline.validation import PipelineValidationError
from beam_distil.steps import LoadDataFromDicts
from beam_distil.steps.tasks import TextGeneration
from tests.llm_runs import generate_one
from tests.local_http_server import Reply, ScriptedServer

KEY = "sk-ant-test-key-0123456789"
MODEL = "claude-test"
CHAT = [{"role": "user", "content": "hi"}]



def message(content: Optional[List[Dict[str, Any]]] = None, stop_reason: str = "end_turn", text: str = "ok") -> bytes:
    """A Messages API answer: ``content`` blocks (one text block by default), 7 input and 3 output tokens."""
    return json.dumps({
        "id": "msg_01", "type": "message", "role": "assistant", "model": MODEL,
        "content": [{"type": "text", "text": text}] if content is None else content,
        "stop_reason": stop_reason, "stop_sequence": None,
        "usage": {"input_tokens": 7, "output_tokens": 3},
    }).encode()


def error(kind: str, text: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": text}}).encode()


class MessagesServer(ScriptedServer):
    """``POST /v1/messages``: the scripted replies (``failures``: any status) first, in order, then
    ``"<model>: <last user text>"``."""

    def answer(self, path: str, body: Any) -> Reply:
        if path != "/v1/messages":
            return 404, {}, error("not_found_error", f"no route {path}")
        last = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        return 200, {}, message(text=f"{body['model']}: {last}")


pytestmark = pytest.mark.usefixtures("no_anthropic_env")


@pytest.fixture
def server() -> Iterator[MessagesServer]:
    with MessagesServer() as running:
        yield running


def make_llm(server: MessagesServer, **kwargs: Any) -> AnthropicLLM:
    return AnthropicLLM(model=MODEL, base_url=server.base_url, api_key=KEY, **kwargs)


def generate(llm: AnthropicLLM, input: Any = CHAT, **kwargs: Any) -> Dict[str, Any]:
    return generate_one(llm, input, **kwargs)


def text_generation(server: MessagesServer, instructions: List[str], **llm_kwargs: Any) -> Pipeline:
    with Pipeline("anthropic") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": text} for text in instructions])
        load >> TextGeneration(name="gen", llm=make_llm(server, **llm_kwargs))
    return pipeline


def test_a_chat_is_posted_to_v1_messages_with_the_key_the_version_and_the_model(server):
    output = generate(make_llm(server))
    [request] = server.seen
    assert request["path"] == "/v1/messages"
    assert request["headers"]["x-api-key"] == KEY
    assert request["headers"]["anthropic-version"] == API_VERSION == "2023-06-01"
    assert request["headers"]["Content-Type"] == "application/json"
    assert "Authorization" not in request["headers"]
    # Only what was asked for: the API's own defaults apply to the rest.
    assert request["body"] == {"model": MODEL, "max_tokens": 128, "messages": CHAT}
    assert output == {
        "generations": [f"{MODEL}: hi"],
        "statistics": {"input_tokens": [7], "output_tokens": [3]},
        "finish_reasons": ["end_turn"],
    }


def test_system_messages_become_the_system_field_and_generation_kwargs_keep_the_api_names(server):
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "bonjour"},
        {"role": "user", "content": "how are you"},
    ]
    generate(make_llm(server), chat, max_new_tokens=32, temperature=0.2, top_p=0.9, top_k=40, stop_sequences=["END"])
    body = server.seen[0]["body"]
    assert body["system"] == "Be brief.\n\nAnswer in French."
    assert body["messages"] == chat[2:]
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["top_k"], body["stop_sequences"]) == (
        32, 0.2, 0.9, 40, ["END"]
    )
    # distilabel's name for the limit works too.
    generate(make_llm(server), chat, max_tokens=64)
    assert server.seen[1]["body"]["max_tokens"] == 64


def test_a_string_input_is_one_user_message(server):
    output = generate(make_llm(server), "Once upon a time")
    assert server.seen[0]["body"]["messages"] == [{"role": "user", "content": "Once upon a time"}]
    assert "system" not in server.seen[0]["body"]
    assert output["generations"] == [f"{MODEL}: Once upon a time"]


def test_text_blocks_are_joined_and_other_blocks_left_out(server):
    server.failures.append((200, {}, message([
        {"type": "thinking", "thinking": "hmm", "signature": "x"},
        {"type": "text", "text": "Hello, "},
        {"type": "text", "text": "world."},
    ])))
    assert generate(make_llm(server))["generations"] == ["Hello, world."]


def test_a_429_is_retried_after_its_retry_after_delay(server):
    server.failures.append((429, {"retry-after": "0.4"}, error("rate_limit_error", "slow down")))
    llm = make_llm(server)
    output = generate(llm)
    assert output["generations"] == [f"{MODEL}: hi"]
    assert len(server.seen) == 2
    assert server.times[1] - server.times[0] >= 0.4
    rate_limited = HTTPStatusError("429", status=429, body={}, retry_after=0.4, url="u")
    assert llm.classify_error(rate_limited).rate_limited


@pytest.mark.parametrize("status, kind", [(529, "overloaded_error"), (500, "api_error")])
def test_overloaded_and_server_errors_are_retried(server, status, kind):
    server.failures.append((status, {}, error(kind, "try again")))
    llm = make_llm(server, retry_base_delay=0.01)
    assert generate(llm)["generations"] == [f"{MODEL}: hi"]
    assert len(server.seen) == 2
    decision = llm.classify_error(HTTPStatusError("e", status=status, body={}, retry_after=None, url="u"))
    assert decision.retryable
    # Overload also lowers the client's concurrency, as rate limiting does.
    assert decision.rate_limited is (status == 529)


@pytest.mark.parametrize("status, kind", [(400, "invalid_request_error"), (401, "authentication_error")])
def test_client_errors_are_final_after_one_request(server, status, kind):
    server.failures.append((status, {}, error(kind, "the server says no")))
    with pytest.raises(HTTPStatusError, match="the server says no") as caught:
        generate(make_llm(server, retry_base_delay=0.01))
    assert caught.value.status == status
    assert len(server.seen) == 1


def test_an_answer_that_is_not_a_message_is_retried(server):
    server.failures += [(200, {}, b'{"content": [{"ty'), (200, {}, b'{"type": "message"}')]
    assert generate(make_llm(server, retry_base_delay=0.01))["generations"] == [f"{MODEL}: hi"]
    assert len(server.seen) == 3


def test_usage_is_counted_in_the_pipeline_metrics(server):
    pipeline = text_generation(server, ["a", "b"])
    rows = pipeline.run()["default"]["train"].to_list()
    assert [row["generation"] for row in rows] == [f"{MODEL}: a", f"{MODEL}: b"]
    assert rows[0]["distilabel_metadata"]["statistics_gen"] == {"input_tokens": 7, "output_tokens": 3}
    metrics = pipeline.last_run_metrics["gen"]
    assert (metrics["input_tokens"], metrics["output_tokens"], metrics["llm_failures"]) == (14, 6, 0)


@pytest.mark.parametrize(
    "answer, reason",
    [
        # A refusal may come with some text: it is still no answer.
        (message([{"type": "text", "text": "I can't help"}], stop_reason="refusal"), "no text (refusal)"),
        (message([], stop_reason="end_turn"), "no text (end_turn)"),
    ],
    ids=["refusal", "empty content"],
)
def test_a_refusal_or_an_empty_answer_keeps_the_row_as_a_counted_failure(server, answer, reason):
    server.failures.append((200, {}, answer))
    pipeline = text_generation(server, ["Tell me a secret."])
    [row] = pipeline.run()["default"]["train"].to_list()
    assert row["instruction"] == "Tell me a secret."
    assert row["generation"] is None
    assert row["distilabel_metadata"]["error_gen"] == f"no answer: {reason}"
    assert pipeline.last_run_metrics["gen"]["llm_failures"] == 1


def test_structured_output_forces_a_tool_whose_input_is_the_generation(server):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name"],
    }
    server.failures.append((200, {}, message([
        {"type": "text", "text": "Here it is."},
        {"type": "tool_use", "id": "toolu_01", "name": STRUCTURED_OUTPUT_TOOL, "input": {"name": "Ada", "age": 36}},
    ], stop_reason="tool_use")))
    output = generate(make_llm(server), "Who wrote the first program?", structured_output=schema)
    body = server.seen[0]["body"]
    [tool] = body["tools"]
    assert (tool["name"], tool["input_schema"]) == (STRUCTURED_OUTPUT_TOOL, schema)
    assert body["tool_choice"] == {"type": "tool", "name": STRUCTURED_OUTPUT_TOOL}
    assert json.loads(output["generations"][0]) == {"name": "Ada", "age": 36}
    assert output["finish_reasons"] == ["tool_use"]


def test_a_schema_that_is_not_an_object_is_the_value_of_one(server):
    schema = {"type": "array", "items": {"$ref": "#/$defs/Item"}, "$defs": {"Item": {"type": "string"}}}
    server.failures.append((200, {}, message([
        {"type": "tool_use", "id": "toolu_01", "name": STRUCTURED_OUTPUT_TOOL, "input": {"value": ["a", "b"]}},
    ], stop_reason="tool_use")))
    output = generate(make_llm(server), "Two letters", structured_output=schema)
    input_schema = server.seen[0]["body"]["tools"][0]["input_schema"]
    assert input_schema == {
        "type": "object",
        "properties": {"value": {"type": "array", "items": {"$ref": "#/$defs/Item"}}},
        "required": ["value"],
        "$defs": {"Item": {"type": "string"}},
    }
    assert json.loads(output["generations"][0]) == ["a", "b"]


def test_num_generations_makes_one_call_per_generation(server):
    llm = make_llm(server, retry_base_delay=0.01)
    llm.load()
    try:
        output = run_coroutine(llm.agenerate(CHAT, num_generations=2))
        assert len(server.seen) == 2 and all("n" not in request["body"] for request in server.seen)
        assert output["generations"] == [f"{MODEL}: hi"] * 2
        assert output["statistics"] == {"input_tokens": [7, 7], "output_tokens": [3, 3]}
        assert output["finish_reasons"] == ["end_turn", "end_turn"]
        # Through the limits and retries, a failed call is retried alone: three requests, not four.
        server.failures.append((500, {}, error("api_error", "oops")))
        outcome = run_coroutine(llm.acall(CHAT, num_generations=2))
    finally:
        llm.unload()
    assert len(server.seen) == 5
    assert outcome.error is None and outcome.retries == 1
    assert outcome.output["generations"] == [f"{MODEL}: hi"] * 2


def test_the_key_never_appears_in_an_error_a_repr_or_a_saved_pipeline(server, tmp_path, monkeypatch):
    echo = error("authentication_error", f"invalid x-api-key: {KEY}")
    server.failures.append((401, {}, echo))
    llm = make_llm(server)
    with pytest.raises(HTTPStatusError) as caught:
        generate(llm)
    assert KEY not in str(caught.value) and KEY not in json.dumps(caught.value.body)
    assert "invalid x-api-key: **********" in str(caught.value)
    assert KEY not in repr(llm) and KEY not in llm.client_fingerprint()

    path = tmp_path / "pipeline.yaml"
    text_generation(server, ["a", "b"]).save(path)
    assert KEY not in path.read_text() and "AnthropicLLM" in path.read_text()

    # Loaded back, it takes its key from the environment, and a server echoing it gets it redacted in the row.
    loaded = Pipeline.from_file(str(path))
    loaded_llm = loaded.dag.steps["gen"].llm
    assert isinstance(loaded_llm, AnthropicLLM) and loaded_llm.api_key is None
    assert loaded_llm.base_url == server.base_url
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    server.failures.append((401, {}, echo))
    rows = loaded.run()["default"]["train"].to_list()
    assert all(request["headers"]["x-api-key"] == KEY for request in server.seen[1:])
    [failed] = [row for row in rows if row["generation"] is None]
    [answered] = [row for row in rows if row["generation"] is not None]
    assert "invalid x-api-key: **********" in failed["distilabel_metadata"]["error_gen"]
    assert KEY not in json.dumps(rows)
    assert answered["generation"] == f"{MODEL}: {answered['instruction']}"
    assert loaded.last_run_metrics["gen"]["llm_failures"] == 1


def test_a_missing_key_or_a_bad_base_url_is_found_before_launch(server):
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "a"}])
        load >> TextGeneration(name="gen", llm=AnthropicLLM(model=MODEL, base_url=f"{server.base_url}/v1/messages"))
    with pytest.raises(PipelineValidationError) as caught:
        pipeline.run()
    assert "ANTHROPIC_API_KEY" in str(caught.value)
    assert (
        f"already ends with /v1/messages, which the client appends itself; give the root, e.g. '{server.base_url}'"
        in str(caught.value)
    )
    no_scheme = AnthropicLLM(model=MODEL, base_url="api.anthropic.com", api_key=KEY)
    assert "is not an http(s) URL" in no_scheme.check_ready()[0]
    assert server.seen == []


def test_max_tokens_and_max_new_tokens_must_agree(server):
    pipeline = text_generation(server, ["a"], generation_kwargs={"max_new_tokens": 256, "max_tokens": 512})
    conflict = "max_new_tokens=256 and max_tokens=512, two names for the same limit"
    with pytest.raises(PipelineValidationError, match=conflict):
        pipeline.validate()
    llm = make_llm(server)
    llm.load()
    try:
        with pytest.raises(ValueError, match="two names for the same limit"):
            run_coroutine(llm.agenerate(CHAT, max_new_tokens=1, max_tokens=2))
        with pytest.raises(ValueError, match="role 'tool'"):
            run_coroutine(llm.agenerate([{"role": "tool", "content": "x"}]))
    finally:
        llm.unload()
    assert server.seen == []


def test_an_out_of_range_generation_kwarg_is_refused_before_launch(server):
    pipeline = text_generation(server, ["a"], generation_kwargs={"temperature": 1.5})
    with pytest.raises(PipelineValidationError, match="AnthropicLLM takes temperature between 0.0 and 1.0"):
        pipeline.validate()


def test_http_client_is_refused_with_what_to_do_instead():
    with pytest.raises(ValueError, match="AnthropicLLM takes no `http_client`.*HTTPS_PROXY.*base_url"):
        AnthropicLLM(model=MODEL, http_client=object())
    assert AnthropicLLM(model=MODEL, http_client=None).model == MODEL  # distilabel's default: nothing to refuse


def test_base_url_defaults_to_the_environment_then_anthropic(monkeypatch):
    assert AnthropicLLM(model=MODEL).base_url == "https://api.anthropic.com"
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "https://gateway.example/anthropic")
    assert AnthropicLLM(model=MODEL).base_url == "https://gateway.example/anthropic"


def test_pickling_a_loaded_llm_leaves_out_the_client(server):
    llm = make_llm(server)
    llm.load()
    clone = pickle.loads(pickle.dumps(llm))
    llm.unload()
    assert clone._aclient is None and clone.api_key.get_secret_value() == KEY
    assert generate(clone)["generations"] == [f"{MODEL}: hi"]
