"""Pipelines whose tasks send their requests to a provider's batch API (``use_offline_batch_generation=True``),
run on real Beam runners against the local fake of OpenAI's Files and Batches API."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any, List, Optional

import pytest

from beam_distil.beam.batch_ledger import BatchLedger
from beam_distil.exceptions import DistilabelOfflineBatchGenerationNotFinishedException
from beam_distil.models import OllamaLLM, OpenAILLM
from beam_distil.models.offline_batch import BatchRequest
from beam_distil.pipeline import Pipeline, PipelineValidationError
from beam_distil.steps import LoadDataFromDicts
from beam_distil.steps.tasks import EvolInstruct, TextGeneration
from beam_distil.testing.openai_batch_server import OpenAIBatchServer


@pytest.fixture
def batch_server():
    with OpenAIBatchServer() as server:
        yield server


def batch_llm(base_url: str, **settings: Any) -> OpenAILLM:
    settings.setdefault("offline_batch_generation_block_until_done", 1)
    return OpenAILLM(
        model="m", base_url=base_url, api_key="test", use_offline_batch_generation=True, retry_base_delay=0.05,
        **settings,
    )


def build(llm: OpenAILLM, rows: int = 10, batch_size: int = 4, prefix: str = "question") -> Pipeline:
    with Pipeline("batch") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"{prefix} {i}"} for i in range(rows)])
        load >> TextGeneration(name="gen", llm=llm, input_batch_size=batch_size)
    return pipeline


def generations(distiset) -> List[Optional[str]]:
    return [row["generation"] for row in distiset["default"]["train"]]


def test_rows_come_back_from_one_batch_and_a_later_online_run_pays_nothing(batch_server):
    pipeline = build(batch_llm(batch_server.base_url))
    distiset = pipeline.run()

    assert generations(distiset) == [f"m: question {i}" for i in range(10)]
    assert batch_server.batch_count == 1
    assert sorted(batch_server.submitted_by_custom_id.values()) == [1] * 10
    metrics = pipeline.last_run_metrics["gen"]
    assert metrics["batches_submitted"] == 1 and metrics["requests_submitted"] == 10
    assert metrics["llm_failures"] == 0
    assert metrics["batch_input_tokens"] == metrics["input_tokens"] > 0
    assert metrics["batch_output_tokens"] == metrics["output_tokens"] > 0
    row = distiset["default"]["train"][0]
    assert row["model_name"] == "m"
    assert row["distilabel_metadata"]["statistics_gen"]["input_tokens"] > 0

    # The same prompts online, at the same URL (which serves no completions): every answer is a cache hit.
    online = build(OpenAILLM(model="m", base_url=batch_server.base_url, api_key="test", max_retries=0))
    assert generations(online.run()) == [f"m: question {i}" for i in range(10)]
    assert online.last_run_metrics["gen"]["cache_hits"] == 10
    assert online.last_run_metrics["gen"]["llm_requests"] == 0
    assert batch_server.batch_count == 1


def test_a_run_again_after_the_batches_finished_sends_nothing(batch_server):
    build(batch_llm(batch_server.base_url)).run()
    calls_before = dict(batch_server.calls)

    pipeline = build(batch_llm(batch_server.base_url))
    assert generations(pipeline.run()) == [f"m: question {i}" for i in range(10)]
    assert batch_server.calls == calls_before
    assert pipeline.last_run_metrics["gen"]["cache_hits"] == 10


def test_large_inputs_are_split_within_the_batch_limit(batch_server):
    pipeline = build(batch_llm(batch_server.base_url, offline_batch_max_requests=4), rows=10, batch_size=10)
    assert generations(pipeline.run()) == [f"m: question {i}" for i in range(10)]
    sizes = sorted(len(batch_server.batch_requests(batch_id)) for batch_id in batch_server.batch_ids)
    assert sizes == [2, 4, 4]
    assert sorted(batch_server.submitted_by_custom_id.values()) == [1] * 10


def test_num_generations_come_back_in_order_from_one_request_each(batch_server):
    with Pipeline("n") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "hi"}, {"instruction": "yo"}])
        load >> TextGeneration(name="gen", llm=batch_llm(batch_server.base_url), num_generations=3, group_generations=True)
    rows = pipeline.run()["default"]["train"].to_list()
    assert [row["generation"] for row in rows] == [["m: hi #0", "m: hi #1", "m: hi #2"], ["m: yo #0", "m: yo #1", "m: yo #2"]]
    assert [line["body"]["n"] for line in batch_server.batch_requests(batch_server.batch_ids[0])] == [3, 3]


def test_requests_the_provider_failed_are_row_failures_and_dead_letters(tmp_path):
    with OpenAIBatchServer(fail_when=lambda line: "FAIL" in json.dumps(line)) as server:
        data = [{"instruction": f"q{i}"} for i in range(5)] + [{"instruction": "FAIL please"}]
        with Pipeline("partial") as pipeline:
            load = LoadDataFromDicts(data=data)
            load >> TextGeneration(name="gen", llm=batch_llm(server.base_url))
        rows = pipeline.run(dead_letter_dir=str(tmp_path / "dead"))["default"]["train"].to_list()

    assert [row["generation"] for row in rows] == [f"m: q{i}" for i in range(5)] + [None]
    error = rows[5]["distilabel_metadata"]["error_gen"]
    assert "400" in error and "answered with an error" in error
    assert pipeline.last_run_metrics["gen"]["llm_failures"] == 1
    records = [json.loads(line) for path in glob.glob(str(tmp_path / "dead" / "*.jsonl")) for line in open(path)]
    assert [record["row"]["instruction"] for record in records] == ["FAIL please"]


def test_answers_without_text_are_counted_failures_and_not_cached(tmp_path):
    with OpenAIBatchServer(refuse_when=lambda line: "refuse" in json.dumps(line)) as server:
        data = [{"instruction": "fine"}, {"instruction": "refuse this"}]
        pipeline = Pipeline("refusals")
        with pipeline:
            LoadDataFromDicts(data=data) >> TextGeneration(name="gen", llm=batch_llm(server.base_url))
        rows = pipeline.run()["default"]["train"].to_list()
        assert rows[0]["generation"] == "m: fine"
        assert rows[1]["generation"] is None
        assert "no answer" in rows[1]["distilabel_metadata"]["error_gen"]
        assert "refusal" in rows[1]["distilabel_metadata"]["error_gen"]
        assert pipeline.last_run_metrics["gen"]["llm_failures"] == 1

        # Run again: the refused request is asked again (in a new batch), the good one is not.
        server.refuse_when = None
        with Pipeline("refusals") as again:
            LoadDataFromDicts(data=data) >> TextGeneration(name="gen", llm=batch_llm(server.base_url))
        assert generations(again.run()) == ["m: fine", "m: refuse this"]
        assert server.batch_count == 2
        assert len(server.batch_requests(server.batch_ids[1])) == 1


def _expire_when_in_progress(server: OpenAIBatchServer, answered: int) -> None:
    """Expires the first batch as soon as it is in progress, with its first ``answered`` requests done."""

    def expire() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ids = server.batch_ids
            if ids and server.batch(ids[0])["status"] == "in_progress":
                server.expire(ids[0], answered=answered)
                return
            time.sleep(0.02)

    threading.Thread(target=expire, daemon=True).start()


def test_an_expired_batch_resends_only_its_unanswered_requests():
    with OpenAIBatchServer(hold=True) as server:
        _expire_when_in_progress(server, answered=6)
        pipeline = build(batch_llm(server.base_url))

        def stop_holding() -> None:  # the resend batch must run: stop holding once the first batch expired
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if server.batch_count >= 1 and server.batch(server.batch_ids[0])["status"] == "expired":
                    server.hold = False
                    return
                time.sleep(0.02)

        threading.Thread(target=stop_holding, daemon=True).start()
        distiset = pipeline.run()

        assert generations(distiset) == [f"m: question {i}" for i in range(10)]
        assert server.batch_count == 2
        assert len(server.batch_requests(server.batch_ids[1])) == 4
        assert sorted(server.answered_by_custom_id.values()) == [1] * 10
        assert pipeline.last_run_metrics["gen"]["requests_resent"] == 4


def test_an_expired_batch_fails_its_unanswered_rows_when_asked(tmp_path):
    with OpenAIBatchServer(hold=True) as server:
        _expire_when_in_progress(server, answered=6)
        pipeline = build(batch_llm(server.base_url, offline_batch_unanswered="fail"))
        rows = pipeline.run(dead_letter_dir=str(tmp_path / "dead"))["default"]["train"].to_list()

        assert server.batch_count == 1
    answered = [row for row in rows if row["generation"] is not None]
    failed = [row for row in rows if row["generation"] is None]
    assert len(answered) == 6 and len(failed) == 4
    assert all("expired" in row["distilabel_metadata"]["error_gen"] for row in failed)
    assert pipeline.last_run_metrics["gen"]["llm_failures"] == 4
    records = [json.loads(line) for path in glob.glob(str(tmp_path / "dead" / "*.jsonl")) for line in open(path)]
    assert len(records) == 4


def test_without_blocking_the_run_ends_waiting_and_the_next_run_collects(batch_server):
    batch_server.hold = True
    first = build(batch_llm(batch_server.base_url, offline_batch_generation_block_until_done=None))
    with pytest.raises(DistilabelOfflineBatchGenerationNotFinishedException) as waiting:
        first.run(prices={"m": {"input": 1.0, "output": 1.0}})
    assert first.last_run_metrics["gen"]["rows_waiting_on_batches"] == 10
    assert first.last_run_usage["m"].cost == 0.0  # nothing answered yet, so nothing paid yet

    assert waiting.value.jobs_ids == tuple(batch_server.batch_ids)
    assert "10 rows of task 'gen'" in str(waiting.value) and "Run the pipeline again" in str(waiting.value)
    assert len(waiting.value.distiset["default"]["train"]) == 0
    assert waiting.value.distiset.statistics["gen"]["rows_waiting_on_batches"] == 10

    # Still running: the next run only looks, and ends waiting again, without a new batch.
    with pytest.raises(DistilabelOfflineBatchGenerationNotFinishedException):
        build(batch_llm(batch_server.base_url, offline_batch_generation_block_until_done=None)).run()
    assert batch_server.batch_count == 1

    batch_server.complete()
    pipeline = build(batch_llm(batch_server.base_url, offline_batch_generation_block_until_done=None))
    assert generations(pipeline.run()) == [f"m: question {i}" for i in range(10)]
    assert batch_server.batch_count == 1
    assert pipeline.last_run_metrics["gen"]["batches_resumed"] == 1


KILLABLE_JOB = textwrap.dedent(
    """
    import sys
    from beam_distil.models import OpenAILLM
    from beam_distil.pipeline import Pipeline
    from beam_distil.steps import LoadDataFromDicts
    from beam_distil.steps.tasks import TextGeneration

    base_url, output = sys.argv[1], sys.argv[2]
    with Pipeline("batch") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"question {i}"} for i in range(10)])
        llm = OpenAILLM(model="m", base_url=base_url, api_key="test", use_offline_batch_generation=True,
                        offline_batch_generation_block_until_done=1)
        load >> TextGeneration(name="gen", llm=llm, input_batch_size=4)
    pipeline.run().save_to_disk(output)
    """
)


def test_a_run_killed_while_polling_resumes_the_same_batch(batch_server, tmp_path):
    batch_server.hold = True
    cache_dir = tmp_path / "cache"
    script = tmp_path / "job.py"
    script.write_text(KILLABLE_JOB)
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "BEAM_DISTIL_CACHE_DIR": str(cache_dir)}
    command = [sys.executable, str(script), batch_server.base_url, str(tmp_path / "out")]

    job = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (batch_server.batch_count and batch_server.polls(batch_server.batch_ids[0]) >= 2):
        time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert batch_server.batch_count == 1
    records = BatchLedger(str(cache_dir)).records()
    assert [record.batch_id for record in records] == batch_server.batch_ids

    batch_server.release()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)

    from beam_distil.distiset import Distiset

    rows = Distiset.load_from_disk(str(tmp_path / "out"))["default"]["train"].to_list()
    assert [row["generation"] for row in rows] == [f"m: question {i}" for i in range(10)]
    assert batch_server.batch_count == 1
    assert sorted(batch_server.submitted_by_custom_id.values()) == [1] * 10


def test_a_run_killed_before_the_batch_id_was_recorded_finds_the_batch(batch_server, tmp_path):
    """The record is written before the batch is created; a process that died before writing the id leaves a
    record without one, which the next run matches with the provider's list of batches (by its metadata)."""
    batch_server.hold = True
    pipeline = build(batch_llm(batch_server.base_url, offline_batch_generation_block_until_done=None))
    with pytest.raises(DistilabelOfflineBatchGenerationNotFinishedException):
        pipeline.run()
    ledger = BatchLedger(os.environ["BEAM_DISTIL_CACHE_DIR"])
    [record] = ledger.records()
    record.batch_id = None
    record.last_status = None
    ledger.save(record)

    batch_server.release()
    again = build(batch_llm(batch_server.base_url))
    assert generations(again.run()) == [f"m: question {i}" for i in range(10)]
    assert batch_server.batch_count == 1
    assert batch_server.calls["list_batches"] >= 1
    assert [r.batch_id for r in ledger.records()] == batch_server.batch_ids


def test_api_errors_worth_retrying_are_retried(batch_server):
    batch_server.fail_next("upload_file", times=1, status=500)
    batch_server.fail_next("create_batch", times=1, status=429, retry_after=0)
    batch_server.fail_next("get_batch", times=2, status=503)
    pipeline = build(batch_llm(batch_server.base_url))
    assert generations(pipeline.run()) == [f"m: question {i}" for i in range(10)]
    assert batch_server.batch_count == 1


def test_a_refused_batch_fails_its_rows_without_failing_the_job(batch_server):
    batch_server.fail_next("create_batch", times=1, status=400)
    pipeline = build(batch_llm(batch_server.base_url))
    rows = pipeline.run()["default"]["train"].to_list()
    assert [row["generation"] for row in rows] == [None] * 10
    assert all("refused the batch" in row["distilabel_metadata"]["error_gen"] for row in rows)
    assert pipeline.last_run_metrics["gen"]["llm_failures"] == 10

    # Nothing was paid: the next run sends them again.
    again = build(batch_llm(batch_server.base_url))
    assert generations(again.run()) == [f"m: question {i}" for i in range(10)]


@pytest.mark.parametrize("running_mode", ["multi_threading", "multi_processing"])
def test_every_worker_rows_come_back_exactly_once(batch_server, running_mode):
    rows = 60
    pipeline = build(batch_llm(batch_server.base_url, offline_batch_max_requests=7), rows=rows, batch_size=5)
    distiset = pipeline.run(options={"direct_running_mode": running_mode, "direct_num_workers": 2})

    assert sorted(generations(distiset)) == sorted(f"m: question {i}" for i in range(rows))
    assert len(batch_server.submitted_by_custom_id) == rows
    assert set(batch_server.submitted_by_custom_id.values()) == {1}
    assert set(batch_server.answered_by_custom_id.values()) == {1}
    assert all(len(batch_server.batch_requests(b)) <= 7 for b in batch_server.batch_ids)


def test_an_llm_without_a_batch_api_refuses_the_batch_mode():
    with pytest.raises(ValueError, match="OllamaLLM has no provider batch API"):
        OllamaLLM(model="m", use_offline_batch_generation=True)


def test_the_batch_mode_without_the_cache_is_refused_before_launch(batch_server):
    with pytest.raises(PipelineValidationError, match="use_cache=True"):
        build(batch_llm(batch_server.base_url)).run(use_cache=False)
    assert batch_server.batch_count == 0


def test_the_batch_mode_on_a_task_of_several_calls_per_row_is_refused(batch_server):
    with Pipeline("evol") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "hi"}])
        load >> EvolInstruct(name="evol", llm=batch_llm(batch_server.base_url), num_evolutions=1)
    with pytest.raises(PipelineValidationError, match="several LLM calls per row"):
        pipeline.run()
    assert batch_server.batch_count == 0


def test_beam_native_use_with_a_cache_dir(batch_server, tmp_path):
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.testing.util import assert_that, equal_to

    task = TextGeneration(name="gen", llm=batch_llm(batch_server.base_url))
    with beam.Pipeline(runner=FnApiRunner()) as p:
        rows, failed = (
            p | beam.Create([{"instruction": "a"}, {"instruction": "b"}])
            | task.with_dead_letters(cache_dir=str(tmp_path / "cache"))
        )
        assert_that(rows | "Gen" >> beam.Map(lambda row: row["generation"]), equal_to(["m: a", "m: b"]), label="Rows")
        assert_that(failed, equal_to([]), label="Dead")
    assert batch_server.batch_count == 1
    assert len(BatchLedger(str(tmp_path / "cache")).records()) == 1

    with pytest.raises(ValueError, match="give it a cache"):
        with beam.Pipeline(runner=FnApiRunner()) as p:
            _ = p | beam.Create([{"instruction": "a"}]) | task.with_dead_letters()


def test_anthropic_batches_send_one_request_per_generation_and_keep_their_order():
    from beam_distil.models import AnthropicLLM
    from beam_distil.testing.anthropic_batch_server import AnthropicBatchServer

    with AnthropicBatchServer() as server:
        llm = AnthropicLLM(
            model="claude-test", base_url=server.base_url, api_key=server.api_key, use_offline_batch_generation=True,
            offline_batch_generation_block_until_done=1,
        )
        with Pipeline("claude") as pipeline:
            load = LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(3)])
            load >> TextGeneration(name="gen", llm=llm, num_generations=2, group_generations=True)
        rows = pipeline.run()["default"]["train"].to_list()

        assert [row["generation"] for row in rows] == [[f"claude-test: q{i}"] * 2 for i in range(3)]
        [batch_id] = server.batch_ids
        custom_ids = [request["custom_id"] for request in server.requests_of(batch_id)]
        assert len(custom_ids) == 6 and len(set(custom_ids)) == 6
        assert sorted(custom_id.rsplit("-", 1)[1] for custom_id in custom_ids) == ["0", "0", "0", "1", "1", "1"]
        assert pipeline.last_run_metrics["gen"]["llm_requests"] == 6
        assert pipeline.last_run_metrics["gen"]["batch_output_tokens"] > 0


def test_vertex_batch_prediction_through_a_pipeline(tmp_path):
    from beam_distil.models import VertexAILLM
    from beam_distil.testing.vertex_batch_server import VertexBatchServer

    with VertexBatchServer() as server:
        llm = VertexAILLM(
            model="gemini-test", project="proj", location="europe-west4", base_url=server.base_url,
            api_token="test-token", use_offline_batch_generation=True, offline_batch_generation_block_until_done=1,
            offline_batch_location=str(tmp_path / "vertex-batches"),
        )
        with Pipeline("gemini") as pipeline:
            load = LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(4)])
            load >> TextGeneration(name="gen", llm=llm)
        rows = pipeline.run()["default"]["train"].to_list()

        assert [row["generation"] for row in rows] == [f"gemini-test: q{i}" for i in range(4)]
        assert len(server.jobs()) == 1
        assert sorted(len(requests) for requests in server.requests_by_custom_id().values()) == [1] * 4
        assert list((tmp_path / "vertex-batches").glob("*/input.jsonl"))


def test_progress_shows_batches_open_and_requests_answered(batch_server, capsys):
    build(batch_llm(batch_server.base_url)).run(show_progress=True)
    drawn = capsys.readouterr().err
    assert "batches open 1, answered 0/10" in drawn
    assert "batches open 0, answered 10/10" in drawn.splitlines()[-2] + drawn.splitlines()[-1]


def test_an_offline_batch_location_that_cannot_be_written_is_refused_before_launch(tmp_path):
    from beam_distil.models import VertexAILLM

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    llm = VertexAILLM(
        model="gemini-test", project="proj", base_url="http://127.0.0.1:9", api_token="test-token",
        use_offline_batch_generation=True, offline_batch_location=str(blocker / "batches"),
    )
    with Pipeline("gemini") as pipeline:
        LoadDataFromDicts(data=[{"instruction": "q"}]) >> TextGeneration(name="gen", llm=llm)
    with pytest.raises(PipelineValidationError, match="step 'gen': offline_batch_location .* cannot be written"):
        pipeline.run()


def test_a_recorded_batch_the_provider_no_longer_knows_is_sent_again(batch_server):
    batch_server.hold = True
    with pytest.raises(DistilabelOfflineBatchGenerationNotFinishedException):
        build(batch_llm(batch_server.base_url, offline_batch_generation_block_until_done=None)).run()
    ledger = BatchLedger(os.environ["BEAM_DISTIL_CACHE_DIR"])
    [record] = ledger.records()
    record.batch_id = "batch_deleted_since"
    ledger.save(record)

    batch_server.hold = False
    pipeline = build(batch_llm(batch_server.base_url))
    assert generations(pipeline.run()) == [f"m: question {i}" for i in range(10)]
    assert batch_server.batch_count == 2
    assert pipeline.last_run_metrics["gen"]["requests_resent"] == 10
    assert [r.last_status for r in ledger.records()][0] == "unreadable"


def test_batch_tokens_are_priced_at_the_batch_rates(batch_server):
    pipeline = build(batch_llm(batch_server.base_url))
    pipeline.run(prices={"m": {"input": 2.0, "output": 8.0}})

    usage = pipeline.last_run_usage["m"]
    metrics = pipeline.last_run_metrics["gen"]
    assert (usage.online_input_tokens, usage.online_output_tokens) == (0, 0)
    assert (usage.batch_input_tokens, usage.batch_output_tokens) == (metrics["input_tokens"], metrics["output_tokens"])
    expected = (metrics["input_tokens"] * 1.0 + metrics["output_tokens"] * 4.0) / 1_000_000  # half the online prices
    assert usage.cost == pytest.approx(expected)


def test_large_inputs_are_split_within_the_byte_limit(batch_server, monkeypatch):
    from beam_distil.models.openai_batch import OpenAIBatchAPI

    api = OpenAILLM(model="m", base_url=batch_server.base_url, api_key="test").offline_batch_api()
    line = api.encode_request(BatchRequest("0" * 40 + "-0", [{"role": "user", "content": "question 0"}], 1, {}))
    # Room for three lines of this size (the prompts differ by a digit at most) in each batch.
    monkeypatch.setattr(OpenAIBatchAPI, "max_bytes_per_batch", 3 * (len(line) + 1) + 2)
    pipeline = build(batch_llm(batch_server.base_url), rows=10, batch_size=10)
    assert generations(pipeline.run()) == [f"m: question {i}" for i in range(10)]
    sizes = sorted(len(batch_server.batch_requests(batch_id)) for batch_id in batch_server.batch_ids)
    assert sizes == [1, 3, 3, 3]
    for batch_id in batch_server.batch_ids:
        assert len(batch_server.file_content(batch_server.batch(batch_id)["input_file_id"])) <= 3 * (len(line) + 1) + 2


def test_a_saved_batch_pipeline_loads_and_runs_with_its_batch_settings(batch_server, tmp_path):
    path = tmp_path / "pipeline.yaml"
    build(batch_llm(batch_server.base_url, offline_batch_unanswered="fail", offline_batch_max_requests=3)).save(path)

    loaded = Pipeline.from_file(str(path))
    llm = loaded.dag.steps["gen"].llm
    assert llm.use_offline_batch_generation is True
    assert llm.offline_batch_generation_block_until_done == 1
    assert (llm.offline_batch_unanswered, llm.offline_batch_max_requests) == ("fail", 3)
    loaded.dag.steps["gen"].llm.api_key = "test"  # keys are never saved
    assert generations(loaded.run()) == [f"m: question {i}" for i in range(10)]
    assert batch_server.batch_count == 4


def test_pipeline_info_says_a_task_goes_through_the_batch_api(batch_server, tmp_path, capsys):
    from beam_distil.cli import main

    path = tmp_path / "pipeline.yaml"
    build(batch_llm(batch_server.base_url)).save(path)
    assert main(["pipeline", "info", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"llm: OpenAILLM (m) at {batch_server.base_url} through the provider's batch API" in out
