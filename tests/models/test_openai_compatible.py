"""The services that speak OpenAI's API (Together, Anyscale, Groq, Mistral, a vLLM server; Azure OpenAI and Hugging
Face Inference Endpoints have their own files too), against real HTTP servers on 127.0.0.1.

What each service does differently is tested per class; what they inherit from OpenAILLM (retries, Retry-After,
final 4xx, answers without text as counted failures, keys kept secret, saved pipelines) is tested once per class
by parametrizing over every one of them."""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Dict, Iterator, List

import openai
import pytest

from beam_distil.models.azure_openai import AzureOpenAILLM
from beam_distil.models.inference_endpoints import InferenceEndpointsLLM
from beam_distil.models.openai import OpenAILLM
from beam_distil.models.openai_compatible import AnyscaleLLM, ClientvLLM, GroqLLM, MistralLLM, TogetherLLM
from beam_distil.pipeline import Pipeline
from beam_distil.steps import LoadDataFromDicts
from beam_distil.steps.tasks import TextGeneration
from tests.llm_runs import agenerate_once
from tests.local_http_server import RecordingServer

KEY = "sk-service-key-0123456789"
CHAT = [{"role": "user", "content": "hi"}]


def completion(text: Any = "ok", finish_reason: str = "stop", prompt_tokens: int = 3) -> bytes:
    return json.dumps({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 2},
    }).encode()


def answering(text: str = "ok") -> Callable[[str, Any], Any]:
    return lambda path, body: (200, {}, completion(text))


def generate(llm: OpenAILLM, input: Any = CHAT, **kwargs: Any) -> Dict[str, Any]:
    return agenerate_once(llm, input, **kwargs)


# How each class is pointed at a local server (whose base_url ends in /v1) with a key.
SERVICES: Dict[str, Callable[[str], OpenAILLM]] = {
    "TogetherLLM": lambda url: TogetherLLM(model="m", base_url=url, api_key=KEY),
    "AnyscaleLLM": lambda url: AnyscaleLLM(model="m", base_url=url, api_key=KEY),
    "GroqLLM": lambda url: GroqLLM(model="m", base_url=url, api_key=KEY),
    "MistralLLM": lambda url: MistralLLM(model="m", base_url=url, api_key=KEY),
    "ClientvLLM": lambda url: ClientvLLM(model="m", base_url=url, api_key=KEY),
    "AzureOpenAILLM": lambda url: AzureOpenAILLM(
        model="m", base_url=url[: -len("/v1")], api_key=KEY, api_version="2024-10-21"
    ),
    "InferenceEndpointsLLM": lambda url: InferenceEndpointsLLM(base_url=url, model_id="m", api_key=KEY),
}
OPENAI_LIKE = ["TogetherLLM", "AnyscaleLLM", "GroqLLM", "MistralLLM", "ClientvLLM"]


@pytest.fixture
def recording() -> Iterator[RecordingServer]:
    with RecordingServer(answering()) as server:
        yield server


# -- defaults: base URLs and key variables (no request is sent) --------------------------------------------------


@pytest.mark.parametrize(
    "cls, default_url, url_variable, key_variable",
    [
        (TogetherLLM, "https://api.together.xyz/v1", "TOGETHER_BASE_URL", "TOGETHER_API_KEY"),
        (AnyscaleLLM, "https://api.endpoints.anyscale.com/v1", "ANYSCALE_BASE_URL", "ANYSCALE_API_KEY"),
        (GroqLLM, "https://api.groq.com/openai/v1", "GROQ_BASE_URL", "GROQ_API_KEY"),
        (MistralLLM, "https://api.mistral.ai/v1", None, "MISTRAL_API_KEY"),
    ],
)
def test_each_service_has_its_base_url_and_reads_its_own_key_variable(
    cls, default_url, url_variable, key_variable, monkeypatch
):
    for variable in (url_variable, key_variable):
        if variable:
            monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-key-is-not-theirs")
    llm = cls(model="m")
    assert llm.base_url == default_url
    # OpenAI's key is not another service's: the problem names the service's variable.
    [problem] = llm.check_ready()
    assert f"`{key_variable}`" in problem and "OPENAI_API_KEY" not in problem

    monkeypatch.setenv(key_variable, "k-from-env")
    assert cls(model="m").check_ready() == []
    if url_variable:
        monkeypatch.setenv(url_variable, "https://gateway.example/v1")
        assert cls(model="m").base_url == "https://gateway.example/v1"


def test_groq_takes_the_root_url_that_distilabel_and_groqs_sdk_use(monkeypatch):
    monkeypatch.setenv("GROQ_BASE_URL", "https://api.groq.com")
    assert GroqLLM(model="m").base_url == "https://api.groq.com/openai/v1"
    gateway = "https://gw.example/groq/openai/v1"
    assert GroqLLM(model="m", base_url=gateway).base_url == gateway


def test_mistral_takes_distilabels_endpoint_and_max_concurrent_requests():
    llm = MistralLLM(model="m", endpoint="https://mistral.internal.example", max_concurrent_requests=5)
    assert (llm.base_url, llm.max_concurrency) == ("https://mistral.internal.example/v1", 5)
    with pytest.raises(ValueError, match="both `endpoint`"):
        MistralLLM(model="m", endpoint="https://a.example", base_url="https://b.example/v1")


def test_a_vllm_server_needs_its_url_and_model_name_but_no_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-key-is-not-theirs")
    problems = ClientvLLM().check_ready()
    assert len(problems) == 2
    assert "needs `base_url`" in problems[0] and "needs `model`" in problems[1]
    # distilabel's tokenizer names the model when model is not given; a root URL gets /v1.
    llm = ClientvLLM(base_url="http://10.0.0.5:8000", tokenizer="Qwen/Qwen2.5-7B-Instruct")
    assert llm.base_url == "http://10.0.0.5:8000/v1"
    assert llm.model == llm.model_name == "Qwen/Qwen2.5-7B-Instruct"
    assert llm.check_ready() == []


# -- the request each class sends --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPENAI_LIKE)
def test_requests_go_to_chat_completions_with_the_key_as_a_bearer_token(name, recording):
    output = generate(SERVICES[name](recording.base_url), max_new_tokens=9)
    [request] = recording.seen
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    assert request["body"]["model"] == "m" and request["body"]["messages"] == CHAT
    assert request["body"]["max_tokens"] == 9
    assert output["generations"] == ["ok"]
    assert output["statistics"] == {"input_tokens": [3], "output_tokens": [2]}


def test_a_vllm_server_without_a_key_gets_no_authorization_header(recording, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-key-is-not-theirs")
    generate(ClientvLLM(model="m", base_url=recording.base_url))
    assert "Authorization" not in recording.seen[0]["headers"]


def test_vllm_sampling_parameters_are_top_level_body_fields_sent_only_when_given(recording):
    llm = ClientvLLM(model="m", base_url=recording.base_url)
    generate(llm, top_k=20, min_p=0.05, repetition_penalty=1.1, seed=3, logit_bias={"50256": -100})
    generate(llm)
    given, default = (request["body"] for request in recording.seen)
    assert (given["top_k"], given["min_p"], given["repetition_penalty"], given["seed"]) == (20, 0.05, 1.1, 3)
    assert given["logit_bias"] == {"50256": -100} and "extra_body" not in given
    assert not {"top_k", "min_p", "repetition_penalty", "logit_bias"} & set(default)


def test_a_string_input_to_a_vllm_server_is_a_raw_completion(recording):
    generate(ClientvLLM(model="m", base_url=recording.base_url), "<|im_start|>user\n")
    assert recording.seen[0]["path"] == "/v1/completions"
    assert recording.seen[0]["body"]["prompt"] == "<|im_start|>user\n"


def test_mistral_gets_random_seed_safe_prompt_and_its_default_temperature(recording):
    llm = MistralLLM(model="mistral-small-latest", base_url=recording.base_url, api_key=KEY)
    generate(llm, num_generations=2, random_seed=7, safe_prompt=True, temperature=0.3)
    generate(llm, seed=11)
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    generate(llm, structured_output=schema)
    seeded, openai_seed, structured = (request["body"] for request in recording.seen)
    assert (seeded["random_seed"], seeded["safe_prompt"], seeded["temperature"], seeded["n"]) == (7, True, 0.3, 2)
    assert "seed" not in seeded and "seed" not in openai_seed
    # OpenAI's name for the seed is sent under Mistral's; a temperature not given is null: the model's default.
    assert openai_seed["random_seed"] == 11 and openai_seed["temperature"] is None
    assert "safe_prompt" not in openai_seed
    assert structured["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    with pytest.raises(ValueError, match="two names for the same seed"):
        generate(llm, seed=1, random_seed=2)
    assert len(recording.seen) == 3


@pytest.mark.parametrize("name", ["GroqLLM", "MistralLLM"])
def test_services_without_text_completions_refuse_a_string_input_before_any_request(name, recording):
    with pytest.raises(ValueError, match="takes chat messages only"):
        generate(SERVICES[name](recording.base_url), "Once upon a time")
    assert recording.seen == []


def test_groq_sends_one_request_per_generation_each_with_its_own_seed(recording):
    llm = GroqLLM(model="m", base_url=recording.base_url, api_key=KEY)
    [output] = llm.generate([CHAT], num_generations=3, seed=40)
    llm.unload()
    bodies = [request["body"] for request in recording.seen]
    assert [body["n"] for body in bodies] == [1, 1, 1]
    assert sorted(body["seed"] for body in bodies) == [40, 41, 42]
    assert output["generations"] == ["ok", "ok", "ok"]
    assert output["statistics"] == {"input_tokens": [3, 3, 3], "output_tokens": [2, 2, 2]}


def test_each_service_checks_the_ranges_it_documents():
    mistral = MistralLLM(model="m", api_key=KEY)
    assert "between 0.0 and 1.5" in mistral.check_generation_kwarg("temperature", 1.6)
    assert mistral.check_generation_kwarg("temperature", 1.2) is None
    vllm = ClientvLLM(model="m", base_url="http://127.0.0.1:1/v1")
    assert vllm.check_generation_kwarg("temperature", 3.0) is None  # vLLM has no upper bound
    assert vllm.check_generation_kwarg("top_k", -1) is None
    assert "between 0.0 and 1.0" in vllm.check_generation_kwarg("min_p", 1.5)
    assert "min_p" not in GroqLLM(model="m").generation_parameter_names()
    assert "logprobs" not in GroqLLM(model="m").generation_parameter_names()


# -- inherited from OpenAILLM: once per class ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_a_429_is_retried_after_the_servers_retry_after(name):
    replies: List[Any] = [(429, {"Retry-After": "0.4"}, b'{"error": {"message": "slow down"}}')]
    with RecordingServer(lambda path, body: replies.pop(0) if replies else (200, {}, completion())) as server:
        llm = SERVICES[name](server.base_url).model_copy(update={"retry_base_delay": 0.001})
        started = time.monotonic()
        [output] = llm.generate([CHAT])
        elapsed = time.monotonic() - started
        llm.unload()
    assert output["generations"] == ["ok"] and len(server.seen) == 2
    assert elapsed >= 0.4  # the server's wait, not the 1 ms backoff


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_a_5xx_is_retried_and_a_4xx_is_final(name):
    replies: List[Any] = [(503, {}, b'{"error": {"message": "busy"}}')]
    with RecordingServer(lambda path, body: replies.pop(0) if replies else (200, {}, completion())) as server:
        llm = SERVICES[name](server.base_url).model_copy(update={"retry_base_delay": 0.001})
        assert llm.generate([CHAT])[0]["generations"] == ["ok"]
        llm.unload()
    assert len(server.seen) == 2
    with RecordingServer(lambda path, body: (400, {}, b'{"error": {"message": "bad field"}}')) as server:
        llm = SERVICES[name](server.base_url)
        with pytest.raises(openai.BadRequestError, match="bad field"):
            llm.generate([CHAT])
        llm.unload()
    assert len(server.seen) == 1


def _answer_by_instruction(path: str, body: Dict[str, Any]) -> Any:
    instruction = body["messages"][-1]["content"]
    if "blocked" in instruction:
        return 200, {}, completion(None, finish_reason="content_filter")
    if "empty" in instruction:
        return 200, {}, completion("  ")
    return 200, {}, completion(f"answer to {instruction}", prompt_tokens=5)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_a_pipeline_run_counts_tokens_and_answers_without_text_as_failures(name, tmp_path):
    with RecordingServer(_answer_by_instruction) as server:
        with Pipeline(f"service-{name}") as pipeline:
            load = LoadDataFromDicts(data=[{"instruction": "q1"}, {"instruction": "blocked"}, {"instruction": "empty"}])
            load >> TextGeneration(name="gen", llm=SERVICES[name](server.base_url))
        distiset = pipeline.run(use_cache=False)
    rows = distiset["default"]["train"].to_list()
    assert [row["generation"] for row in rows] == ["answer to q1", None, None]
    assert rows[1]["distilabel_metadata"]["error_gen"] == "no answer: no text (content_filter)"
    assert rows[2]["distilabel_metadata"]["error_gen"] == "no answer: empty text (stop)"
    metrics = pipeline.last_run_metrics["gen"]
    assert metrics["llm_requests"] == 3 and metrics["llm_failures"] == 2
    assert metrics["input_tokens"] == 5 + 3 + 3 and metrics["output_tokens"] == 6


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_the_key_is_never_in_an_error_a_repr_or_a_saved_pipeline_which_loads_back(name, tmp_path):
    echo = json.dumps({"error": {"message": f"Invalid key {KEY}", "type": "invalid_request_error"}}).encode()
    with RecordingServer(lambda path, body: (401, {}, echo)) as server:
        llm = SERVICES[name](server.base_url)
        with pytest.raises(openai.AuthenticationError) as caught:
            llm.generate([CHAT])
        llm.unload()
    assert KEY not in str(caught.value) and KEY not in json.dumps(caught.value.body)
    assert "Invalid key **********" in str(caught.value)
    assert KEY not in repr(llm) and KEY not in str(llm)

    with Pipeline(f"saved-{name}") as pipeline:
        LoadDataFromDicts(data=[{"instruction": "q"}]) >> TextGeneration(name="gen", llm=llm)
    path = tmp_path / "pipeline.yaml"
    pipeline.save(path)
    assert KEY not in path.read_text()
    loaded = Pipeline.from_file(path).dag.steps["gen"].llm
    assert type(loaded) is type(llm)
    assert loaded.model_dump(exclude={"api_key"}) == llm.model_dump(exclude={"api_key"})
    assert loaded.api_key is None
