"""OpenAIBatchAPI against the local Files and Batches server (real HTTP on 127.0.0.1): what is sent, how a batch's
state and files are read, which errors are worth a retry; and the server's own state machine. API level, no
pipeline."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import subprocess
import sys
import urllib.request
from typing import Any, Dict, Iterator, List

import openai
import pytest

from beam_distil.models import AzureOpenAILLM, ClientvLLM, GroqLLM, OpenAILLM
from beam_distil.models.event_loop import run_coroutine
from beam_distil.models.offline_batch import BatchAnswer, BatchRequest, BatchStatus
from beam_distil.models.openai_batch import SUBMISSION_KEY, OpenAIBatchAPI
from beam_distil.models.rest import HTTPStatusError
from beam_distil.testing.openai_batch_server import OpenAIBatchServer
from beam_distil.testing.openai_server import OpenAICompatibleServer
from tests.llm_runs import agenerate_once

MODEL = "gpt-test"
KEY = "sk-test-0123456789abcdef"


@pytest.fixture
def server() -> Iterator[OpenAIBatchServer]:
    with OpenAIBatchServer() as running:
        yield running


def make_llm(base_url: str, **kwargs: Any) -> OpenAILLM:
    return OpenAILLM(model=MODEL, base_url=base_url, api_key=KEY, **kwargs)


@pytest.fixture
def api(server: OpenAIBatchServer) -> Iterator[OpenAIBatchAPI]:
    llm = make_llm(server.base_url, use_offline_batch_generation=True)
    llm.load()
    batch_api = llm.offline_batch_api()
    yield batch_api  # type: ignore[misc]
    run_coroutine(batch_api.close())
    llm.unload()


def ask(custom_id: str, text: str, n: int = 1, **kwargs: Any) -> BatchRequest:
    return BatchRequest(custom_id, [{"role": "user", "content": text}], n, kwargs)


def submit(api: OpenAIBatchAPI, requests: List[BatchRequest], submission: str = "5eed") -> str:
    return run_coroutine(api.submit([api.encode_request(r) for r in requests], submission=submission))


def status(api: OpenAIBatchAPI, batch_id: str) -> BatchStatus:
    return run_coroutine(api.status(batch_id))


def answers(api: OpenAIBatchAPI, batch_id: str) -> Dict[str, BatchAnswer]:
    return run_coroutine(api.answers(batch_id))


def poll_until_final(api: OpenAIBatchAPI, batch_id: str) -> List[BatchStatus]:
    seen = [status(api, batch_id)]
    while not seen[-1].is_final:
        assert len(seen) < 10, seen
        seen.append(status(api, batch_id))
    return seen


# ------------------------------------------------------------------ the adapter


def test_a_batch_round_trip_gives_what_the_same_requests_give_online(server, api):
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "héllo wörld"}]
    requests = [BatchRequest("row-0", chat, 3, {"max_new_tokens": 32, "temperature": 0.2}), ask("row_1", "bye")]
    lines = [api.encode_request(r) for r in requests]
    path, body = make_llm(server.base_url).request_body(chat, 3, max_new_tokens=32, temperature=0.2)
    assert json.loads(lines[0]) == {"custom_id": "row-0", "method": "POST", "url": "/v1/chat/completions", "body": body}
    assert path == "chat/completions" and body["n"] == 3 and body["max_tokens"] == 32
    assert "héllo".encode() in lines[0]  # UTF-8 as it is: the byte limit counts what is sent
    batch_id = run_coroutine(api.submit(lines, submission="5eed"))

    seen = poll_until_final(api, batch_id)
    assert [s.provider_status for s in seen] == ["validating", "in_progress", "finalizing", "completed"]
    assert [s.state for s in seen] == ["running", "running", "running", "completed"]
    assert seen[-1] == BatchStatus(state="completed", provider_status="completed", total=2, completed=2)
    got = answers(api, batch_id)

    # Online, against the online fake that answers the same way: the same output, token counts included.
    with OpenAICompatibleServer() as online_server:
        online = agenerate_once(make_llm(online_server.base_url), chat, num_generations=3, max_new_tokens=32,
                                temperature=0.2)
    assert got["row-0"] == BatchAnswer(output=online)
    assert got["row-0"].output["generations"] == [f"{MODEL}: héllo wörld #{i}" for i in range(3)]
    assert got["row-0"].output["statistics"] == {"input_tokens": [4], "output_tokens": [12]}
    assert got["row_1"].output["generations"] == [f"{MODEL}: bye"]
    assert server.answered_by_custom_id == {"row-0": 1, "row_1": 1}
    (created,) = server.batch_ids
    assert server.batch(created)["metadata"] == {SUBMISSION_KEY: "5eed"}
    assert server.batch(created)["endpoint"] == "/v1/chat/completions"


def test_raw_text_prompts_go_to_the_completions_endpoint(server, api):
    batch_id = submit(api, [BatchRequest("p-0", "Once upon a time", 2, {"max_new_tokens": 8})])
    line = server.batch_requests(server.batch_ids[0])[0]
    assert line["url"] == "/v1/completions" and line["body"]["prompt"] == "Once upon a time"
    assert "messages" not in line["body"]
    assert poll_until_final(api, batch_id)[-1].state == "completed"
    assert server.batch(batch_id)["endpoint"] == "/v1/completions"
    output = answers(api, batch_id)["p-0"].output
    assert output["generations"] == [f"{MODEL}: Once upon a time #0", f"{MODEL}: Once upon a time #1"]
    assert output["finish_reasons"] == ["stop", "stop"]


def test_chat_and_raw_text_requests_cannot_share_a_batch(server, api):
    lines = [api.encode_request(ask("c", "hi")), api.encode_request(BatchRequest("t", "hi", 1, {}))]
    with pytest.raises(ValueError, match="one endpoint"):
        run_coroutine(api.submit(lines, submission="5eed"))
    assert server.uploaded_file_ids == []


def test_structured_output_is_sent_as_a_json_schema_response_format(server, api):
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    line = json.loads(api.encode_request(ask("s-0", "name a cat", structured_output=schema, seed=7)))
    assert line["body"]["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    assert line["body"]["seed"] == 7


def test_a_generation_kwarg_the_api_has_no_field_for_fails_the_request_before_anything_is_sent(server, api):
    with pytest.raises(ValueError, match="request r-0 .*top_k"):
        api.encode_request(ask("r-0", "hi", top_k=5))
    assert server.calls["upload_file"] == 0


def test_find_batch_finds_a_batch_by_its_submission_across_pages(server, api):
    ids = [submit(api, [ask(f"r{i}", "hi")], submission=f"sub-{i}") for i in range(7)]
    api.list_page_size = 2
    assert run_coroutine(api.find_batch("sub-0")) == ids[0]  # the oldest: on the fourth page
    assert run_coroutine(api.find_batch("sub-6")) == ids[6]
    assert run_coroutine(api.find_batch("never-submitted")) is None
    assert server.calls["list_batches"] == 4 + 1 + 4


def test_find_batch_reads_a_bounded_number_of_pages_and_stops_at_old_batches(server, api):
    ids = [submit(api, [ask(f"r{i}", "hi")], submission=f"sub-{i}") for i in range(6)]
    api.list_page_size, api.find_batch_max_pages = 1, 3
    assert run_coroutine(api.find_batch("sub-0")) is None  # six pages back: past the bound
    assert server.calls["list_batches"] == 3

    api.find_batch_max_pages = 20
    server.backdate(ids[3], 3 * 24 * 3600)  # older than 48 h: the search ends there
    assert run_coroutine(api.find_batch("sub-0")) is None
    assert server.calls["list_batches"] == 3 + 3
    assert run_coroutine(api.find_batch("sub-4")) == ids[4]


def test_an_invalid_input_file_fails_the_batch_with_the_validation_errors(server, api):
    good = api.encode_request(ask("dup", "hi"))
    lines = [good, good, b"{not json", b'{"method": "POST"}']
    other = json.loads(good)
    other["custom_id"], other["body"]["model"] = "other-model", "another-model"
    lines.append(json.dumps(other).encode())
    batch_id = run_coroutine(api.submit(lines, submission="bad"))
    final = poll_until_final(api, batch_id)[-1]
    assert final.state == "failed" and final.provider_status == "failed"
    assert final.error == (
        "line 2: The custom_id 'dup' is used by more than one request. (duplicate_custom_id);"
        " line 3: This line is not parseable as valid JSON. (invalid_json_line);"
        " line 4: Missing required parameter: 'custom_id'. (missing_required_parameter);"
        " line 5: The model 'another-model' does not match the model 'gpt-test' of line 1: a batch takes one model."
        " (model_mismatch)"
    )
    assert answers(api, batch_id) == {}
    assert server.answered_by_custom_id == {}


def test_an_expired_batch_gives_the_answers_it_finished_and_leaves_the_rest_unanswered(server, api):
    server.hold = True
    batch_id = submit(api, [ask(f"r{i}", f"q{i}") for i in range(5)])
    assert [s.provider_status for s in (status(api, batch_id), status(api, batch_id), status(api, batch_id))] == [
        "validating", "in_progress", "in_progress"
    ]
    server.expire(batch_id, answered=2)
    assert status(api, batch_id) == BatchStatus(
        state="expired", provider_status="expired", total=5, completed=2, failed=3
    )
    got = answers(api, batch_id)
    # batch_expired lines in the error file are no answer of their own: the engine may send them again.
    assert set(got) == {"r0", "r1"}
    assert got["r1"].output["generations"] == [f"{MODEL}: q1"]


def test_a_cancelled_batch_leaves_its_requests_unanswered(server, api):
    batch_id = submit(api, [ask("r0", "hi"), ask("r1", "hi")])
    run_coroutine(api.cancel(batch_id))
    seen = poll_until_final(api, batch_id)
    assert [s.provider_status for s in seen] == ["cancelling", "cancelled"]
    assert seen[-1].state == "cancelled"
    assert answers(api, batch_id) == {}
    assert server.batch(batch_id)["output_file_id"] is None and server.batch(batch_id)["error_file_id"]


def test_per_request_errors_refusals_and_answers_without_text(server, api):
    server.fail_when = lambda line: "FAIL" in json.dumps(line)
    server.refuse_when = lambda line: "REFUSE" in json.dumps(line)
    server.no_text_when = lambda line: "FILTER" in json.dumps(line)
    batch_id = submit(api, [ask("ok", "hi"), ask("bad", "FAIL"), ask("no", "REFUSE", n=2), ask("hid", "FILTER")])
    poll_until_final(api, batch_id)
    got = answers(api, batch_id)
    assert got["ok"].output["generations"] == [f"{MODEL}: hi"]
    assert got["bad"] == BatchAnswer(error="HTTP 400: Injected failure of request bad.")
    assert got["no"].output["generations"] == [None, None]
    assert got["no"].output["finish_reasons"] == ["refusal: I can't help with that."] * 2
    assert got["hid"].output["generations"] == [None]
    assert got["hid"].output["finish_reasons"] == ["content_filter"]
    assert status(api, batch_id).failed == 1


def test_fewer_choices_than_asked_are_none_with_the_reason(server, api):
    server.max_choices = 1
    batch_id = submit(api, [ask("r", "hi", n=3)])
    poll_until_final(api, batch_id)
    output = answers(api, batch_id)["r"].output
    assert output["generations"] == [f"{MODEL}: hi #0", None, None]
    assert output["finish_reasons"] == ["stop"] + ["the server returned 1 of 3 choices"] * 2


def test_output_lines_that_cannot_be_read_are_skipped_with_a_warning(server, api, caplog):
    server.garble_when = lambda line: line["custom_id"] == "garbled"
    batch_id = submit(api, [ask("fine", "hi"), ask("garbled", "hi")])
    poll_until_final(api, batch_id)
    output_file = server.batch(batch_id)["output_file_id"]
    server.append_to_file(output_file, b'{"response": {"status_code": 200, "body": {}}, "error": null}\n')
    server.append_to_file(output_file, b'{"custom_id": "weird", "response": {"status_code": 200, "body": {}}}\n')
    with caplog.at_level(logging.WARNING, logger="beam_distil.models.openai_batch"):
        got = answers(api, batch_id)
    assert set(got) == {"fine"}  # the garbled one stays unanswered, so the engine can send it again
    warnings = " | ".join(record.getMessage() for record in caplog.records)
    assert "is not JSON" in warnings and "has no custom_id" in warnings and "request weird) is not a completion" in warnings


@pytest.mark.parametrize("status_code, transient", [(500, True), (503, True), (429, True), (400, False), (404, False)])
def test_api_errors_surface_as_transient_or_not(server, api, status_code, transient):
    batch_id = submit(api, [ask("r", "hi")])
    server.fail_next("get_batch", status=status_code, retry_after=3 if status_code == 429 else None)
    with pytest.raises(HTTPStatusError) as raised:
        status(api, batch_id)
    assert raised.value.status == status_code
    assert api.is_transient(raised.value) is transient
    if status_code == 429:
        assert raised.value.retry_after == 3
    assert status(api, batch_id).provider_status == "validating"  # the next call goes through


def test_a_failed_upload_or_create_raises_and_is_retryable(server, api):
    server.fail_next("upload_file", status=500)
    with pytest.raises(HTTPStatusError) as raised:
        submit(api, [ask("r", "hi")])
    assert api.is_transient(raised.value)
    server.fail_next("create_batch", status=429, retry_after=1)
    with pytest.raises(HTTPStatusError) as raised:
        submit(api, [ask("r", "hi")])
    assert api.is_transient(raised.value) and server.batch_count == 0
    batch_id = submit(api, [ask("r", "hi")])
    assert server.batch_ids == [batch_id]


def test_transport_errors_are_transient():
    with OpenAIBatchServer() as stopped:
        url = stopped.base_url
    llm = make_llm(url)
    llm.load()
    unreachable = llm.offline_batch_api()
    with pytest.raises(Exception) as raised:
        run_coroutine(unreachable.status("batch_x"))
    assert unreachable.is_transient(raised.value)
    run_coroutine(unreachable.close())


def test_the_key_never_appears_in_errors(server):
    llm = make_llm(server.base_url)
    llm.load()
    api = llm.offline_batch_api()
    # A server that echoes the key it was sent (some proxies do, in their error bodies).
    with pytest.raises(HTTPStatusError) as raised:
        run_coroutine(api.status(f"batch_{KEY}"))
    assert KEY not in str(raised.value) and KEY not in json.dumps(raised.value.body)
    assert "**********" in str(raised.value)
    run_coroutine(api.close())


def test_requests_too_many_for_one_batch_are_refused_before_upload(server, api):
    api.max_requests_per_batch = 2
    with pytest.raises(ValueError, match="exceed OpenAI's batch limits"):
        submit(api, [ask(f"r{i}", "hi") for i in range(3)])
    assert server.calls["upload_file"] == 0


def test_the_batch_api_reaches_the_server_as_the_llm_does(server, monkeypatch):
    monkeypatch.setenv("OPENAI_ORG_ID", "org-7")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    llm = OpenAILLM(model=MODEL, base_url=server.base_url, use_offline_batch_generation=True)
    api = llm.offline_batch_api()  # loads the LLM: the key is the one resolved on the worker
    batch_id = submit(api, [ask("r", "hi")])
    assert server.headers_of_last_call["Authorization"] == f"Bearer {KEY}"
    assert server.headers_of_last_call["OpenAI-Organization"] == "org-7"
    assert status(api, batch_id).state == "running"
    run_coroutine(api.close())
    llm.unload()


def test_which_openai_family_llms_take_offline_batch_generation():
    assert OpenAILLM.supports_offline_batch_generation
    for llm_class in (GroqLLM, ClientvLLM, AzureOpenAILLM):
        assert not llm_class.supports_offline_batch_generation
    with pytest.raises(ValueError, match="has no provider batch API"):
        GroqLLM(model="m", api_key="k", use_offline_batch_generation=True)


# ------------------------------------------------------------------ the server itself


def test_the_server_speaks_the_openai_sdk(server):
    client = openai.OpenAI(api_key="test", base_url=server.base_url, max_retries=0)
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}}
    uploaded = client.files.create(file=("in.jsonl", json.dumps(line).encode()), purpose="batch")
    assert client.files.retrieve(uploaded.id).purpose == "batch"
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"k": "v"})
    assert batch.status == "validating" and batch.metadata == {"k": "v"}
    while batch.status != "completed":
        batch = client.batches.retrieve(batch.id)
    assert batch.request_counts.completed == 1 and batch.completed_at is not None
    result = json.loads(client.files.content(batch.output_file_id).text)
    assert result["custom_id"] == "a" and result["response"]["body"]["choices"][0]["message"]["content"] == "m: hi"
    assert [b.id for b in client.batches.list()] == [batch.id]


def test_the_server_lists_batches_newest_first_in_pages(server, api):
    ids = [submit(api, [ask("r", "hi")], submission=str(i)) for i in range(3)]
    client = openai.OpenAI(api_key="test", base_url=server.base_url, max_retries=0)
    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == ids[:0:-1] and first.has_more and first.last_id == ids[1]
    second = client.batches.list(limit=2, after=first.last_id)
    assert [b.id for b in second.data] == [ids[0]] and not second.has_more


def test_the_server_holds_and_releases_batches(server, api):
    server.hold = True
    batch_id = submit(api, [ask("r", "hi")])
    assert [status(api, batch_id).provider_status for _ in range(4)] == ["validating"] + ["in_progress"] * 3
    server.release(batch_id)
    assert [status(api, batch_id).provider_status for _ in range(3)] == ["in_progress", "finalizing", "completed"]
    assert server.polls(batch_id) == 7 and server.poll_count == 7


def test_the_server_completes_batches_on_demand(server, api):
    server.hold = True
    first, second = submit(api, [ask("a", "hi")]), submit(api, [ask("b", "hi")])
    server.complete()
    assert status(api, first).state == status(api, second).state == "completed"
    assert server.answered_by_custom_id == {"a": 1, "b": 1}


def test_the_server_counts_requests_per_custom_id_across_batches(server, api):
    first = submit(api, [ask("a", "hi"), ask("b", "hi")])
    server.expire(first, answered=1)
    second = submit(api, [ask("b", "hi")])
    server.complete(second)
    assert server.submitted_by_custom_id == {"a": 1, "b": 2}
    assert server.answered_by_custom_id == {"a": 1, "b": 1}
    assert server.batch(first)["request_counts"] == {"total": 2, "completed": 1, "failed": 1}


def test_the_server_refuses_what_openai_refuses(server):
    client = openai.OpenAI(api_key="test", base_url=server.base_url, max_retries=0)
    with pytest.raises(openai.BadRequestError, match="Must be .jsonl"):
        client.files.create(file=("in.txt", b"{}"), purpose="batch")
    uploaded = client.files.create(file=("in.jsonl", b"{}"), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="endpoint"):
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-nope", endpoint="/v1/completions", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/completions", completion_window="24h")
    server.complete(batch.id)
    with pytest.raises(openai.BadRequestError, match="Cannot cancel"):
        client.batches.cancel(batch.id)


def test_the_server_injects_faults_on_its_endpoints(server):
    server.fail_next("list_batches", times=2, status=429, retry_after=2)
    client = openai.OpenAI(api_key="test", base_url=server.base_url, max_retries=0)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as raised:
            client.batches.list()
        assert raised.value.response.headers["retry-after"] == "2"
    assert client.batches.list().data == []
    assert server.calls["list_batches"] == 3
    with pytest.raises(ValueError, match="unknown endpoint"):
        server.fail_next("delete_everything")


def test_the_server_takes_concurrent_clients(server):
    def run_one(worker: int) -> str:
        client = openai.OpenAI(api_key="test", base_url=server.base_url, max_retries=0)
        lines = [
            json.dumps({"custom_id": f"w{worker}-{i}", "method": "POST", "url": "/v1/chat/completions",
                        "body": {"model": "m", "messages": [{"role": "user", "content": str(i)}]}})
            for i in range(20)
        ]
        uploaded = client.files.create(file=("in.jsonl", "\n".join(lines).encode()), purpose="batch")
        batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
        while batch.status != "completed":
            batch = client.batches.retrieve(batch.id)
        return client.files.content(batch.output_file_id).text

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(run_one, range(8)))
    assert server.batch_count == 8 and server.poll_count == 8 * 4
    assert server.answered_by_custom_id == {f"w{w}-{i}": 1 for w in range(8) for i in range(20)}
    assert all(len(output.splitlines()) == 20 for output in outputs)


def test_the_server_runs_from_a_shell():
    process = subprocess.Popen(
        [sys.executable, "-m", "beam_distil.testing.openai_batch_server", "--port", "0"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        stats_url = base_url[: -len("/v1")] + "/stats"
        with urllib.request.urlopen(stats_url, timeout=10) as response:
            assert json.loads(response.read())["batches"] == 0
    finally:
        process.terminate()
        process.wait(timeout=30)
