"""Retries (Retry-After, backoff, malformed bodies, timeouts), adaptive concurrency and rate limits, on
OpenAILLM's client against the local server."""

from __future__ import annotations

import asyncio
import random
import time

from beam_distil.models import OpenAILLM
from beam_distil.models.limits import AdaptiveConcurrencyLimit, RateLimiter
from beam_distil.models.retries import backoff_seconds
from beam_distil.pipeline import Pipeline
from beam_distil.steps import LoadDataFromDicts
from beam_distil.steps.tasks import TextGeneration

CHAT = [{"role": "user", "content": "hi"}]


def call(llm: OpenAILLM):
    from beam_distil.models.event_loop import run_coroutine

    llm.load()
    try:
        return run_coroutine(llm.acall(CHAT))
    finally:
        llm.unload()


def make(server, **kwargs) -> OpenAILLM:
    return OpenAILLM(model="m", base_url=server.base_url, api_key="t", retry_base_delay=0.01, **kwargs)


def test_server_errors_are_retried_and_counted(openai_server):
    openai_server.fail_first_n = 2
    outcome = call(make(openai_server))
    assert outcome.error is None and outcome.output["generations"] == ["m: hi"]
    assert outcome.retries == 2
    assert openai_server.request_count == 3


def test_retry_after_is_honoured(openai_server):
    openai_server.fail_first_n_429 = 1
    openai_server.retry_after = 0.5
    started = time.monotonic()
    outcome = call(make(openai_server))
    assert time.monotonic() - started >= 0.5
    assert outcome.retries == 1 and outcome.error is None


def test_a_malformed_body_is_retried(openai_server):
    openai_server.configure(malformed_rate=1.0)
    llm = make(openai_server, max_retries=2)
    outcome = call(llm)
    assert outcome.output is None and outcome.retries == 2
    assert openai_server.request_count == 3


def test_a_timeout_is_retried_then_given_up(openai_server):
    openai_server.configure(timeout_rate=1.0, hang_seconds=5)
    outcome = call(make(openai_server, timeout=0.2, max_retries=1))
    assert type(outcome.error).__name__ == "APITimeoutError"
    assert outcome.retries == 1


def test_client_errors_are_not_retried(openai_server):
    outcome = call(OpenAILLM(model="m", base_url=openai_server.base_url + "/nowhere", api_key="t"))
    assert type(outcome.error).__name__ == "NotFoundError"
    assert outcome.retries == 0


def test_retries_and_failures_reach_the_metrics_and_rows(openai_server):
    openai_server.fail_first_n = 3
    with Pipeline("retries") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(5)])
        load >> TextGeneration(name="gen", llm=make(openai_server), input_batch_size=1)
    rows = pipeline.run(options={"direct_running_mode": "in_memory"})["default"]["train"].to_list()
    assert [row["generation"] for row in rows] == [f"m: q{i}" for i in range(5)]
    assert pipeline.last_run_metrics["gen"]["llm_retries"] == 3
    assert pipeline.last_run_metrics["gen"]["llm_failures"] == 0


def test_backoff_is_jittered_exponential_and_capped():
    rng = random.Random(0)
    delays = [backoff_seconds(attempt, 0.5, None, rng) for attempt in range(12)]
    assert all(0 <= d <= min(60, 0.5 * 2**a) for a, d in enumerate(delays))
    assert len(set(delays)) == len(delays)
    assert backoff_seconds(3, 0.5, 2.5, rng) == 2.5
    assert backoff_seconds(3, 0.5, 900, rng) == 60


async def most_held_at_once(limit: AdaptiveConcurrencyLimit, holders: int = 20) -> int:
    """How many of ``holders`` concurrent tasks held ``limit`` at the same time."""
    in_use, most = 0, 0

    async def hold():
        nonlocal in_use, most
        async with limit:
            in_use += 1
            most = max(most, in_use)
            await asyncio.sleep(0.01)
            in_use -= 1

    await asyncio.gather(*(hold() for _ in range(holders)))
    return most


def test_adaptive_concurrency_halves_on_rate_limits_and_recovers():
    async def scenario():
        limit = AdaptiveConcurrencyLimit(8)
        await limit.on_rate_limited()
        assert limit.allowance == 4
        await limit.on_rate_limited()
        await limit.on_rate_limited()
        await limit.on_rate_limited()
        assert limit.allowance == 1
        for _ in range(1 + 2 + 3):
            await limit.on_success()
        assert limit.allowance == 4
        return await most_held_at_once(limit)

    assert asyncio.run(scenario()) == 4


def test_requests_per_minute_are_spread_out():
    async def scenario():
        limiter = RateLimiter(requests_per_minute=600, tokens_per_minute=None)  # 10 per second
        started = time.monotonic()
        for _ in range(25):
            await limiter.wait(estimated_tokens=1)
        return time.monotonic() - started

    assert 1.3 <= asyncio.run(scenario()) <= 3.0


def test_tokens_per_minute_are_spread_out():
    async def scenario():
        limiter = RateLimiter(requests_per_minute=None, tokens_per_minute=60_000)  # 1000 per second
        started = time.monotonic()
        for _ in range(5):
            await limiter.wait(estimated_tokens=500)
        return time.monotonic() - started

    assert 1.3 <= asyncio.run(scenario()) <= 3.0


def test_max_concurrency_bounds_what_the_server_sees(openai_server):
    limit = 3
    openai_server.latency = 0.1
    with Pipeline("bounded") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(30)])
        load >> TextGeneration(llm=make(openai_server, max_concurrency=limit))
    pipeline.run(options={"direct_running_mode": "in_memory"})
    assert openai_server.max_in_flight == limit


def test_a_rate_limit_while_requests_are_in_flight_shrinks_as_they_finish():
    async def scenario():
        limit = AdaptiveConcurrencyLimit(8)
        held = [limit.__aenter__() for _ in range(8)]
        await asyncio.gather(*held)
        await limit.on_rate_limited()  # all 8 in flight: the cut is paid as they leave
        for _ in range(8):
            await limit.__aexit__(None, None, None)
        return await most_held_at_once(limit)

    assert asyncio.run(scenario()) == 4
