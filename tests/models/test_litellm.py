"""LiteLLM: what it says before launch when the extra is missing (runs everywhere), and, with the extra installed,
real ``litellm.acompletion`` calls routed as ``openai/<model>`` to the project's local OpenAI-compatible server
(``api_base``), on the project's event loop: request fields, answers, finish reasons, usage, errors and retries.

The tests that need the extra are skipped without it; to run them::

    pip install 'beam-distil[litellm]'
    pytest tests/models/test_litellm.py
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from typing import Any, Dict

import pytest

from beam_distil.models import event_loop
from beam_distil.models.event_loop import run_coroutine
from beam_distil.models.litellm import LiteLLM
from beam_distil.pipeline import Pipeline, PipelineValidationError
from beam_distil.steps import LoadDataFromDicts
from beam_distil.steps.tasks import TextGeneration
from beam_distil.testing.openai_server import OpenAICompatibleServer
from tests.local_http_server import RecordingServer

SKIP_REASON = "needs the litellm extra: pip install 'beam-distil[litellm]'; then run pytest tests/models/test_litellm.py"
CHAT = [{"role": "user", "content": "hi"}]
KEY = "sk-litellm-test-0123456789"


def generate(llm: LiteLLM, input: Any = CHAT, **kwargs: Any) -> Dict[str, Any]:
    llm.load()
    return run_coroutine(llm.agenerate(input, **kwargs))


def test_without_the_extra_check_ready_and_load_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "litellm", None)
    llm = LiteLLM(model="anthropic/claude-3-5-haiku-latest")

    message = (
        "LiteLLM model 'anthropic/claude-3-5-haiku-latest' needs litellm, which is not installed here:"
        " pip install 'beam-distil[litellm]'."
    )
    assert llm.check_ready() == [message]
    with pytest.raises(ImportError) as raised:
        llm.load()
    assert str(raised.value) == message


def test_without_the_extra_a_pipeline_fails_before_launch_naming_the_step(monkeypatch):
    monkeypatch.setitem(sys.modules, "litellm", None)
    with Pipeline("litellm-missing") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "Say hi."}])
        load >> TextGeneration(name="gen", llm=LiteLLM(model="gpt-4o-mini"))

    with pytest.raises(PipelineValidationError) as raised:
        pipeline.run(use_cache=False)
    assert raised.value.problems == [
        "Step 'gen': LiteLLM model 'gpt-4o-mini' needs litellm, which is not installed here:"
        " pip install 'beam-distil[litellm]'."
    ]


def test_the_key_is_a_secret_argument_never_a_generation_kwarg():
    llm = LiteLLM(model="gpt-4o-mini", api_key=KEY, verbose=True)
    assert KEY not in repr(llm) and KEY not in llm.model_dump_json()
    assert "api_key" not in llm.generation_parameter_names()
    assert set(llm.cache_identity()) == {"model"}  # key, verbosity, limits and timeout change no answer
    assert llm.check_generation_kwarg("temperature", 2.5) == "got 2.5: LiteLLM takes temperature between 0.0 and 2.0"


def test_pipeline_info_shows_where_the_prompts_go():
    assert LiteLLM(model="gpt-4o-mini").prompts_go_to() == "LiteLLM's endpoint for 'gpt-4o-mini'"
    local = LiteLLM(model="openai/m", generation_kwargs={"api_base": "http://127.0.0.1:8000/v1"})
    assert local.prompts_go_to() == "http://127.0.0.1:8000/v1"


# -- with the extra ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def litellm() -> Any:
    return pytest.importorskip("litellm", reason=SKIP_REASON)


def test_a_chat_reaches_the_server_with_the_generation_kwargs(litellm, openai_server):
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    output = generate(
        LiteLLM(model="openai/test-model", api_key=KEY), api_base=openai_server.base_url, num_generations=2,
        max_tokens=7, temperature=0.5, top_p=0.9, stop=["\n"], seed=3, structured_output=schema,
    )

    [body] = openai_server.requests
    assert body["model"] == "test-model" and body["messages"] == CHAT
    assert (body["n"], body["max_tokens"], body["temperature"], body["top_p"], body["stop"], body["seed"]) == (
        2, 7, 0.5, 0.9, ["\n"], 3
    )
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == schema
    assert output["generations"] == ["test-model: hi #0", "test-model: hi #1"]
    assert output["finish_reasons"] == ["stop", "stop"]
    assert output["statistics"]["input_tokens"][0] > 0 and output["statistics"]["output_tokens"][0] > 0


def test_the_key_is_sent_as_the_bearer_token(litellm):
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "length"}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
    with RecordingServer(lambda path, body: (200, {}, json.dumps(answer).encode())) as server:
        output = generate(LiteLLM(model="openai/m", api_key=KEY), api_base=server.base_url)
    [request] = server.seen
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    assert output == {"generations": ["ok"], "statistics": {"input_tokens": [3], "output_tokens": [1]},
                      "finish_reasons": ["length"]}


def test_a_provider_that_ignores_n_is_asked_for_the_missing_answers(litellm):
    def one_choice(path: str, body: Dict[str, Any]) -> Any:
        answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": f"asked for {body['n']}"},
                               "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
        return 200, {}, json.dumps(answer).encode()

    with RecordingServer(one_choice) as server:
        output = generate(LiteLLM(model="openai/m", api_key=KEY), api_base=server.base_url, num_generations=3)
    assert output["generations"] == ["asked for 3", "asked for 2", "asked for 1"]
    assert output["statistics"] == {"input_tokens": [9], "output_tokens": [6]}


@pytest.mark.parametrize(
    "status, error_class, retryable",
    [(400, "BadRequestError", False), (401, "AuthenticationError", False), (404, "NotFoundError", False),
     (429, "RateLimitError", True), (500, "InternalServerError", True), (503, "ServiceUnavailableError", True)],
)
def test_an_error_is_one_request_litellms_class_and_classified(litellm, status, error_class, retryable):
    error_body = json.dumps({"error": {"message": "the server says no", "type": "x"}}).encode()
    with RecordingServer(lambda path, body: (status, {"Retry-After": "2"}, error_body)) as server:
        llm = LiteLLM(model="openai/m", api_key=KEY)
        with pytest.raises(getattr(litellm, error_class), match="the server says no") as raised:
            generate(llm, api_base=server.base_url)
        assert len(server.seen) == 1  # neither LiteLLM nor the openai SDK retried: retries are acall's

    decision = llm.classify_error(raised.value)
    assert decision.retryable is retryable
    assert decision.rate_limited is (status == 429)
    if status == 429:
        assert decision.retry_after == 2.0


def test_a_refused_connection_is_retryable(litellm):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    llm = LiteLLM(model="openai/m", api_key=KEY, timeout=5)
    # LiteLLM reports the openai provider's connection errors as an InternalServerError (status 500).
    with pytest.raises((litellm.APIConnectionError, litellm.InternalServerError), match="Connection error") as raised:
        generate(llm, api_base=f"http://127.0.0.1:{port}/v1")
    assert llm.classify_error(raised.value).retryable


def test_acall_retries_server_errors_within_its_limits(litellm):
    with OpenAICompatibleServer(fail_first_n=2) as server:
        llm = LiteLLM(model="openai/test-model", api_key=KEY, max_retries=3, retry_base_delay=0.01)
        llm.load()
        outcome = run_coroutine(llm.acall(CHAT, api_base=server.base_url))
        assert server.request_count == 3
    assert outcome.error is None and outcome.retries == 2
    assert outcome.output["generations"] == ["test-model: hi"]


def test_check_ready_names_the_providers_key_variable_and_an_unknown_provider(litellm, monkeypatch):
    assert LiteLLM(model="openai/test-model").check_ready() == [
        "no API key for LiteLLM model 'openai/test-model': pass `api_key=` or set `OPENAI_API_KEY`"
    ]
    assert LiteLLM(model="openai/test-model", api_key=KEY).check_ready() == []
    assert LiteLLM(model="ollama/llama3").check_ready() == []  # no key, and its base URL may come with the call
    assert LiteLLM(model="my-model").check_ready() == [
        "LiteLLM cannot tell the provider of model 'my-model': name it with its provider ('openai/...',"
        " 'anthropic/...', 'ollama/...'), or set `custom_llm_provider` in generation_kwargs."
    ]
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert LiteLLM(model="openai/test-model").check_ready() == []


def test_text_generation_in_a_pipeline_calls_acompletion_on_the_projects_event_loop(litellm, openai_server, monkeypatch):
    loops = []
    acompletion = litellm.acompletion

    async def recording_acompletion(**kwargs: Any) -> Any:
        loops.append(asyncio.get_running_loop())
        return await acompletion(**kwargs)

    monkeypatch.setattr(litellm, "acompletion", recording_acompletion)
    with Pipeline("litellm") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(6)])
        llm = LiteLLM(model="openai/test-model", api_key=KEY, generation_kwargs={"api_base": openai_server.base_url})
        load >> TextGeneration(name="gen", llm=llm)

    rows = pipeline.run(use_cache=False)["default"]["train"].to_list()

    assert [row["generation"] for row in rows] == [f"test-model: q{i}" for i in range(6)]
    assert {row["model_name"] for row in rows} == {"openai/test-model"}
    assert pipeline.last_run_metrics["gen"]["llm_requests"] == 6
    assert len(loops) == 6 and set(loops) == {event_loop.get_loop()}
