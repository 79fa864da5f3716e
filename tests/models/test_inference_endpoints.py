"""InferenceEndpointsLLM: where requests go (base_url, endpoint_name, serverless model_id), the Messages API body with
distilabel's parameter names, TGI's grammar, one request per generation, and what it needs before launch, against
real HTTP servers on 127.0.0.1. Retries, answers without text, a pipeline run and saved pipelines are in
test_openai_compatible.py, with the other services."""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator

import pytest

from beam_distil.models import inference_endpoints
from beam_distil.models.inference_endpoints import SERVERLESS_BASE_URL, InferenceEndpointsLLM
from tests.llm_runs import agenerate_once
from tests.local_http_server import RecordingServer

TOKEN = "hf_token_0123456789abcdef"
CHAT = [{"role": "user", "content": "hi"}]
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def completion() -> bytes:
    choice = {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    return json.dumps({"choices": [choice], "usage": {"prompt_tokens": 4, "completion_tokens": 1}}).encode()


@pytest.fixture(autouse=True)
def _no_token_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    with RecordingServer(lambda path, body: (200, {}, completion())) as recording:
        yield recording


def root(server: RecordingServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def generate(llm: InferenceEndpointsLLM, input: Any = CHAT, **kwargs: Any) -> Dict[str, Any]:
    return agenerate_once(llm, input, **kwargs)


def test_a_serverless_model_id_goes_to_the_inference_providers_router_with_the_hf_token(monkeypatch):
    llm = InferenceEndpointsLLM(model_id="meta-llama/Llama-3.1-8B-Instruct")
    assert llm.serverless and llm.model_name == "meta-llama/Llama-3.1-8B-Instruct"
    assert llm.check_ready() == [
        "no Hugging Face token for serverless model_id 'meta-llama/Llama-3.1-8B-Instruct': pass api_key= or set"
        " the `HF_TOKEN` environment variable"
    ]
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert llm.check_ready() == []
    assert llm.client_options(TOKEN) == {"base_url": "https://router.huggingface.co/v1", "api_key": TOKEN}


def test_serverless_requests_name_the_model_id_and_ask_for_openais_json_schema(server, monkeypatch):
    # The router played by the local server: what a serverless request carries.
    monkeypatch.setattr(inference_endpoints, "SERVERLESS_BASE_URL", server.base_url)
    generate(InferenceEndpointsLLM(model_id="org/model:together", api_key=TOKEN), structured_output=SCHEMA)
    [request] = server.seen
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert request["body"]["model"] == "org/model:together"
    assert request["body"]["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "output", "schema": SCHEMA}
    }
    assert SERVERLESS_BASE_URL == "https://router.huggingface.co/v1"


def test_base_url_wins_gets_v1_and_a_local_tgi_needs_no_token(server):
    llm = InferenceEndpointsLLM(base_url=root(server), model_id="org/model", endpoint_name="ignored-name")
    assert llm.base_url == root(server) + "/v1" and llm.check_ready() == []
    generate(llm)
    assert InferenceEndpointsLLM(base_url=root(server) + "/v1/").base_url == root(server) + "/v1/"
    [request] = server.seen
    assert request["path"] == "/v1/chat/completions"
    assert "Authorization" not in request["headers"]
    assert request["body"]["model"] == "org/model"


def test_a_dedicated_endpoint_needs_its_url_because_no_hub_call_is_made_while_loading(server):
    llm = InferenceEndpointsLLM(endpoint_name="llama-31-8b", endpoint_namespace="my-org", api_key=TOKEN)
    [problem] = llm.check_ready()
    assert "endpoint_name='llama-31-8b' needs base_url too" in problem
    assert "get_inference_endpoint('llama-31-8b', namespace='my-org').url" in problem
    with pytest.raises(ValueError, match="needs base_url too"):
        llm.load()
    with_url = InferenceEndpointsLLM(endpoint_name="llama-31-8b", base_url=root(server), api_key=TOKEN)
    assert with_url.check_ready() == [] and with_url.model_name == "llama-31-8b"
    generate(with_url)
    assert server.seen[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert server.seen[0]["body"]["model"] == "tgi"  # TGI ignores it


def test_nothing_to_reach_is_reported_before_launch():
    assert InferenceEndpointsLLM().check_ready() == [
        "InferenceEndpointsLLM needs one of base_url (a TGI server or an Inference Endpoint's URL), model_id (a Hub"
        " model, served serverless through Hugging Face's Inference Providers) or endpoint_name (with its base_url)"
    ]
    assert "is not an http(s) URL" in InferenceEndpointsLLM(base_url="localhost:8080").check_ready()[0]


def test_the_body_has_distilabels_names_nulls_for_what_is_unset_and_tgis_grammar(server):
    llm = InferenceEndpointsLLM(base_url=root(server), model_display_name="Llama (TGI)")
    generate(llm, stop_sequences=["</s>"], seed=3, temperature=0.5, max_new_tokens=20, tool_prompt="Use a tool")
    generate(llm, top_p=0.9, frequency_penalty=0.5, structured_output=SCHEMA)
    plain, structured = (request["body"] for request in server.seen)
    assert (plain["stop"], plain["seed"], plain["temperature"], plain["max_tokens"]) == (["</s>"], 3, 0.5, 20)
    assert plain["tool_prompt"] == "Use a tool" and "stop_sequences" not in plain
    # Unset: null, the server's default (TGI refuses top_p=1.0).
    assert plain["top_p"] is None and plain["frequency_penalty"] is None and plain["presence_penalty"] is None
    assert (structured["top_p"], structured["frequency_penalty"]) == (0.9, 0.5)
    assert structured["response_format"] == {"type": "json_object", "value": SCHEMA}
    assert llm.model_name == "Llama (TGI)"


def test_num_generations_is_one_request_each_with_its_own_seed(server):
    llm = InferenceEndpointsLLM(base_url=root(server))
    [output] = llm.generate([CHAT], num_generations=2, seed=10)
    llm.unload()
    assert sorted(request["body"]["seed"] for request in server.seen) == [10, 11]
    assert output["generations"] == ["ok", "ok"]
    assert output["statistics"] == {"input_tokens": [4, 4], "output_tokens": [1, 1]}


def test_text_generation_only_kwargs_are_refused_and_tgis_logprob_limit_is_checked():
    llm = InferenceEndpointsLLM(base_url="http://127.0.0.1:8080")
    accepted = llm.generation_parameter_names()
    assert {"stop_sequences", "tools", "tool_choice", "tool_prompt", "seed"} <= set(accepted)
    text_generation_only = {"do_sample", "top_k", "repetition_penalty", "typical_p", "watermark", "return_full_text"}
    assert not text_generation_only & set(accepted)
    assert "between 0 and 5" in llm.check_generation_kwarg("top_logprobs", 6)
