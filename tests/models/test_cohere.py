"""CohereLLM against a local server speaking Cohere's Chat API v2 (``POST /v2/chat``)."""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from beam_distil.models.cohere import CohereLLM
from beam_distil.models.rest import HTTPStatusError
from beam_distil.pipeline import Pipeline
from beam_distil.pipeline.validation import PipelineValidationError
from beam_distil.steps import LoadDataFromDicts
from beam_distil.steps.tasks import TextGeneration
from tests.llm_runs import generate_one, run_text_generation
from tests.local_http_server import Reply, ScriptedServer

KEY = "co-test-key-0123456789"
CHAT = [{"role": "user", "content": "hi"}]


def chat_answer(text: Optional[str], finish_reason: str = "COMPLETE", tokens: Tuple[int, int] = (7, 3)) -> Dict[str, Any]:
    """A ``/v2/chat`` answer; ``usage.tokens`` counts what the model saw (``billed_units`` leaves the preamble out)."""
    return {
        "id": "answer-1",
        "finish_reason": finish_reason,
        "message": {"role": "assistant", "content": [] if text is None else [{"type": "text", "text": text}]},
        "usage": {
            "billed_units": {"input_tokens": tokens[0] - 2, "output_tokens": tokens[1]},
            "tokens": {"input_tokens": tokens[0], "output_tokens": tokens[1]},
        },
    }


class CohereServer(ScriptedServer):
    """Answers ``"<model>: <last user message>"`` (plus `` #<seed>`` when a seed is sent), or ``answer_body``
    when set; serves the scripted ``failures`` first."""

    def __init__(self) -> None:
        super().__init__()
        self.answer_body: Optional[Dict[str, Any]] = None

    def answer(self, path: str, body: Any) -> Reply:
        if path != "/v2/chat":
            return 404, {}, {"message": f"no route {path}"}
        if self.answer_body is not None:
            return 200, {}, self.answer_body
        last_user = [message for message in body["messages"] if message["role"] == "user"][-1]["content"]
        suffix = f" #{body['seed']}" if "seed" in body else ""
        return 200, {}, chat_answer(f"{body['model']}: {last_user}{suffix}")


@pytest.fixture(autouse=True)
def _no_cohere_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COHERE_API_KEY", "COHERE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[CohereServer]:
    with CohereServer() as running:
        yield running


def make_llm(server: CohereServer, **kwargs: Any) -> CohereLLM:
    return CohereLLM(**{"model": "command-test", "base_url": server.base_url, "api_key": KEY, **kwargs})


def generate(llm: CohereLLM, input: Any = CHAT, **kwargs: Any) -> Dict[str, Any]:
    return generate_one(llm, input, **kwargs)


def run_task(llm: CohereLLM, instructions: List[str], **task_kwargs: Any) -> Tuple[Pipeline, List[Dict[str, Any]]]:
    return run_text_generation(llm, instructions, **task_kwargs)


def test_the_request_has_the_bearer_key_the_client_name_and_the_chat(server):
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "how are you"},
    ]
    output = generate(make_llm(server), chat)

    [request] = server.seen
    assert request["path"] == "/v2/chat"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    assert request["headers"]["X-Client-Name"] == "beam-distil"
    # Unset generation kwargs are not sent: Cohere's defaults apply.
    assert request["body"] == {"model": "command-test", "messages": chat, "stream": False}
    assert output == {
        "generations": ["command-test: how are you"],
        "statistics": {"input_tokens": [7], "output_tokens": [3]},
        "finish_reasons": ["COMPLETE"],
    }


def test_generation_kwargs_are_sent_under_cohere_names(server):
    generate(
        make_llm(server), CHAT, max_tokens=64, temperature=0.2, p=0.9, k=40, seed=11, stop_sequences=["END"],
        frequency_penalty=0.1, presence_penalty=0.3, safety_mode="STRICT",
    )
    [body] = server.bodies
    expected = {"max_tokens": 64, "temperature": 0.2, "p": 0.9, "k": 40, "seed": 11, "stop_sequences": ["END"],
                "frequency_penalty": 0.1, "presence_penalty": 0.3, "safety_mode": "STRICT"}
    assert {key: body[key] for key in expected} == expected


def test_a_string_is_one_user_message_and_a_v1_base_url_still_reaches_v2_chat(server):
    # distilabel's CohereLLM defaulted to https://api.cohere.ai/v1.
    output = generate(make_llm(server, base_url=f"{server.base_url}/v1"), "Once upon a time")
    assert server.seen[0]["path"] == "/v2/chat"
    assert server.bodies[0]["messages"] == [{"role": "user", "content": "Once upon a time"}]
    assert output["generations"] == ["command-test: Once upon a time"]


def test_token_counts_fall_back_to_billed_units_and_only_text_items_are_the_answer(server):
    server.answer_body = {
        "finish_reason": "COMPLETE",
        "message": {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "4"}]},
        "usage": {"billed_units": {"input_tokens": 12.0, "output_tokens": 1.0}},
    }
    output = generate(make_llm(server))
    assert output["generations"] == ["4"]
    assert output["statistics"] == {"input_tokens": [12], "output_tokens": [1]}


def test_the_tokens_per_minute_estimate_counts_max_tokens():
    assert CohereLLM._estimated_tokens("x" * 40, {"max_tokens": 1000}) == 10 + 1000
    assert CohereLLM._estimated_tokens("x" * 40, {}) == 10 + 128


def test_a_message_with_another_role_is_refused_before_anything_is_sent(server):
    with pytest.raises(ValueError, match="role system, user, assistant; got role 'tool'"):
        generate(make_llm(server), [{"role": "tool", "content": "42"}])
    assert server.seen == []


def test_429_is_retried_after_the_retry_after_delay(server):
    server.failures = [(429, {"Retry-After": "0.4"}, {"message": "You are using a Trial key, which is limited"})]
    output = generate(make_llm(server))
    assert output["generations"] == ["command-test: hi"]
    assert len(server.seen) == 2
    assert server.times[1] - server.times[0] >= 0.4


def test_5xx_is_retried_and_other_4xx_are_final(server):
    server.failures = [(503, {}, {"message": "overloaded"}), (500, {}, {"message": "internal"})]
    assert generate(make_llm(server, retry_base_delay=0.01))["generations"] == ["command-test: hi"]
    assert len(server.seen) == 3

    server.failures = [(400, {}, {"message": "invalid request: max_tokens must be positive"})]
    with pytest.raises(HTTPStatusError, match="max_tokens must be positive") as caught:
        generate(make_llm(server, retry_base_delay=0.01))
    assert caught.value.status == 400
    assert len(server.seen) == 4  # one request: a 400 is not retried


def test_usage_is_counted_in_a_pipeline_run(server):
    pipeline, rows = run_task(make_llm(server), ["a", "b", "c"], system_prompt="Be brief.")

    assert [row["generation"] for row in rows] == ["command-test: a", "command-test: b", "command-test: c"]
    assert rows[0]["distilabel_metadata"]["statistics_gen"] == {"input_tokens": 7, "output_tokens": 3}
    metrics = pipeline.last_run_metrics["gen"]
    assert (metrics["llm_requests"], metrics["llm_failures"]) == (3, 0)
    assert (metrics["input_tokens"], metrics["output_tokens"]) == (21, 9)
    assert all(body["messages"][0] == {"role": "system", "content": "Be brief."} for body in server.bodies)


@pytest.mark.parametrize(
    "answer, error",
    [
        (chat_answer(None, finish_reason="ERROR"), "no answer: no text (ERROR)"),
        (chat_answer("partial and toxic", finish_reason="ERROR_TOXIC"), "no answer: no text (ERROR_TOXIC)"),
        (chat_answer("", finish_reason="MAX_TOKENS"), "no answer: empty text (MAX_TOKENS)"),
    ],
    ids=["error", "toxic", "empty"],
)
def test_an_answer_without_text_keeps_the_row_with_the_reason_and_is_counted(server, answer, error):
    server.answer_body = answer
    pipeline, [row] = run_task(make_llm(server), ["Tell me a secret."])

    assert row["instruction"] == "Tell me a secret."
    assert row["generation"] is None
    assert row["distilabel_metadata"]["error_gen"] == error
    assert pipeline.last_run_metrics["gen"]["llm_failures"] == 1


def test_structured_output_is_sent_as_a_json_schema_and_answers_are_checked_against_it(server):
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    server.answer_body = chat_answer('{"name": "Ada"}')
    _, [valid] = run_task(make_llm(server, structured_output=schema), ["A character"])
    assert json.loads(valid["generation"]) == {"name": "Ada"}
    assert server.bodies[0]["response_format"] == {"type": "json_object", "json_schema": schema}

    server.answer_body = chat_answer('{"age": 36}')
    _, [invalid] = run_task(make_llm(server, structured_output=schema), ["Another character"])
    assert invalid["generation"] is None
    assert invalid["distilabel_metadata"]["error_gen"].startswith("structured output: answer does not match")


def test_two_generations_are_two_requests_with_seeds_apart(server):
    output = generate(make_llm(server), CHAT, num_generations=2, seed=7)
    assert sorted(body["seed"] for body in server.bodies) == [7, 8]
    assert output["generations"] == ["command-test: hi #7", "command-test: hi #8"]
    assert output["statistics"] == {"input_tokens": [7, 7], "output_tokens": [3, 3]}
    assert output["finish_reasons"] == ["COMPLETE", "COMPLETE"]

    _, rows = run_task(make_llm(server), ["q"], num_generations=2, group_generations=True)
    assert rows[0]["generation"] == ["command-test: q", "command-test: q"]
    assert len(server.seen) == 4


def test_the_key_is_never_shown_in_errors_reprs_or_saved_pipelines(server, tmp_path):
    server.failures = [(401, {}, {"message": f"invalid api token: {KEY}"})] * 2
    llm = make_llm(server, max_retries=0)
    with pytest.raises(HTTPStatusError) as caught:
        generate(llm)
    assert KEY not in str(caught.value) and KEY not in json.dumps(caught.value.body)
    assert "invalid api token: **********" in str(caught.value)

    pipeline, [row] = run_task(llm, ["q"])
    assert row["generation"] is None
    assert "HTTP 401" in row["distilabel_metadata"]["error_gen"] and KEY not in row["distilabel_metadata"]["error_gen"]
    assert pipeline.last_run_metrics["gen"]["llm_failures"] == 1

    assert KEY not in repr(llm) and KEY not in llm.model_dump_json()
    pipeline.save(str(tmp_path / "pipeline.yaml"))
    assert KEY not in (tmp_path / "pipeline.yaml").read_text()


def test_a_saved_pipeline_loads_back_and_runs_with_the_key_from_the_environment(server, tmp_path, monkeypatch):
    with Pipeline("cohere") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "again"}])
        llm = make_llm(server, client_name="my-project", generation_kwargs={"temperature": 0.5})
        load >> TextGeneration(name="gen", llm=llm)
    pipeline.save(str(tmp_path / "pipeline.yaml"))

    loaded = Pipeline.from_file(str(tmp_path / "pipeline.yaml"))
    loaded_llm = loaded.dag.steps["gen"].llm
    assert isinstance(loaded_llm, CohereLLM) and loaded_llm.api_key is None
    assert loaded_llm.model_dump(exclude={"api_key"}) == llm.model_dump(exclude={"api_key"})
    monkeypatch.setenv("COHERE_API_KEY", KEY)
    rows = loaded.run()["default"]["train"].to_list()
    assert rows[0]["generation"] == "command-test: again"
    assert server.seen[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    assert server.seen[0]["headers"]["X-Client-Name"] == "my-project"
    assert server.bodies[0]["temperature"] == 0.5


def test_a_missing_key_a_bad_base_url_and_bad_kwargs_are_reported_before_any_request(server):
    with Pipeline("cohere") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        load >> TextGeneration(name="no_key", llm=CohereLLM(model="command-test", base_url=server.base_url))
        load >> TextGeneration(name="bad_url", llm=CohereLLM(model="command-test", base_url="api.cohere.com", api_key=KEY))
        load >> TextGeneration(
            name="bad_kwargs",
            llm=make_llm(server, generation_kwargs={"p": 1.0, "stop_sequences": ["a", "b", "c", "d", "e", "f"]}),
        )
    with pytest.raises(PipelineValidationError) as caught:
        pipeline.run()
    message = str(caught.value)
    assert "Step 'no_key': no API key for CohereLLM model 'command-test': pass `api_key=` or set the `COHERE_API_KEY`" in message
    assert "Step 'bad_url': base_url 'api.cohere.com' of model 'command-test' is not an http(s) URL" in message
    assert "Step 'bad_kwargs': generation parameter 'p' got 1.0: CohereLLM takes p between 0.01 and 0.99" in message
    assert "Step 'bad_kwargs': generation parameter 'stop_sequences' got 6 sequences: CohereLLM takes at most 5" in message
    assert server.seen == []
