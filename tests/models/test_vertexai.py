"""VertexAILLM against a local server speaking Vertex AI's ``generateContent`` REST shape, with the real SDK."""

from __future__ import annotations

import time
import pickle
import re
import threading
from typing import Any, Dict, Iterator, List, Optional

import pytest
from aiohttp import web

from beam_distil.models import VertexAILLM
from beam_distil.pipeline import Pipeline
from beam_distil.pipeline.validation import PipelineValidationError
from beam_distil.steps.generators import LoadDataFromDicts
from beam_distil.steps.tasks import TextGeneration
from tests.local_http_server import LocalHTTPServer

TOKEN = "ya29.test-access-token"
PATH = re.compile(r"^/v1beta1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/publishers/google/models/(?P<model>[^/:]+):generateContent$")


class FakeVertexServer:
    """Answers ``"<model>: <last user text> #<i>"`` per candidate, and records every request."""

    def __init__(self) -> None:
        self.requests: List[Dict[str, Any]] = []
        self.paths: List[str] = []
        self.headers: List[Dict[str, str]] = []
        self.fail_first_n_429 = 0
        self.retry_after = "0"
        self.block_prompt: Optional[str] = None  # promptFeedback.blockReason
        self.block_candidates = False  # finishReason SAFETY, no text
        self.max_candidates: Optional[int] = None  # fewer candidates than asked
        self._lock = threading.Lock()
        self._server = LocalHTTPServer(self._handle)
        self.base_url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            self.paths.append(request.path)
            self.headers.append(dict(request.headers))
            self.requests.append(body)
            count = len(self.requests)
        match = PATH.match(request.path)
        if match is None:
            return web.json_response({"error": {"code": 404, "message": f"no route {request.path}", "status": "NOT_FOUND"}}, status=404)
        if count <= self.fail_first_n_429:
            return web.json_response(
                {"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}},
                status=429,
                headers={"Retry-After": self.retry_after},
            )
        usage = {"promptTokenCount": 7, "candidatesTokenCount": 3, "totalTokenCount": 10}
        if self.block_prompt:
            return web.json_response({"promptFeedback": {"blockReason": self.block_prompt}, "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}})
        last_user = [c for c in body["contents"] if c.get("role") == "user"][-1]["parts"][0]["text"]
        n = body.get("generationConfig", {}).get("candidateCount", 1)
        if self.max_candidates is not None:
            n = min(n, self.max_candidates)
        candidates = []
        for index in range(n):
            if self.block_candidates:
                candidates.append({"index": index, "finishReason": "SAFETY", "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH", "blocked": True}]})
            else:
                suffix = f" #{index}" if n > 1 else ""
                candidates.append(
                    {
                        "index": index,
                        "content": {"role": "model", "parts": [{"text": f"{match['model']}: {last_user}{suffix}"}]},
                        "finishReason": "STOP",
                    }
                )
        return web.json_response({"candidates": candidates, "usageMetadata": usage, "modelVersion": match["model"]})

    def start(self) -> "FakeVertexServer":
        self._server.start()
        self.base_url = self._server.url
        return self

    def stop(self) -> None:
        self._server.stop()


pytestmark = pytest.mark.usefixtures("no_google_env")


@pytest.fixture
def vertex_server() -> Iterator[FakeVertexServer]:
    server = FakeVertexServer().start()
    yield server
    server.stop()


def make_llm(server: FakeVertexServer, **kwargs: Any) -> VertexAILLM:
    return VertexAILLM(model="gemini-test", project="proj", location="europe-west4", base_url=server.base_url, api_token=TOKEN, **kwargs)


def generate(llm: VertexAILLM, input: Any, **kwargs: Any) -> Dict[str, Any]:
    llm.load()
    return llm.generate([input], **kwargs)[0]


def test_answer_text_tokens_path_and_auth(vertex_server):
    output = generate(make_llm(vertex_server), [{"role": "user", "content": "hello"}])
    assert output["generations"] == ["gemini-test: hello"]
    assert output["statistics"] == {"input_tokens": [7], "output_tokens": [3]}
    assert output["finish_reasons"] == ["STOP"]
    assert vertex_server.paths == ["/v1beta1/projects/proj/locations/europe-west4/publishers/google/models/gemini-test:generateContent"]
    assert vertex_server.headers[0]["Authorization"] == f"Bearer {TOKEN}"


def test_roles_are_mapped_and_system_goes_to_system_instruction(vertex_server):
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "how are you"},
    ]
    output = generate(make_llm(vertex_server), chat, max_new_tokens=32, temperature=0.2, stop="END", seed=3)
    assert output["generations"] == ["gemini-test: how are you"]
    body = vertex_server.requests[0]
    assert body["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    assert [(c["role"], c["parts"][0]["text"]) for c in body["contents"]] == [("user", "hi"), ("model", "hello"), ("user", "how are you")]
    config = body["generationConfig"]
    assert config["maxOutputTokens"] == 32
    assert config["temperature"] == 0.2
    assert config["stopSequences"] == ["END"]
    assert config["seed"] == 3


def test_num_generations_is_candidate_count_and_missing_candidates_are_none(vertex_server):
    llm = make_llm(vertex_server)
    output = generate(llm, [{"role": "user", "content": "q"}], num_generations=3)
    assert vertex_server.requests[0]["generationConfig"]["candidateCount"] == 3
    assert output["generations"] == ["gemini-test: q #0", "gemini-test: q #1", "gemini-test: q #2"]
    vertex_server.max_candidates = 1
    output = llm.generate([[{"role": "user", "content": "q"}]], num_generations=3)[0]
    assert output["generations"] == ["gemini-test: q", None, None]
    assert output["finish_reasons"] == ["STOP", None, None]


def test_429_is_retried_after_the_retry_after_delay(vertex_server):
    vertex_server.fail_first_n_429 = 1
    vertex_server.retry_after = "0.4"
    started = time.monotonic()
    output = generate(make_llm(vertex_server), "plain prompt")
    assert time.monotonic() - started >= 0.4
    assert output["generations"] == ["gemini-test: plain prompt"]
    assert len(vertex_server.requests) == 2


def test_429_without_retries_raises(vertex_server):
    from google.genai import errors

    vertex_server.fail_first_n_429 = 5
    with pytest.raises(errors.ClientError) as info:
        generate(make_llm(vertex_server, max_retries=0), "x")
    assert info.value.code == 429
    assert len(vertex_server.requests) == 1


def test_blocked_prompt_gives_none_with_its_reason(vertex_server):
    vertex_server.block_prompt = "SAFETY"
    output = generate(make_llm(vertex_server), "bad", num_generations=2)
    assert output["generations"] == [None, None]
    assert output["finish_reasons"] == ["PROMPT_BLOCKED:SAFETY", "PROMPT_BLOCKED:SAFETY"]
    assert output["statistics"]["input_tokens"] == [7]


def test_blocked_candidate_gives_none_with_its_reason(vertex_server):
    vertex_server.block_candidates = True
    output = generate(make_llm(vertex_server), "bad", safety_settings=[{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_LOW_AND_ABOVE"}])
    assert output["generations"] == [None]
    assert output["finish_reasons"] == ["SAFETY"]
    assert vertex_server.requests[0]["safetySettings"] == [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_LOW_AND_ABOVE"}]


def test_structured_output_sends_schema_and_mime_type(vertex_server):
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    generate(make_llm(vertex_server), "who", structured_output=schema)
    config = vertex_server.requests[0]["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == schema


def test_in_a_pipeline(vertex_server):
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "a"}, {"instruction": "b"}])
        load >> TextGeneration(llm=make_llm(vertex_server), system_prompt="sys")
    rows = pipeline.run()["default"]["train"].to_list()
    assert sorted(row["generation"] for row in rows) == ["gemini-test: a", "gemini-test: b"]
    assert {row["model_name"] for row in rows} == {"gemini-test"}
    assert rows[0]["distilabel_metadata"]["statistics_text_generation_0"] == {"input_tokens": 7, "output_tokens": 3}
    assert all(body["systemInstruction"]["parts"] == [{"text": "sys"}] for body in vertex_server.requests)


def test_pickling_a_loaded_llm_leaves_out_the_client(vertex_server):
    llm = make_llm(vertex_server)
    llm.load()
    assert llm._aclient is not None
    clone = pickle.loads(pickle.dumps(llm))
    assert clone._aclient is None
    assert clone.api_token.get_secret_value() == TOKEN
    assert generate(clone, "again")["generations"] == ["gemini-test: again"]


def test_token_is_secret_and_redacted(vertex_server):
    llm = make_llm(vertex_server)
    assert TOKEN not in repr(llm)
    assert TOKEN not in llm.model_dump_json()
    assert llm.redact(f"bad token {TOKEN}") == "bad token **********"
    other = VertexAILLM(**{**llm.model_dump(exclude={"api_token"}), "api_token": "another-token-value"})
    assert other.client_fingerprint() != llm.client_fingerprint()


def test_project_and_location_from_the_environment(vertex_server, monkeypatch):
    llm = VertexAILLM(model="gemini-test", base_url=vertex_server.base_url, api_token=TOKEN)
    assert llm.project is None
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-proj")
    assert llm.check_ready() == []
    generate(llm, "x")
    assert vertex_server.paths[-1].startswith("/v1beta1/projects/env-proj/locations/us-central1/")
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "asia-east1")
    generate(llm, "x")
    assert vertex_server.paths[-1].startswith("/v1beta1/projects/env-proj/locations/asia-east1/")


def test_missing_project_names_the_env_var(vertex_server):
    llm = VertexAILLM(model="gemini-test", base_url=vertex_server.base_url, api_token=TOKEN)
    problems = llm.check_ready()
    assert len(problems) == 1 and "GOOGLE_CLOUD_PROJECT" in problems[0]
    with pytest.raises(ValueError, match="GOOGLE_CLOUD_PROJECT"):
        llm.load()
    with Pipeline("p") as pipeline:
        LoadDataFromDicts(data=[{"instruction": "a"}]) >> TextGeneration(llm=llm)
    with pytest.raises(PipelineValidationError, match="GOOGLE_CLOUD_PROJECT"):
        pipeline.run()
    assert vertex_server.requests == []


def test_without_a_token_load_uses_application_default_credentials(vertex_server):
    import google.auth.exceptions

    llm = VertexAILLM(model="gemini-test", project="proj", base_url=vertex_server.base_url)
    # GOOGLE_APPLICATION_CREDENTIALS points at a missing file (see the autouse fixture): ADC fails fast, offline.
    with pytest.raises(google.auth.exceptions.DefaultCredentialsError):
        llm.load()
    assert llm._aclient is None
