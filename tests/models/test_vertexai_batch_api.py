"""VertexBatchAPI with the real google-genai client against a local Vertex AI batch prediction service
(``beam_distil.testing.vertex_batch_server``), batch files in a temporary folder: no Beam pipeline."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from beam_distil.models import VertexAILLM
from beam_distil.models.event_loop import run_coroutine
from beam_distil.models.offline_batch import BatchRequest
from beam_distil.models.vertexai_batch import VertexBatchAPI, custom_id_labels, custom_id_of_labels
from beam_distil.testing.vertex_batch_server import JobPlan, VertexBatchServer, last_user_text
from tests.local_http_server import RecordingServer

TOKEN = "ya29.test-access-token"
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


pytestmark = pytest.mark.usefixtures("no_google_env")


@pytest.fixture
def server() -> Iterator[VertexBatchServer]:
    with VertexBatchServer() as running:
        yield running


def make_llm(base_url: str, location: Any, **kwargs: Any) -> VertexAILLM:
    return VertexAILLM(
        model="gemini-test", project="proj", location="europe-west4", base_url=base_url, api_token=TOKEN,
        use_offline_batch_generation=True, offline_batch_location=str(location), **kwargs,
    )


@pytest.fixture
def api(server: VertexBatchServer, tmp_path: Path) -> VertexBatchAPI:
    llm = make_llm(server.base_url, tmp_path / "batches")
    llm.load()
    return llm.offline_batch_api()


def chat(text: str, system: str = "") -> List[Dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]


def submit(api: VertexBatchAPI, requests: List[BatchRequest], submission: str = "sub0") -> str:
    return run_coroutine(api.submit([api.encode_request(request) for request in requests], submission))


def poll_until_final(api: VertexBatchAPI, job: str, limit: int = 10):
    for _ in range(limit):
        status = run_coroutine(api.status(job))
        if status.is_final:
            return status
    raise AssertionError(f"{job} still {status.provider_status} after {limit} polls")


def test_round_trip_with_candidates_system_instruction_and_structured_output(api, server, tmp_path):
    long_id = "A" * 30 + "_b-" + "c" * 31  # 64 characters, uppercase and '_': more than one label
    requests = [
        BatchRequest("r-0", chat("first", system="Be brief."), 3, {"temperature": 0.2, "structured_output": SCHEMA}),
        BatchRequest("Row_1", chat("second"), 1, {"max_new_tokens": 16}),
        BatchRequest(long_id, "third", 2, {}),
    ]
    job = submit(api, requests, submission="sub0")

    # The input file, and the job pointing at it and at the output folder, named after the submission.
    input_path = tmp_path / "batches" / "sub0" / "input.jsonl"
    lines = [json.loads(line) for line in input_path.read_text().splitlines()]
    first = lines[0]["request"]
    assert first["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert first["contents"] == [{"role": "user", "parts": [{"text": "first"}]}]
    assert first["generationConfig"] == {
        "candidateCount": 3, "maxOutputTokens": 128, "temperature": 0.2,
        "responseMimeType": "application/json", "responseJsonSchema": SCHEMA,
    }
    assert lines[1]["request"]["generationConfig"] == {"candidateCount": 1, "maxOutputTokens": 16}
    resource = server.job(job)
    assert resource["displayName"] == "beam-distil-sub0"
    assert resource["model"] == "publishers/google/models/gemini-test"
    assert resource["inputConfig"] == {"instancesFormat": "jsonl", "gcsSource": {"uris": [str(input_path)]}}
    assert resource["outputConfig"] == {
        "predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": str(tmp_path / "batches" / "sub0" / "output")},
    }
    assert job.startswith("projects/proj/locations/europe-west4/batchPredictionJobs/")
    assert sorted(server.requests_by_custom_id()) == sorted(["r-0", "Row_1", long_id])

    assert run_coroutine(api.status(job)).provider_status == "JOB_STATE_RUNNING"
    status = poll_until_final(api, job)
    assert (status.state, status.provider_status) == ("completed", "JOB_STATE_SUCCEEDED")
    assert (status.total, status.completed, status.failed, status.error) == (3, 3, 0, None)

    answers = run_coroutine(api.answers(job))
    assert set(answers) == {"r-0", "Row_1", long_id}
    assert answers["r-0"].output["generations"] == [f"gemini-test: first #{i}" for i in range(3)]
    assert answers["r-0"].output["finish_reasons"] == ["STOP"] * 3
    assert answers["r-0"].output["statistics"] == {"input_tokens": [3], "output_tokens": [9]}
    assert answers["Row_1"].output["generations"] == ["gemini-test: second"]
    assert answers[long_id].output["generations"] == ["gemini-test: third #0", "gemini-test: third #1"]
    assert all(answer.error is None for answer in answers.values())


def test_a_batch_line_holds_the_body_the_online_call_sends(api):
    kwargs = {"max_new_tokens": 40, "temperature": 0.3, "top_p": 0.9, "top_k": 5, "stop": "END", "seed": 7,
              "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_LOW_AND_ABOVE"}],
              "structured_output": SCHEMA}
    conversation = [*chat("hi", system="sys"), {"role": "assistant", "content": "hello"}, {"role": "user", "content": "more"}]
    line = json.loads(api.encode_request(BatchRequest("x-0", conversation, 2, kwargs)))

    answer = {"candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}]}
    with RecordingServer(lambda path, body: (200, {}, json.dumps(answer).encode())) as online:
        llm = make_llm(f"http://127.0.0.1:{online.port}", "/unused")
        llm.load()
        run_coroutine(llm.agenerate(conversation, 2, **kwargs))
        sent = online.seen[0]["body"]

    assert line["request"].pop("labels") == {"beam_distil_custom_id": "x-0"}
    assert line["request"] == sent


def test_custom_ids_survive_the_label_rules():
    label_value = re.compile(r"^[a-z0-9_-]{0,63}$")
    for custom_id in ["abc-0", "ABC", "a_b", "__", "Z" * 64, "0" * 64, "x" * 63, "-_-Aa_zZ9"]:
        labels = custom_id_labels(custom_id)
        assert all(label_value.match(value) for value in labels.values()), labels
        assert all(re.match(r"^[a-z][a-z0-9_-]{0,62}$", key) for key in labels)
        assert custom_id_of_labels(labels) == custom_id
    assert custom_id_labels("abc-0") == {"beam_distil_custom_id": "abc-0"}
    assert len(custom_id_labels("Z" * 64)) == 3  # 128 escaped characters
    assert custom_id_of_labels({"other": "x"}) is None


def test_find_batch_by_display_name(api, server):
    first = submit(api, [BatchRequest("a-0", "a", 1)], submission="s1")
    second = submit(api, [BatchRequest("b-0", "b", 1)], submission="s2")
    assert first != second
    assert run_coroutine(api.find_batch("s1")) == first
    assert run_coroutine(api.find_batch("s2")) == second
    assert run_coroutine(api.find_batch("s3")) is None
    # A job made again for the same submission (its name was lost) is the one found.
    again = submit(api, [BatchRequest("a-0", "a", 1)], submission="s1")
    assert run_coroutine(api.find_batch("s1")) == again
    assert any(method == "GET" and path.endswith("/batchPredictionJobs") for method, path, _ in server.calls)


def test_failed_job_reports_its_error_and_no_answers(api, server):
    server.plans.append(JobPlan("JOB_STATE_FAILED", error="Quota exceeded for batch prediction"))
    job = submit(api, [BatchRequest("a-0", "a", 1), BatchRequest("b-0", "b", 1)])
    status = poll_until_final(api, job)
    assert (status.state, status.provider_status) == ("failed", "JOB_STATE_FAILED")
    assert "Quota exceeded for batch prediction" in status.error
    assert (status.total, status.completed) == (2, 0)
    assert run_coroutine(api.answers(job)) == {}


def test_failed_job_keeps_the_part_it_answered(api, server):
    job = submit(api, [BatchRequest(f"r-{i}", f"q{i}", 1) for i in range(3)])
    run_coroutine(api.status(job))  # running
    server.fail(job, "internal error", answered=1)
    status = run_coroutine(api.status(job))
    assert status.state == "failed" and "internal error" in status.error
    assert list(run_coroutine(api.answers(job))) == ["r-0"]


def test_expired_job_with_partial_output(api, server):
    job = submit(api, [BatchRequest(f"r-{i}", f"q{i}", 1) for i in range(3)])
    run_coroutine(api.status(job))
    server.expire(job, answered=2)
    status = run_coroutine(api.status(job))
    assert (status.state, status.provider_status) == ("expired", "JOB_STATE_EXPIRED")
    assert (status.total, status.completed, status.failed) == (3, 2, 0)
    answers = run_coroutine(api.answers(job))
    assert sorted(answers) == ["r-0", "r-1"]
    assert answers["r-1"].output["generations"] == ["gemini-test: q1"]


def test_expired_while_pending_has_no_output_folder_and_no_answers(api, server):
    job = submit(api, [BatchRequest("r-0", "q", 1)])
    server.expire(job)
    assert run_coroutine(api.status(job)).state == "expired"
    assert "outputInfo" not in server.job(job)
    assert run_coroutine(api.answers(job)) == {}


def test_per_request_errors_are_answers_with_an_error(api, server):
    server.fail_requests = lambda request: last_user_text(request) == "bad"
    server.plans.append(JobPlan("JOB_STATE_PARTIALLY_SUCCEEDED"))
    job = submit(api, [BatchRequest("ok-0", "good", 1), BatchRequest("bad-0", "bad", 1)])
    status = poll_until_final(api, job)
    assert (status.state, status.provider_status) == ("completed", "JOB_STATE_PARTIALLY_SUCCEEDED")
    assert (status.completed, status.failed) == (1, 1)
    answers = run_coroutine(api.answers(job))
    assert answers["ok-0"].output["generations"] == ["gemini-test: good"]
    assert answers["bad-0"].output is None
    assert "INVALID_ARGUMENT" in answers["bad-0"].error


def test_answers_without_text_keep_their_finish_reasons(api, server):
    server.safety_blocked = lambda request: last_user_text(request) == "unsafe"
    server.prompt_blocked = lambda request: last_user_text(request) == "blocked"
    job = submit(api, [BatchRequest("u-0", "unsafe", 2), BatchRequest("p-0", "blocked", 1), BatchRequest("f-0", "fine", 1)])
    poll_until_final(api, job)
    answers = run_coroutine(api.answers(job))
    assert answers["u-0"].error is None
    assert answers["u-0"].output["generations"] == [None, None]
    assert answers["u-0"].output["finish_reasons"] == ["SAFETY", "SAFETY"]
    assert answers["p-0"].output["generations"] == [None]
    assert answers["p-0"].output["finish_reasons"] == ["PROMPT_BLOCKED:SAFETY"]
    assert answers["f-0"].output["generations"] == ["gemini-test: fine"]


def test_rate_limits_and_server_errors_are_transient(api, server):
    from google.genai import errors

    server.fail_next(429, path="batchPredictionJobs", method="POST", retry_after=3)
    with pytest.raises(errors.ClientError) as rate_limited:
        submit(api, [BatchRequest("a-0", "a", 1)])
    assert rate_limited.value.code == 429 and api.is_transient(rate_limited.value)
    assert VertexAILLM(model="gemini-test", project="proj").classify_error(rate_limited.value).retry_after == 3
    assert server.jobs() == []
    job = submit(api, [BatchRequest("a-0", "a", 1)])  # the retry the engine makes

    server.fail_next(500, method="GET")
    with pytest.raises(errors.ServerError) as server_error:
        run_coroutine(api.status(job))
    assert api.is_transient(server_error.value)
    assert server.polls(job) == 0
    assert run_coroutine(api.status(job)).provider_status == "JOB_STATE_RUNNING"

    with pytest.raises(errors.ClientError) as missing:
        run_coroutine(api.status(job.rsplit("/", 1)[0] + "/123"))
    assert missing.value.code == 404 and not api.is_transient(missing.value)


def test_a_service_that_is_down_is_transient(server, tmp_path):
    llm = make_llm(server.base_url, tmp_path)
    llm.load()
    api = llm.offline_batch_api()
    server.stop()
    with pytest.raises(Exception) as down:
        run_coroutine(api.find_batch("s"))
    assert api.is_transient(down.value), repr(down.value)


def test_cancel_and_hold(api, server):
    server.answered_before_cancel = 1
    server.hold()
    job = submit(api, [BatchRequest("r-0", "a", 1), BatchRequest("r-1", "b", 1)])
    for _ in range(3):
        assert run_coroutine(api.status(job)).provider_status == "JOB_STATE_PENDING"
    run_coroutine(api.cancel(job))
    status = run_coroutine(api.status(job))
    assert (status.state, status.provider_status) == ("cancelled", "JOB_STATE_CANCELLED")
    assert list(run_coroutine(api.answers(job))) == ["r-0"]

    other = submit(api, [BatchRequest("r-2", "c", 1)], submission="s2")
    assert run_coroutine(api.status(other)).state == "running"
    server.release()
    assert poll_until_final(api, other).state == "completed"

    from_console = submit(api, [BatchRequest("r-3", "d", 1), BatchRequest("r-4", "e", 1)], submission="s3")
    server.cancel(from_console, answered=2)
    assert run_coroutine(api.status(from_console)).state == "cancelled"
    assert sorted(run_coroutine(api.answers(from_console))) == ["r-3", "r-4"]


def test_requests_the_batch_cannot_take_are_refused_before_sending(api):
    with pytest.raises(ValueError, match="custom_id"):
        api.encode_request(BatchRequest("has space", "a", 1))
    with pytest.raises(ValueError, match="frequency_penalty"):
        api.encode_request(BatchRequest("a-0", "a", 1, {"frequency_penalty": 1.0}))
    with pytest.raises(ValueError, match="role"):
        api.encode_request(BatchRequest("a-0", [{"role": "tool", "content": "x"}], 1))
    assert api.max_requests_per_batch == 200_000


def test_offline_batch_location_is_required_and_left_out_of_the_cache_key(tmp_path):
    llm = VertexAILLM(model="gemini-test", project="proj", api_token=TOKEN, use_offline_batch_generation=True)
    problems = llm.check_ready()
    assert len(problems) == 1 and "offline_batch_location" in problems[0] and "gs://" in problems[0]
    with pytest.raises(ValueError, match="offline_batch_location"):
        llm.offline_batch_api()

    local = VertexAILLM(model="gemini-test", project="proj", api_token=TOKEN, use_offline_batch_generation=True,
                        offline_batch_location=str(tmp_path))
    assert "not a gs:// folder" in local.check_ready()[0]
    on_gcs = VertexAILLM(model="gemini-test", project="proj", api_token=TOKEN, use_offline_batch_generation=True,
                         offline_batch_location="gs://bucket/batches")
    assert on_gcs.check_ready() == []
    assert VertexAILLM(model="gemini-test", project="proj").check_ready() == []  # online: not needed

    online = VertexAILLM(model="gemini-test", project="proj", api_token=TOKEN)
    assert on_gcs.cache_identity() == online.cache_identity()
    assert "offline_batch_location" not in on_gcs.cache_identity()
    assert VertexAILLM.supports_offline_batch_generation


def test_an_unreadable_predictions_line_costs_only_its_own_request(api, server, caplog):
    job = submit(api, [BatchRequest("r-0", chat("first"), 1, {}), BatchRequest("r-1", chat("second"), 1, {})])
    poll_until_final(api, job)
    [predictions] = Path(server.job(job)["outputInfo"]["gcsOutputDirectory"]).glob("predictions*.jsonl")
    lines = predictions.read_text().splitlines()
    kept = [line for line in lines if "r-1" not in line]
    predictions.write_text("\n".join(kept + ['{"request": {"labels": {"beam_distil_custom_id": "r-1"', "[1, 2]"]) + "\n")

    with caplog.at_level(logging.WARNING, logger="beam_distil"):
        answers = run_coroutine(api.answers(job))
    assert set(answers) == {"r-0"}
    assert answers["r-0"].output["generations"] == ["gemini-test: first"]
    assert caplog.text.count("is left out, its request counts as unanswered") == 2
