"""AzureOpenAILLM: the deployment's URL and ``api-version``, the ``api-key`` header or a Microsoft Entra token, and
what it needs before launch, against a real HTTP server on 127.0.0.1. Retries, answers without text, a pipeline run
and saved pipelines are in test_openai_compatible.py, with the other services."""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator

import openai
import pytest

from beam_distil.models.azure_openai import AzureOpenAILLM
from beam_distil.pipeline import Pipeline
from beam_distil.steps import LoadDataFromDicts
from beam_distil.steps.tasks import TextGeneration
from tests.llm_runs import agenerate_once
from tests.local_http_server import RecordingServer

KEY = "azure-key-0123456789abcdef"
TOKEN = "eyJ0eXAiOiJKV1Qi.entra-token-0123456789"
CHAT = [{"role": "user", "content": "hi"}]
AZURE_VARIABLES = ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_AD_TOKEN", "OPENAI_API_VERSION")


def completion() -> bytes:
    # Both shapes in one choice: `message` for a chat completion, `text` for a text completion.
    choice = {"index": 0, "message": {"role": "assistant", "content": "ok"}, "text": "ok", "finish_reason": "stop"}
    return json.dumps({"choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}).encode()


@pytest.fixture(autouse=True)
def _no_azure_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in AZURE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    with RecordingServer(lambda path, body: (200, {}, completion())) as recording:
        yield recording


def endpoint(server: RecordingServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def generate(llm: AzureOpenAILLM, input: Any = CHAT, **kwargs: Any) -> Dict[str, Any]:
    return agenerate_once(llm, input, **kwargs)


def test_the_endpoint_key_and_api_version_come_from_azures_environment_variables(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-key-is-not-azures")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://my-resource.openai.azure.com")
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    llm = AzureOpenAILLM(model="gpt-4o-mini-prod")
    assert (llm.base_url, llm.api_version, llm.model_name) == (
        "https://my-resource.openai.azure.com", "2024-10-21", "gpt-4o-mini-prod"
    )
    assert llm.check_ready() == []


def test_what_is_missing_is_named_with_its_environment_variable():
    problems = AzureOpenAILLM(model="dep").check_ready()
    assert len(problems) == 3
    assert "has no endpoint" in problems[0] and "`AZURE_OPENAI_ENDPOINT`" in problems[0]
    assert "has no API version" in problems[1] and "`OPENAI_API_VERSION`" in problems[1]
    assert "no credential" in problems[2]
    assert "`AZURE_OPENAI_API_KEY`" in problems[2] and "`AZURE_OPENAI_AD_TOKEN`" in problems[2]
    both = AzureOpenAILLM(model="dep", base_url="https://r.openai.azure.com", api_version="2024-10-21",
                          api_key=KEY, azure_ad_token=TOKEN)
    assert both.check_ready() == [
        "AzureOpenAILLM deployment 'dep' got both api_key and azure_ad_token; pass one of them"
    ]
    with pytest.raises(ValueError, match="got both api_key and azure_ad_token"):
        both.load()


def test_a_chat_request_goes_to_the_deployment_with_the_api_version_and_the_api_key_header(server):
    llm = AzureOpenAILLM(
        model="gpt-4o-mini-prod", base_url=endpoint(server) + "/", api_key=KEY, api_version="2024-10-21"
    )
    output = generate(llm, seed=5)
    [request] = server.seen
    assert request["path"] == "/openai/deployments/gpt-4o-mini-prod/chat/completions"
    assert request["url"].endswith("?api-version=2024-10-21")
    assert request["headers"]["api-key"] == KEY and "Authorization" not in request["headers"]
    assert request["body"]["messages"] == CHAT and request["body"]["seed"] == 5
    assert output["generations"] == ["ok"]


def test_a_string_input_goes_to_the_deployments_completions(server):
    llm = AzureOpenAILLM(model="instruct-dep", base_url=endpoint(server), api_key=KEY, api_version="2024-10-21")
    assert generate(llm, "Once upon a time")["generations"] == ["ok"]
    assert server.seen[0]["path"] == "/openai/deployments/instruct-dep/completions"
    assert server.seen[0]["body"]["prompt"] == "Once upon a time"


def test_an_entra_token_is_sent_as_a_bearer_token_and_wins_over_a_key_in_the_environment(server, monkeypatch):
    llm = AzureOpenAILLM(model="dep", base_url=endpoint(server), api_version="2024-10-21", azure_ad_token=TOKEN)
    generate(llm)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    monkeypatch.setenv("AZURE_OPENAI_AD_TOKEN", TOKEN + "-env")
    generate(AzureOpenAILLM(model="dep", base_url=endpoint(server), api_version="2024-10-21"))
    # A key given as an argument is what the user chose, whatever the environment holds.
    generate(AzureOpenAILLM(model="dep", base_url=endpoint(server), api_version="2024-10-21", api_key="explicit-key"))
    argument, from_env, explicit_key = (request["headers"] for request in server.seen)
    assert argument["Authorization"] == f"Bearer {TOKEN}" and "api-key" not in argument
    assert from_env["Authorization"] == f"Bearer {TOKEN}-env" and "api-key" not in from_env
    assert explicit_key["api-key"] == "explicit-key" and "Authorization" not in explicit_key


def test_the_entra_token_is_never_in_an_error_a_repr_or_a_saved_pipeline(tmp_path):
    echo = json.dumps({"error": {"code": "401", "message": f"Token {TOKEN} has expired"}}).encode()
    with RecordingServer(lambda path, body: (401, {}, echo)) as server:
        llm = AzureOpenAILLM(model="dep", base_url=endpoint(server), api_version="2024-10-21", azure_ad_token=TOKEN)
        with pytest.raises(openai.AuthenticationError) as caught:
            llm.generate([CHAT])
        llm.unload()
    assert TOKEN not in str(caught.value) and "Token ********** has expired" in str(caught.value)
    assert TOKEN not in repr(llm)
    # Which credential is used changes no answer: it is not part of the response-cache key.
    assert "azure_ad_token" not in llm.cache_identity()

    with Pipeline("azure-token") as pipeline:
        LoadDataFromDicts(data=[{"instruction": "q"}]) >> TextGeneration(name="gen", llm=llm)
    path = tmp_path / "pipeline.json"
    pipeline.save(path)
    assert TOKEN not in path.read_text()
    loaded = Pipeline.from_file(path).dag.steps["gen"].llm
    assert isinstance(loaded, AzureOpenAILLM) and loaded.azure_ad_token is None
    assert (loaded.model, loaded.base_url, loaded.api_version) == ("dep", endpoint(server), "2024-10-21")
