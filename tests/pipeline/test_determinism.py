"""The same pipeline, data and seeds give byte-identical Distiset files on every run and runner mode."""

from __future__ import annotations

import hashlib
import os
import shutil

from beam_distil.models import OpenAILLM
from beam_distil.pipeline import Pipeline, sample_n_steps
from beam_distil.steps import GroupColumns, LoadDataFromDicts
from beam_distil.steps.tasks import TextGeneration


def file_digests(path: str) -> dict:
    digests = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as file:
                digests[os.path.relpath(full, path)] = hashlib.sha256(file.read()).hexdigest()
    return digests


def saved_run(base_url: str, out: str, options: dict, use_cache: bool) -> dict:
    with Pipeline("deterministic") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"q{i % 7}"} for i in range(40)], batch_size=4)
        tasks = [
            TextGeneration(name=f"gen_{m}", llm=OpenAILLM(model=m, base_url=base_url, api_key="t"), num_generations=2,
                           group_generations=True)
            for m in ("a", "b", "c")
        ]
        load >> sample_n_steps(2, seed=3) >> tasks >> GroupColumns(columns=["generation", "model_name"])
    shutil.rmtree(out, ignore_errors=True)
    pipeline.run(options=options, use_cache=use_cache).save_to_disk(out)
    digests = file_digests(out)
    # pipeline.log is the run's summary of counters: a run served from the cache rightly reports other counts.
    assert digests.pop(os.path.join("distiset_configs", "pipeline.log"))
    return digests


def test_byte_identical_across_runs_runner_modes_and_the_cache(openai_server, tmp_path):
    out = str(tmp_path / "distiset")
    first = saved_run(openai_server.base_url, out, {"direct_running_mode": "in_memory"}, use_cache=True)
    assert saved_run(openai_server.base_url, out, {"direct_running_mode": "in_memory"}, use_cache=False) == first
    assert saved_run(
        openai_server.base_url, out, {"direct_running_mode": "multi_threading", "direct_num_workers": 2}, use_cache=False
    ) == first
    assert saved_run(
        openai_server.base_url, out, {"direct_running_mode": "multi_processing", "direct_num_workers": 2}, use_cache=True
    ) == first
    assert any(name.endswith(".arrow") for name in first)
