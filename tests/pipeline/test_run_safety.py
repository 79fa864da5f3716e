"""A run checks every place it writes before paying for a request, and no single row, input line or cache entry
can fail it: each is kept or skipped, said and counted. (Running as root, a folder cannot be made unwritable with
permissions, so an unwritable location here is a path under a regular file.)"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from beam_distil.beam.launch import SCRATCH_PREFIX
from beam_distil.models import OpenAILLM
from beam_distil.pipeline import Pipeline, PipelineValidationError
from beam_distil.steps import LoadDataFromDicts, LoadDataFromFileSystem
from beam_distil.steps.tasks import TextGeneration


def generating(server_url: str, rows, cache_dir=None) -> Pipeline:
    with Pipeline("safe", cache_dir=cache_dir) as pipeline:
        load = LoadDataFromDicts(name="load", data=rows)
        load >> TextGeneration(name="gen", llm=OpenAILLM(model="m", base_url=server_url, api_key="t"))
    return pipeline


def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize(
    "where, expected",
    [
        ("cache_dir", "the response cache '{path}' cannot be written (NotADirectoryError"),
        ("output_dir", "output_dir '{path}' cannot be written"),
        ("dead_letter_dir", "dead_letter_dir '{path}' cannot be written"),
    ],
)
def test_an_unwritable_location_is_refused_before_any_request(where, expected, openai_server, tmp_path):
    path = str(a_file(tmp_path) / "inside")
    pipeline = generating(openai_server.base_url, [{"instruction": "q"}], cache_dir=path if where == "cache_dir" else None)
    run_kwargs = {} if where == "cache_dir" else {where: path}

    with pytest.raises(PipelineValidationError) as caught:
        pipeline.run(**run_kwargs)

    assert expected.format(path=path) in str(caught.value)
    assert openai_server.request_count == 0


def test_a_read_only_home_is_named_with_the_way_out(openai_server, tmp_path, monkeypatch):
    monkeypatch.delenv("BEAM_DISTIL_CACHE_DIR")
    monkeypatch.setenv("HOME", str(a_file(tmp_path)))

    with pytest.raises(PipelineValidationError) as caught:
        generating(openai_server.base_url, [{"instruction": "q"}]).run()

    message = str(caught.value)
    assert "the response cache" in message and "BEAM_DISTIL_CACHE_DIR" in message and "use_cache=False" in message
    assert openai_server.request_count == 0


def test_a_cache_that_fails_mid_run_keeps_the_answers_paid_for(openai_server, tmp_path, caplog):
    cache = tmp_path / "cache"
    cache.mkdir()
    for index in range(256):  # the entries' folders are files: the folder itself is writable, no entry is
        (cache / f"{index:02x}").write_text("")
    rows = [{"instruction": f"q{i}"} for i in range(5)]
    pipeline = generating(openai_server.base_url, rows, cache_dir=str(cache))

    with caplog.at_level("WARNING", logger="beam_distil"):
        distiset = pipeline.run()

    assert [row["generation"] for row in distiset["default"]["train"]] == [f"m: q{i}" for i in range(5)]
    assert pipeline.last_run_metrics["gen"]["cache_write_failures"] == 5
    assert pipeline.last_run_metrics["gen"]["llm_failures"] == 0
    assert "cannot be written" in caplog.text and "would pay for them again" in caplog.text


def test_a_corrupt_cache_entry_is_a_miss(openai_server, tmp_path, caplog):
    cache = tmp_path / "cache"
    rows = [{"instruction": "q0"}, {"instruction": "q1"}]
    generating(openai_server.base_url, rows, cache_dir=str(cache)).run()
    [entry, *_] = sorted(cache.rglob("*.json"))
    entry.write_text(json.dumps({"generations": "not a list"}))  # JSON, but not a completion

    with caplog.at_level("WARNING", logger="beam_distil"):
        pipeline = generating(openai_server.base_url, rows, cache_dir=str(cache))
        distiset = pipeline.run()

    assert [row["generation"] for row in distiset["default"]["train"]] == ["m: q0", "m: q1"]
    assert pipeline.last_run_metrics["gen"]["cache_corrupt_entries"] == 1
    assert pipeline.last_run_metrics["gen"]["cache_hits"] == 1
    assert openai_server.request_count == 3
    assert "is a completion without a list of generations: treated as a miss" in caplog.text


def test_a_lone_surrogate_in_a_row_is_an_error_row_not_a_failed_job(openai_server):
    rows = [{"instruction": "fine"}, {"instruction": "caf\udce9"}, {"instruction": "also fine"}]
    pipeline = generating(openai_server.base_url, rows)

    distiset = pipeline.run()

    out = distiset["default"]["train"].to_list()
    assert [row["generation"] for row in out] == ["m: fine", None, "m: also fine"]
    assert out[1]["instruction"] is None
    assert "text UTF-8 cannot encode (column 'instruction'" in out[1]["distilabel_metadata"]["error_load"]
    assert pipeline.last_run_metrics["load"]["unencodable_rows"] == 1
    assert pipeline.last_run_metrics["gen"]["llm_failures"] == 1
    assert openai_server.request_count == 2  # nothing was sent for the bad row


def test_a_lone_surrogate_in_an_answer_is_kept_escaped(openai_server):
    openai_server.set_answer("m", "caf\udce9")
    pipeline = generating(openai_server.base_url, [{"instruction": "q"}])

    [row] = pipeline.run()["default"]["train"].to_list()

    assert row["generation"] == "caf\\udce9"
    assert "kept with the lone surrogates escaped" in row["distilabel_metadata"]["error_gen"]
    assert pipeline.last_run_metrics["gen"]["unencodable_rows"] == 1


def test_malformed_jsonl_lines_are_skipped_and_reported(openai_server, tmp_path, caplog):
    data = tmp_path / "prompts.jsonl"
    data.write_bytes(b'{"instruction": "one"}\n{"instruction": "two"\n[1, 2]\n{"instruction": "caf\xe9"}\n{"instruction": "three"}\n')
    with Pipeline("files") as pipeline:
        load = LoadDataFromFileSystem(name="load", data_files=str(data))
        load >> TextGeneration(name="gen", llm=OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t"))

    with caplog.at_level("WARNING"):
        distiset = pipeline.run()

    assert [row["instruction"] for row in distiset["default"]["train"]] == ["one", "three"]
    assert pipeline.last_run_metrics["load"]["malformed_input_lines"] == 3
    assert f"skipped 3 malformed line(s) of {str(data)!r}" in caplog.text
    for line in (2, 3, 4):
        assert f"{data}:{line}:" in caplog.text


def test_scratch_folders_are_removed_and_a_killed_runs_are_cleaned_up(openai_server):
    stale = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}999999999-"))  # no such process
    (stale / "part-00000.rows").write_text("row data of a killed run")
    live = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))  # a run of this process
    try:
        before = set(Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}{os.getpid()}-*"))
        generating(openai_server.base_url, [{"instruction": "q"}]).run()

        assert not stale.exists()
        assert live.exists()
        assert set(Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}{os.getpid()}-*")) == before
    finally:
        live.rmdir()
