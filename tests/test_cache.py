"""The response cache: keys, atomic writes, concurrent writers, and re-runs that don't pay twice."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

from beam_distil.cache import ResponseCache
from beam_distil.models import LlamaCppLLM, OpenAILLM
from beam_distil.pipeline import Pipeline
from beam_distil.steps import LoadDataFromDicts
from beam_distil.steps.tasks import TextGeneration

CHAT = [{"role": "user", "content": "hi"}]
OUTPUT = {"generations": ["hello"], "statistics": {"input_tokens": [1], "output_tokens": [1]}}


def test_key_depends_on_what_decides_the_answer_and_nothing_else(tmp_path):
    cache = ResponseCache(str(tmp_path))
    base = OpenAILLM(model="m", base_url="http://x/v1", api_key="key-one")
    key = cache.key(base, CHAT, 1, {"temperature": 0.5})
    same = OpenAILLM(model="m", base_url="http://x/v1", api_key="key-two", max_concurrency=3, max_retries=0, timeout=5)
    assert cache.key(same, CHAT, 1, {"temperature": 0.5}) == key
    assert cache.key(OpenAILLM(model="other", base_url="http://x/v1"), CHAT, 1, {"temperature": 0.5}) != key
    assert cache.key(base, CHAT, 2, {"temperature": 0.5}) != key
    assert cache.key(base, CHAT, 1, {"temperature": 0.7}) != key
    assert cache.key(base, [{"role": "user", "content": "hi!"}], 1, {"temperature": 0.5}) != key
    assert cache.key(base, CHAT, 1, {"temperature": 0.5, "structured_output": {"type": "object"}}) != key
    assert cache.key(LlamaCppLLM(), CHAT, 1, {}) != cache.key(LlamaCppLLM(n_ctx=512), CHAT, 1, {})
    assert cache.key(LlamaCppLLM(), CHAT, 1, {}) == cache.key(LlamaCppLLM(n_threads=2), CHAT, 1, {})


def test_round_trip_and_a_torn_entry_is_a_miss(tmp_path):
    cache = ResponseCache(str(tmp_path))
    assert cache.get("ab" * 32) is None
    cache.put("ab" * 32, OUTPUT)
    assert cache.get("ab" * 32) == OUTPUT
    with open(tmp_path / "ab" / f"{'ab' * 32}.json", "w") as file:
        file.write('{"generations": ["hel')  # a write cut short
    assert cache.get("ab" * 32) is None
    cache.put("ab" * 32, OUTPUT)
    assert cache.get("ab" * 32) == OUTPUT
    assert not [name for name in os.listdir(tmp_path / "ab") if name.endswith(".tmp")]


def test_concurrent_writers_in_threads_never_leave_a_torn_entry(tmp_path):
    cache = ResponseCache(str(tmp_path))
    outputs = [{"generations": [f"answer {i}" * 200], "statistics": {"input_tokens": [i], "output_tokens": [i]}} for i in range(8)]
    torn = []

    def hammer(index: int) -> None:
        for round in range(50):
            cache.put("cd" * 32, outputs[(index + round) % 8])
            read = cache.get("cd" * 32)
            if read not in outputs:
                torn.append(read)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert torn == []
    assert cache.get("cd" * 32) in outputs


def _write_many(directory: str, worker: int) -> None:
    cache = ResponseCache(directory)
    for i in range(100):
        cache.put(f"{i % 10:02d}" + "e" * 62, {"generations": [f"{worker}-{i}"], "statistics": {"input_tokens": [0], "output_tokens": [0]}})


def test_concurrent_writers_in_processes(tmp_path):
    processes = [multiprocessing.get_context("spawn").Process(target=_write_many, args=(str(tmp_path), w)) for w in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert all(process.exitcode == 0 for process in processes)
    cache = ResponseCache(str(tmp_path))
    for i in range(10):
        assert cache.get(f"{i:02d}" + "e" * 62)["generations"][0].split("-")[0] in {"0", "1", "2", "3"}


def build(base_url: str, rows: int = 30, **task_kwargs) -> Pipeline:
    with Pipeline("cached") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(rows)])
        load >> TextGeneration(name="gen", llm=OpenAILLM(model="m", base_url=base_url, api_key="t"), **task_kwargs)
    return pipeline


def test_a_rerun_reuses_every_completion(openai_server):
    first = build(openai_server.base_url).run()["default"]["train"].to_list()
    assert openai_server.request_count == 30

    pipeline = build(openai_server.base_url)
    second = pipeline.run()["default"]["train"].to_list()

    assert openai_server.request_count == 30
    assert second == first
    assert pipeline.last_run_metrics["gen"]["cache_hits"] == 30
    assert pipeline.last_run_metrics["gen"]["llm_requests"] == 0


def test_use_cache_false_pays_again(openai_server):
    build(openai_server.base_url).run()
    build(openai_server.base_url).run(use_cache=False)
    assert openai_server.request_count == 60
    build(openai_server.base_url, use_cache=False).run()
    assert openai_server.request_count == 90


def test_failed_calls_are_not_cached(openai_server):
    openai_server.fail_models = {"m"}
    pipeline = build(openai_server.base_url, rows=3)
    pipeline.dag.steps["gen"].llm.max_retries = 0
    pipeline.run()
    openai_server.fail_models = set()
    rows = build(openai_server.base_url, rows=3).run()["default"]["train"].to_list()
    assert [row["generation"] for row in rows] == ["m: q0", "m: q1", "m: q2"]


RESUMABLE_JOB = textwrap.dedent(
    """
    import sys
    from beam_distil.models import OpenAILLM
    from beam_distil.pipeline import Pipeline
    from beam_distil.steps import LoadDataFromDicts
    from beam_distil.steps.tasks import TextGeneration

    base_url, rows, output = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with Pipeline("resumable") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"question {i}"} for i in range(rows)])
        llm = OpenAILLM(model="m", base_url=base_url, api_key="t", max_concurrency=16)
        load >> TextGeneration(name="gen", llm=llm, input_batch_size=10)
    pipeline.run().save_to_disk(output)
    """
)


def test_a_killed_run_resumes_without_paying_twice(openai_server, tmp_path):
    rows = 400
    openai_server.latency = 0.1
    script = tmp_path / "job.py"
    script.write_text(RESUMABLE_JOB)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    command = [sys.executable, str(script), openai_server.base_url, str(rows), str(tmp_path / "out")]

    job = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while openai_server.request_count < rows // 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    # Answers the server had sent 0.2 s before the kill must have been stored. An answer still on its way when
    # the process dies (in the socket, or waiting for the client's event loop) cannot have been; it is asked again.
    answered_before_kill = {body["messages"][-1]["content"] for body in openai_server.answered_requests}
    time.sleep(0.2)
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert 0 < len(answered_before_kill) < rows
    sent_before = len(openai_server.requests)

    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)

    from beam_distil.distiset import Distiset

    result = Distiset.load_from_disk(str(tmp_path / "out"))["default"]["train"].to_list()
    assert [row["generation"] for row in result] == [f"m: question {i}" for i in range(rows)]
    asked_again = {body["messages"][-1]["content"] for body in openai_server.requests[sent_before:]}
    paid_twice = len(asked_again & answered_before_kill)
    assert paid_twice <= 0.02 * len(answered_before_kill), json.dumps(
        {"answered_before_kill": len(answered_before_kill), "sent_before": sent_before, "paid_twice": paid_twice}
    )


def test_ctrl_c_stops_the_run_and_leaves_a_readable_cache(openai_server, tmp_path):
    rows = 400
    openai_server.latency = 0.1
    script = tmp_path / "job.py"
    script.write_text(RESUMABLE_JOB)
    cache_dir = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "BEAM_DISTIL_CACHE_DIR": str(cache_dir)}
    command = [sys.executable, str(script), openai_server.base_url, str(rows), str(tmp_path / "out")]

    job = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while openai_server.request_count < rows // 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    job.send_signal(signal.SIGINT)
    _, stderr = job.communicate(timeout=30)  # stops by itself, promptly
    assert job.returncode != 0
    assert b"KeyboardInterrupt" in stderr

    entries = [path for path in cache_dir.rglob("*") if path.is_file()]
    assert entries and not [path for path in entries if path.suffix == ".tmp"]
    for path in entries:
        json.loads(path.read_text())  # every entry whole
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    assert openai_server.request_count < rows + rows // 3 + 64


def test_a_remote_run_keeps_its_cache_under_the_temp_location(monkeypatch):
    from beam_distil.beam.launch import cache_dir_for
    from beam_distil.beam.runner import to_pipeline_options

    monkeypatch.delenv("BEAM_DISTIL_CACHE_DIR")
    remote = to_pipeline_options(["--runner=DataflowRunner", "--temp_location=gs://bucket/tmp/"])
    assert cache_dir_for(Pipeline("p"), remote) == "gs://bucket/tmp/beam_distil_cache"
    assert cache_dir_for(Pipeline("p", cache_dir="gs://mine/cache"), remote) == "gs://mine/cache"
    assert cache_dir_for(Pipeline("p"), to_pipeline_options([])).endswith(os.path.join(".cache", "beam_distil"))
