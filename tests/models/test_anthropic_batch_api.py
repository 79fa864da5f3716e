"""AnthropicBatchAPI against the local Message Batches server (real HTTP on 127.0.0.1): what is sent, how a batch's
state and results are read, which errors are worth a retry. API level, no pipeline."""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, Iterator, List

import pytest

from beam_distil.models.anthropic import STRUCTURED_OUTPUT_TOOL, AnthropicLLM
from beam_distil.models.anthropic_batch import AnthropicBatchAPI
from beam_distil.models.event_loop import run_coroutine
from beam_distil.models.offline_batch import BatchAnswer, BatchRequest, BatchStatus
from beam_distil.models.rest import HTTPStatusError, RESTClient
from beam_distil.testing.anthropic_batch_server import AnthropicBatchServer
from tests.llm_runs import agenerate_once

MODEL = "claude-test"


pytestmark = pytest.mark.usefixtures("no_anthropic_env")


@pytest.fixture
def server() -> Iterator[AnthropicBatchServer]:
    with AnthropicBatchServer() as running:
        yield running


def make_llm(server: AnthropicBatchServer, **kwargs: Any) -> AnthropicLLM:
    return AnthropicLLM(model=MODEL, base_url=server.base_url, api_key=server.api_key, **kwargs)


@pytest.fixture
def api(server: AnthropicBatchServer) -> Iterator[AnthropicBatchAPI]:
    llm = make_llm(server, use_offline_batch_generation=True)
    llm.load()
    batch_api = llm.offline_batch_api()
    yield batch_api
    run_coroutine(batch_api.close())
    llm.unload()


def ask(custom_id: str, text: str, **kwargs: Any) -> BatchRequest:
    return BatchRequest(custom_id, [{"role": "user", "content": text}], 1, kwargs)


def submit(api: AnthropicBatchAPI, requests: List[BatchRequest]) -> str:
    return run_coroutine(api.submit([api.encode_request(r) for r in requests], submission="5eed"))


def status(api: AnthropicBatchAPI, batch_id: str) -> BatchStatus:
    return run_coroutine(api.status(batch_id))


def answers(api: AnthropicBatchAPI, batch_id: str) -> Dict[str, BatchAnswer]:
    return run_coroutine(api.answers(batch_id))


def test_a_batch_round_trip_gives_what_the_same_requests_give_online(server, api):
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "héllo wörld"}]
    requests = [BatchRequest("row-0", chat, 1, {"max_new_tokens": 32, "temperature": 0.2}), ask("row_1", "bye")]
    lines = [api.encode_request(r) for r in requests]
    assert json.loads(lines[0]) == {
        "custom_id": "row-0",
        "params": {"model": MODEL, "max_tokens": 32, "messages": chat[1:], "system": "Be brief.", "temperature": 0.2},
    }
    assert "héllo".encode() in lines[0]  # as UTF-8: the byte limit counts what is sent
    batch_id = run_coroutine(api.submit(lines, submission="5eed"))

    assert status(api, batch_id) == BatchStatus(state="running", provider_status="in_progress", total=2)
    assert status(api, batch_id) == BatchStatus(state="completed", provider_status="ended", total=2, completed=2)
    got = answers(api, batch_id)

    online = make_llm(server)
    expected = [agenerate_once(online, r.input, **r.kwargs) for r in requests]
    assert got == {"row-0": BatchAnswer(output=expected[0]), "row_1": BatchAnswer(output=expected[1])}
    assert expected[0] == {
        "generations": [f"{MODEL}: héllo wörld"],
        "statistics": {"input_tokens": [4], "output_tokens": [3]},
        "finish_reasons": ["end_turn"],
    }
    # The batch's params are the bodies posted online, and the results were read from the batch's results_url.
    assert [r["params"] for r in server.requests_of(batch_id)] == server.online_requests
    assert ("GET", f"/v1/messages/batches/{batch_id}/results", 200) in server.calls
    assert server.received == {"row-0": 1, "row_1": 1}
    assert server.polls[batch_id] == 3  # two status calls and the one answers() makes for the results_url


def test_the_limits_and_what_cannot_be_found_again(api):
    assert (api.provider, api.max_requests_per_batch, api.max_bytes_per_batch) == (
        "anthropic", 100_000, 256 * 1024 * 1024
    )
    assert AnthropicLLM.supports_offline_batch_generation
    assert run_coroutine(api.find_batch("5eed")) is None


def test_requests_the_messages_api_cannot_take_are_refused_before_sending(server, api):
    with pytest.raises(ValueError, match="one answer, and request 'row-0' asks for 2: send one request per"):
        api.encode_request(BatchRequest("row-0", "hi", 2, {}))
    with pytest.raises(ValueError, match="role 'tool'"):
        api.encode_request(BatchRequest("row-0", [{"role": "tool", "content": "x"}], 1, {}))
    with pytest.raises(ValueError, match="two names for the same limit"):
        api.encode_request(ask("row-0", "hi", max_new_tokens=1, max_tokens=2))
    assert server.calls == []


def test_structured_output_is_the_forced_tool_call_as_online(server, api):
    person = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    letters = {"type": "array", "items": {"type": "string"}}
    server.structured_answer = lambda params: (
        {"value": ["a", "b"]} if "value" in params["tools"][0]["input_schema"]["properties"] else {"name": "Ada"}
    )
    chat = [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "Who?"}]
    requests = [
        BatchRequest("person", chat, 1, {"structured_output": person}),
        ask("letters", "Two", structured_output=letters),
    ]
    batch_id = submit(api, requests)
    server.release(batch_id)
    assert status(api, batch_id).state == "completed"
    got = answers(api, batch_id)

    assert json.loads(got["person"].output["generations"][0]) == {"name": "Ada"}
    assert json.loads(got["letters"].output["generations"][0]) == ["a", "b"]  # the schema's `value`, unwrapped
    assert got["person"].output["finish_reasons"] == ["tool_use"]
    online = make_llm(server)
    for request in requests:
        assert agenerate_once(online, request.input, **request.kwargs) == got[request.custom_id].output
    params = server.requests_of(batch_id)[0]["params"]
    assert params == server.online_requests[0]
    assert params["system"] == "Answer in JSON."
    assert (params["tools"][0]["name"], params["tools"][0]["input_schema"]) == (STRUCTURED_OUTPUT_TOOL, person)
    assert params["tool_choice"] == {"type": "tool", "name": STRUCTURED_OUTPUT_TOOL}


def test_errored_requests_are_errors_but_service_errors_are_left_to_be_sent_again(server, api):
    server.fail_requests(lambda custom_id, params: custom_id == "bad", message="prompt is too long")
    batch_id = submit(api, [ask("good", "a"), ask("bad", "b")])
    assert status(api, batch_id).state == "running"
    assert status(api, batch_id) == BatchStatus(
        state="completed", provider_status="ended", total=2, completed=1, failed=1
    )
    got = answers(api, batch_id)
    assert got["bad"] == BatchAnswer(error="invalid_request_error: prompt is too long")
    assert got["good"].output["generations"] == [f"{MODEL}: a"]

    server.fail_requests(lambda custom_id, params: custom_id == "unlucky", message="oops", error_type="api_error")
    batch_id = submit(api, [ask("lucky", "a"), ask("unlucky", "b")])
    server.release(batch_id)
    assert status(api, batch_id).failed == 1
    assert set(answers(api, batch_id)) == {"lucky"}


def test_an_expired_batch_gives_the_part_it_answered(server, api):
    batch_id = submit(api, [ask(f"r{i}", f"q{i}") for i in range(4)])
    server.expire(batch_id, answered=2)
    assert status(api, batch_id) == BatchStatus(state="expired", provider_status="ended", total=4, completed=2)
    assert sorted(answers(api, batch_id)) == ["r0", "r1"]


def test_a_cancelled_batch_is_running_while_canceling_then_gives_what_it_answered(server, api):
    batch_id = submit(api, [ask("r0", "a"), ask("r1", "b")])
    run_coroutine(api.cancel(batch_id))
    assert server.processing_status(batch_id) == "canceling"
    assert status(api, batch_id) == BatchStatus(state="running", provider_status="canceling", total=2)
    assert status(api, batch_id) == BatchStatus(state="cancelled", provider_status="ended", total=2)
    assert answers(api, batch_id) == {}

    batch_id = submit(api, [ask("r2", "a"), ask("r3", "b")])
    server.cancel(batch_id, answered=1)
    assert status(api, batch_id).state == "running"
    assert status(api, batch_id) == BatchStatus(state="cancelled", provider_status="ended", total=2, completed=1)
    assert list(answers(api, batch_id)) == ["r2"]


@pytest.mark.parametrize(
    "control, reason, text",
    [("refuse", "refusal", "I can't help with that."), ("answer_without_text", "end_turn", None)],
)
def test_a_refusal_or_an_answer_without_text_is_a_none_generation_with_its_reason(server, api, control, reason, text):
    getattr(server, control)(lambda custom_id, params: params["messages"][-1]["content"] == "b")
    batch_id = submit(api, [ask("r0", "a"), ask("r1", "b")])
    server.release(batch_id)
    status(api, batch_id)
    got = answers(api, batch_id)
    assert got["r1"].error is None
    assert (got["r1"].output["generations"], got["r1"].output["finish_reasons"]) == ([None], [reason])
    assert got["r0"].output["generations"] == [f"{MODEL}: a"]
    # Online, the same answer reads the same.
    online = agenerate_once(make_llm(server), "b")
    assert online["generations"] == [None] and online["finish_reasons"] == [reason]
    content = json.loads(server_results(server, batch_id)["r1"])["result"]["message"]["content"]
    assert [block.get("text") for block in content] == ([text] if text else [])


def server_results(server: AnthropicBatchServer, batch_id: str) -> Dict[str, str]:
    async def fetch() -> bytes:
        client = RESTClient(
            base_url=server.base_url, headers={"x-api-key": server.api_key, "anthropic-version": "2023-06-01"},
            timeout=10,
        )
        try:
            return await client.request_bytes("GET", f"v1/messages/batches/{batch_id}/results")
        finally:
            await client.close()

    lines = run_coroutine(fetch()).decode().splitlines()
    return {json.loads(line)["custom_id"]: line for line in lines if line.strip()}


@pytest.mark.parametrize(
    "custom_ids, problem",
    [(["row 1!"], "requests.0.custom_id: 'row 1!' does not match pattern"),
     (["r" * 65], "does not match pattern"),
     (["row-0\n"], "does not match pattern"),
     (["same", "same"], "requests.1.custom_id: 'same' is used by another request")],
    ids=["characters", "length", "newline", "duplicate"],
)
def test_a_refused_batch_is_a_final_error_with_the_reason(server, api, custom_ids, problem):
    with pytest.raises(HTTPStatusError, match=problem) as caught:
        submit(api, [ask(custom_id, "hi") for custom_id in custom_ids])
    assert caught.value.status == 400 and caught.value.body["error"]["type"] == "invalid_request_error"
    assert not api.is_transient(caught.value)
    assert server.batch_ids == [] and server.received == {}


def test_params_without_a_required_field_refuse_the_batch(server, api):
    line = json.dumps({"custom_id": "r0", "params": {"model": MODEL, "messages": []}}).encode()
    with pytest.raises(HTTPStatusError, match=r"requests.0.params.max_tokens: field required") as caught:
        run_coroutine(api.submit([line], submission="5eed"))
    assert not api.is_transient(caught.value)


@pytest.mark.parametrize("status_code", [429, 529, 500])
@pytest.mark.parametrize("endpoint", ["create", "retrieve", "results", "cancel"])
def test_rate_limits_overload_and_server_errors_are_transient(server, api, status_code, endpoint):
    batch_id = None if endpoint == "create" else submit(api, [ask("r0", "a")])
    if endpoint == "results":
        server.release(batch_id)
        status(api, batch_id)
    server.fail_next(1, status_code, retry_after=2 if status_code == 429 else None, endpoint=endpoint)
    call = {
        "create": lambda: submit(api, [ask("r1", "b")]),
        "retrieve": lambda: status(api, batch_id),
        "results": lambda: answers(api, batch_id),
        "cancel": lambda: run_coroutine(api.cancel(batch_id)),
    }[endpoint]
    with pytest.raises(HTTPStatusError) as caught:
        call()
    assert caught.value.status == status_code
    assert api.is_transient(caught.value)
    assert caught.value.retry_after == (2 if status_code == 429 else None)
    call()  # the next call goes through


def test_a_key_the_api_refuses_is_a_final_error(server):
    llm = AnthropicLLM(model=MODEL, base_url=server.base_url, api_key="sk-ant-wrong-key-000")
    llm.load()
    batch_api = llm.offline_batch_api()
    try:
        with pytest.raises(HTTPStatusError, match="invalid x-api-key") as caught:
            submit(batch_api, [ask("r0", "a")])
    finally:
        run_coroutine(batch_api.close())
        llm.unload()
    assert caught.value.status == 401 and not batch_api.is_transient(caught.value)


def test_an_unreadable_results_line_leaves_only_its_request_unanswered(server, api, caplog):
    batch_id = submit(api, [ask("r0", "a"), ask("r1", "b"), ask("r2", "c")])
    server.corrupt_result(batch_id, "r1")
    server.release(batch_id)
    assert status(api, batch_id).state == "completed"
    with caplog.at_level(logging.WARNING, logger="beam_distil"):
        got = answers(api, batch_id)
    assert sorted(got) == ["r0", "r2"]
    assert f"of the results of Anthropic batch {batch_id} is left out, its request counts as unanswered" in caplog.text


def test_answers_of_a_batch_still_running_is_an_error(server, api):
    batch_id = submit(api, [ask("r0", "a")])
    server.hold(batch_id)
    with pytest.raises(ValueError, match=f"Anthropic batch {batch_id} is in_progress, not ended"):
        answers(api, batch_id)


def test_held_batches_stay_in_progress_until_released(server, api):
    server.hold()
    first, second = submit(api, [ask("r0", "a")]), submit(api, [ask("r1", "b")])
    for _ in range(3):
        assert status(api, first).state == status(api, second).state == "running"
    server.release(first)
    assert status(api, first).state == "completed" and status(api, second).state == "running"
    server.release()
    assert status(api, second).state == "completed"
    # The same request sent in two batches is counted twice.
    submit(api, [ask("r0", "a")])
    assert server.received == {"r0": 2, "r1": 1}


def test_the_server_lists_batches_newest_first_a_page_at_a_time(server, api):
    ids = [submit(api, [ask(f"r{i}", "a")]) for i in range(5)]

    async def page(query: str) -> Any:
        client = RESTClient(
            base_url=server.base_url, headers={"x-api-key": server.api_key, "anthropic-version": "2023-06-01"},
            timeout=10,
        )
        try:
            return await client.request("GET", f"v1/messages/batches?{query}")
        finally:
            await client.close()

    first = run_coroutine(page("limit=2"))
    assert [b["id"] for b in first["data"]] == ids[::-1][:2]
    assert (first["has_more"], first["first_id"], first["last_id"]) == (True, ids[4], ids[3])
    last = run_coroutine(page(f"limit=3&after_id={first['last_id']}"))
    assert [b["id"] for b in last["data"]] == [ids[2], ids[1], ids[0]] and last["has_more"] is False
    assert last["data"][0]["type"] == "message_batch" and last["data"][0]["expires_at"].endswith("Z")
    with pytest.raises(HTTPStatusError, match="limit: must be between 1 and 1000"):
        run_coroutine(page("limit=0"))


def test_the_server_requires_the_version_header(server):
    async def create() -> Any:
        client = RESTClient(base_url=server.base_url, headers={"x-api-key": server.api_key}, timeout=10)
        try:
            return await client.post("v1/messages/batches", {"requests": []})
        finally:
            await client.close()

    with pytest.raises(HTTPStatusError, match="anthropic-version: header is required") as caught:
        run_coroutine(create())
    assert caught.value.status == 400
