"""Tests for the local OpenAI-compatible server, driven through the real ``openai`` client."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from beam_distil.testing.openai_server import OpenAICompatibleServer

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "what is two plus two"},
]


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    with OpenAICompatibleServer(seed=1234) as srv:
        yield srv


def make_client(srv: OpenAICompatibleServer, **kwargs: Any) -> openai.OpenAI:
    kwargs.setdefault("max_retries", 0)
    return openai.OpenAI(api_key="test", base_url=srv.base_url, **kwargs)


def make_async_client(srv: OpenAICompatibleServer, **kwargs: Any) -> openai.AsyncOpenAI:
    kwargs.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(api_key="test", base_url=srv.base_url, **kwargs)


def chat(client: openai.OpenAI, model: str = "m", **kwargs: Any) -> Any:
    return client.chat.completions.create(model=model, messages=MESSAGES, **kwargs)


def test_base_url_and_lifecycle() -> None:
    srv = OpenAICompatibleServer()
    assert not srv.is_running
    srv.start()
    try:
        assert srv.base_url.startswith("http://127.0.0.1:")
        assert srv.base_url.endswith("/v1")
        assert srv.bound_port > 0
        assert chat(make_client(srv)).choices[0].message.content == "m: what is two plus two"
    finally:
        srv.stop()
    srv.stop()  # idempotent
    assert not srv.is_running


def test_chat_answer_shape_and_content(server: OpenAICompatibleServer) -> None:
    reply = chat(make_client(server), model="tiny")
    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-")
    assert reply.model == "tiny"
    assert isinstance(reply.created, int)
    assert len(reply.choices) == 1
    choice = reply.choices[0]
    assert choice.index == 0
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == "tiny: what is two plus two"
    assert server.request_count == 1
    assert server.requests_by_model == {"tiny": 1}
    assert server.status_counts == {200: 1}
    assert server.requests[0]["messages"] == MESSAGES


def test_n_choices_and_usage(server: OpenAICompatibleServer) -> None:
    reply = chat(make_client(server), model="m", n=3)
    contents = [c.message.content for c in reply.choices]
    assert contents == [f"m: what is two plus two #{i}" for i in range(3)]
    assert [c.index for c in reply.choices] == [0, 1, 2]
    # prompt: "You are terse." (3 words) + "what is two plus two" (5 words)
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 8
    # each answer: "m:" + 5 words + "#i" = 7 words
    assert reply.usage.completion_tokens == 21
    assert reply.usage.total_tokens == 29


def test_responder_and_canned_answers(server: OpenAICompatibleServer) -> None:
    client = make_client(server)
    server.set_responder(lambda model, messages: f"{model} saw {len(messages)} messages")
    assert chat(client, model="a").choices[0].message.content == "a saw 2 messages"

    server.set_answer("fixed", "always this")
    server.set_answer("echo", lambda messages: messages[-1]["content"].upper())
    assert chat(client, model="fixed").choices[0].message.content == "always this"
    assert chat(client, model="echo").choices[0].message.content == "WHAT IS TWO PLUS TWO"

    server.set_responder(None)
    assert chat(client, model="a").choices[0].message.content == "a: what is two plus two"


def test_constructor_answers_and_responder() -> None:
    with OpenAICompatibleServer(
        responder=lambda model, messages: "from responder", answers={"x": "from answers"}
    ) as srv:
        client = make_client(srv)
        assert chat(client, model="x").choices[0].message.content == "from answers"
        assert chat(client, model="y").choices[0].message.content == "from responder"


def test_responder_exception_is_500(server: OpenAICompatibleServer) -> None:
    def broken(model: str, messages: list[dict[str, Any]]) -> str:
        raise RuntimeError("boom")

    server.set_responder(broken)
    with pytest.raises(openai.InternalServerError, match="boom"):
        chat(make_client(server))


def test_completions_endpoint(server: OpenAICompatibleServer) -> None:
    client = make_client(server)
    reply = client.completions.create(model="base", prompt="one two three", n=2)
    assert reply.object == "text_completion"
    assert [c.text for c in reply.choices] == ["base: one two three #0", "base: one two three #1"]
    assert [c.finish_reason for c in reply.choices] == ["stop", "stop"]
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 3
    assert reply.usage.completion_tokens == 10
    assert reply.usage.total_tokens == 13
    assert server.requests_by_model == {"base": 1}


def test_models_endpoint(server: OpenAICompatibleServer) -> None:
    server.set_answer("canned-model", "hi")
    ids = {m.id for m in make_client(server).models.list()}
    assert {"test-model", "canned-model"} <= ids
    assert server.request_count == 0  # GETs are not counted


def test_latency_serves_requests_concurrently() -> None:
    async def run(srv: OpenAICompatibleServer) -> list[Any]:
        client = make_async_client(srv)
        try:
            return await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model="m", messages=[{"role": "user", "content": f"q{i}"}]
                    )
                    for i in range(20)
                )
            )
        finally:
            await client.close()

    with OpenAICompatibleServer(latency=0.3) as srv:
        started = time.perf_counter()
        replies = asyncio.run(run(srv))
        elapsed = time.perf_counter() - started
        assert sorted(r.choices[0].message.content for r in replies) == sorted(
            f"m: q{i}" for i in range(20)
        )
        assert elapsed < 2.0, elapsed  # serial would take 6 s
        assert srv.max_in_flight >= 10
        assert srv.in_flight == 0
        assert srv.request_count == 20


def test_hundreds_of_concurrent_requests() -> None:
    async def run(srv: OpenAICompatibleServer) -> list[Any]:
        client = make_async_client(srv)
        try:
            return await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model="m", messages=[{"role": "user", "content": "x"}]
                    )
                    for _ in range(300)
                )
            )
        finally:
            await client.close()

    with OpenAICompatibleServer(latency=0.5) as srv:
        started = time.perf_counter()
        replies = asyncio.run(run(srv))
        elapsed = time.perf_counter() - started
        assert len(replies) == 300
        assert srv.status_counts == {200: 300}
        assert srv.max_in_flight >= 200
        assert elapsed < 5.0, elapsed


def test_error_500(server: OpenAICompatibleServer) -> None:
    server.error_rate_500 = 1.0
    with pytest.raises(openai.InternalServerError) as info:
        chat(make_client(server))
    assert info.value.status_code == 500
    assert server.status_counts == {500: 1}


def test_error_429_has_retry_after(server: OpenAICompatibleServer) -> None:
    server.configure(error_rate_429=1.0, retry_after=7)
    with pytest.raises(openai.RateLimitError) as info:
        chat(make_client(server))
    assert info.value.status_code == 429
    assert info.value.response.headers["Retry-After"] == "7"
    assert server.status_counts == {429: 1}


def test_client_retries_after_first_429() -> None:
    with OpenAICompatibleServer(fail_first_n_429=1, retry_after=0.1) as srv:
        client = make_client(srv, max_retries=2)
        reply = chat(client)
        assert reply.choices[0].message.content == "m: what is two plus two"
        assert srv.request_count == 2
        assert srv.status_counts == {429: 1, 200: 1}


def test_fail_first_n(server: OpenAICompatibleServer) -> None:
    server.fail_first_n = 2
    client = make_client(server)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            chat(client)
    assert chat(client).choices[0].message.content == "m: what is two plus two"
    assert server.status_counts == {500: 2, 200: 1}

    server.reset_counters()  # restarts the fail_first_n budget too
    assert server.request_count == 0
    assert server.requests == []
    with pytest.raises(openai.InternalServerError):
        chat(client)


def test_timeout_rate_triggers_client_timeout(server: OpenAICompatibleServer) -> None:
    server.timeout_rate = 1.0
    client = make_client(server, timeout=0.5)
    started = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        chat(client)
    assert time.perf_counter() - started < 3.0
    # the abandoned request must not stay in flight for hang_seconds
    deadline = time.monotonic() + 2.0
    while server.in_flight and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.in_flight == 0


def test_patient_client_gets_answer_after_hang() -> None:
    with OpenAICompatibleServer(timeout_rate=1.0, hang_seconds=0.2) as srv:
        assert chat(make_client(srv, timeout=5)).choices[0].message.content.startswith("m: ")


def test_malformed_body_raises_json_decode_error(server: OpenAICompatibleServer) -> None:
    server.malformed_rate = 1.0
    # The openai client hands the truncated JSON body straight to json.loads.
    with pytest.raises(json.JSONDecodeError):
        chat(make_client(server))
    assert server.status_counts == {200: 1}


def test_fail_models(server: OpenAICompatibleServer) -> None:
    server.fail_models = {"bad"}
    client = make_client(server)
    with pytest.raises(openai.InternalServerError):
        chat(client, model="bad")
    assert chat(client, model="good").choices[0].message.content.startswith("good: ")
    assert server.requests_by_model == {"bad": 1, "good": 1}


def _fault_sequence(seed: int, count: int = 40) -> list[str]:
    with OpenAICompatibleServer(
        seed=seed, error_rate_500=0.2, error_rate_429=0.2, malformed_rate=0.2
    ) as srv:
        client = make_client(srv)
        outcomes: list[str] = []
        for _ in range(count):
            try:
                chat(client)
                outcomes.append("ok")
            except openai.RateLimitError:
                outcomes.append("429")
            except openai.InternalServerError:
                outcomes.append("500")
            except json.JSONDecodeError:
                outcomes.append("malformed")
        return outcomes


def test_fault_choice_is_deterministic_per_seed() -> None:
    first = _fault_sequence(7)
    assert first == _fault_sequence(7)
    assert set(first) == {"ok", "429", "500", "malformed"}
    assert first != _fault_sequence(8)


def test_reseed_replays_sequence(server: OpenAICompatibleServer) -> None:
    server.configure(error_rate_500=0.5)
    client = make_client(server)

    def outcomes() -> list[int]:
        codes = []
        for _ in range(20):
            try:
                chat(client)
                codes.append(200)
            except openai.InternalServerError:
                codes.append(500)
        return codes

    server.reseed(3)
    first = outcomes()
    server.reseed(3)
    assert outcomes() == first


def test_configure_validates_and_rolls_back(server: OpenAICompatibleServer) -> None:
    with pytest.raises(ValueError):
        server.configure(latency=0.1, error_rate_500=1.5)
    assert server.latency == 0.0
    assert server.error_rate_500 == 0.0
    with pytest.raises(TypeError):
        server.configure(no_such_setting=1)


def test_bad_requests_are_400(server: OpenAICompatibleServer) -> None:
    with pytest.raises(openai.BadRequestError):
        make_client(server).chat.completions.create(model="m", messages=[])
    assert server.request_count == 1
    assert server.status_counts == {400: 1}


def test_stats_endpoint_reports_and_resets_counters():
    with OpenAICompatibleServer() as server:
        client = openai.OpenAI(api_key="test", base_url=server.base_url, max_retries=0)
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        stats_url = server.base_url.rsplit("/v1", 1)[0] + "/stats"
        with urllib.request.urlopen(stats_url) as response:
            stats = json.loads(response.read())
        assert stats["request_count"] == 1
        assert stats["requests_by_model"] == {"m": 1}
        assert stats["status_counts"] == {"200": 1}
        urllib.request.urlopen(urllib.request.Request(stats_url, method="DELETE")).close()
        assert server.request_count == 0


def test_serving_seconds_spans_first_request_to_last_answer_so_a_client_can_be_measured_without_its_start_up():
    with OpenAICompatibleServer(latency=0.2) as server:
        assert server.serving_seconds == 0.0
        client = openai.OpenAI(api_key="test", base_url=server.base_url, max_retries=0)
        time.sleep(0.5)  # idle time before the first request does not count
        for _ in range(2):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        time.sleep(0.5)  # nor does idle time after the last answer
        assert 0.4 <= server.serving_seconds < 0.85
        stats_url = server.base_url.rsplit("/v1", 1)[0] + "/stats"
        with urllib.request.urlopen(stats_url) as response:
            assert json.loads(response.read())["serving_seconds"] == pytest.approx(server.serving_seconds)
        server.reset_counters()
        assert server.serving_seconds == 0.0


def test_answered_requests_are_the_completions_sent_in_answer_order():
    with OpenAICompatibleServer() as server:
        client = openai.OpenAI(api_key="test", base_url=server.base_url, max_retries=0)
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "first"}])
        server.configure(error_rate_500=1.0)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "failed"}])
        server.configure(error_rate_500=0.0, malformed_rate=1.0)
        with pytest.raises(Exception):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "malformed"}])
        server.configure(malformed_rate=0.0)
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "second"}])
        assert [body["messages"][-1]["content"] for body in server.answered_requests] == ["first", "second"]
        assert len(server.requests) == 4
