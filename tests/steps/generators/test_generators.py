from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Dict, List

import apache_beam as beam
import pandas as pd
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from pydantic import ValidationError

from beam_distil.pipeline import Pipeline
from beam_distil.steps import Step, StepInput
from beam_distil.steps.generators import (
    LoadDataFromDicts,
    LoadDataFromFileSystem,
    LoadDataFromHub,
    LoadHubDataset,
    make_generator_step,
)

ROWS = [{"instruction": f"q{i}", "n": i} for i in range(7)]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _batches(step: Any, offset: int = 0) -> List[tuple]:
    return [(rows, last) for rows, last in step.process(offset=offset)]


def _check_batching(step: Any, expected: List[Dict[str, Any]]) -> None:
    batches = _batches(step)
    assert [len(rows) for rows, _ in batches] == [3, 3, 1]
    assert [last for _, last in batches] == [False, False, True]
    assert [row for rows, _ in batches for row in rows] == expected
    assert all(type(row) is dict for rows, _ in batches for row in rows)
    shifted = _batches(step, offset=4)
    assert [row for rows, _ in shifted for row in rows] == expected[4:]
    assert shifted[-1][1] is True and len(shifted) == 1


def _write_jsonl(path: Path, rows: List[Dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _write_parquet(path: Path, rows: List[Dict[str, Any]]) -> Path:
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def _write_csv(path: Path, rows: List[Dict[str, Any]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


class Upper(Step):
    @property
    def inputs(self) -> List[str]:
        return ["instruction"]

    @property
    def outputs(self) -> List[str]:
        return ["upper"]

    def process(self, inputs: StepInput):  # type: ignore[override]
        yield [{**row, "upper": row["instruction"].upper()} for row in inputs]


# -- LoadDataFromDicts ------------------------------------------------------------------------------------


def test_dicts_batching_offset_and_outputs() -> None:
    step = LoadDataFromDicts(data=ROWS, batch_size=3)
    assert step.outputs == ["instruction", "n"]
    assert step.known_output_columns() == ["instruction", "n"]
    _check_batching(step, ROWS)
    assert _batches(step, offset=100) == []


def test_dicts_output_mappings_in_known_columns() -> None:
    step = LoadDataFromDicts(data=ROWS, output_mappings={"n": "number"})
    assert step.known_output_columns() == ["instruction", "number"]


def test_dicts_empty_data_is_validation_error() -> None:
    with pytest.raises(ValidationError, match="at least one row"):
        LoadDataFromDicts(data=[])


# -- LoadDataFromFileSystem -------------------------------------------------------------------------------


@pytest.mark.parametrize("filetype", ["jsonl", "json", "parquet", "csv"])
def test_filesystem_each_filetype(tmp_path: Path, filetype: str) -> None:
    rows = [{"instruction": f"q{i}", "answer": f"a{i}"} for i in range(7)]
    path = tmp_path / f"data.{filetype}"
    if filetype == "jsonl":
        _write_jsonl(path, rows)
    elif filetype == "json":
        path.write_text(json.dumps(rows, indent=2))
    elif filetype == "parquet":
        _write_parquet(path, rows)
    else:
        _write_csv(path, rows)
    step = LoadDataFromFileSystem(data_files=str(path), batch_size=3)
    assert step.known_output_columns() == ["instruction", "answer"]
    step.load()
    assert step.outputs == ["instruction", "answer"]
    _check_batching(step, rows)
    step.unload()


def test_filesystem_directory_and_glob(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _write_jsonl(data_dir / "a.jsonl", ROWS[:4])
    _write_jsonl(data_dir / "b.jsonl", ROWS[4:])
    (data_dir / "notes.txt").write_text("not data")

    from_dir = LoadDataFromFileSystem(data_files=data_dir, batch_size=3)
    assert from_dir.known_output_columns() == ["instruction", "n"]
    from_dir.load()
    _check_batching(from_dir, ROWS)

    from_glob = LoadDataFromFileSystem(data_files=str(data_dir / "*.jsonl"), batch_size=3)
    from_glob.load()
    _check_batching(from_glob, ROWS)

    only_b = LoadDataFromFileSystem(data_files=str(data_dir / "b*"), filetype="jsonl")
    only_b.load()
    assert [row for rows, _ in only_b.process() for row in rows] == ROWS[4:]


def test_filesystem_num_examples_and_streaming(tmp_path: Path) -> None:
    path = _write_parquet(tmp_path / "data.parquet", ROWS)
    limited = LoadDataFromFileSystem(data_files=str(path), num_examples=5, batch_size=2)
    limited.load()
    batches = _batches(limited)
    assert [row for rows, _ in batches for row in rows] == ROWS[:5]
    assert [last for _, last in batches] == [False, False, True]

    streamed = LoadDataFromFileSystem(data_files=str(path), streaming=True, batch_size=3)
    streamed.load()
    _check_batching(streamed, ROWS)


def test_filesystem_missing_file_error_names_step_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    step = LoadDataFromFileSystem(name="my_loader", data_files=str(missing))
    with pytest.raises(ValueError) as info:
        step.known_output_columns()
    message = str(info.value)
    assert "my_loader" in message and str(missing) in message and "no such file" in message
    with pytest.raises(ValueError, match="my_loader"):
        step.load()
    with pytest.raises(ValueError, match="matches no file"):
        LoadDataFromFileSystem(data_files=str(tmp_path / "*.csv")).known_output_columns()


def test_filesystem_unknown_extension_asks_for_filetype(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "data.txt", ROWS)
    with pytest.raises(ValueError, match="filetype"):
        LoadDataFromFileSystem(data_files=str(path)).known_output_columns()
    step = LoadDataFromFileSystem(data_files=str(path), filetype="jsonl")
    assert step.known_output_columns() == ["instruction", "n"]


def test_filesystem_missing_file_fails_pipeline_validation(tmp_path: Path) -> None:
    with Pipeline("bad") as pipeline:
        load = LoadDataFromFileSystem(name="load", data_files=str(tmp_path / "missing.parquet"))
        load >> Upper(name="upper")
    with pytest.raises(ValueError, match="missing.parquet"):
        pipeline.validate()


def test_filesystem_columns_checked_by_pipeline_validation(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "data.jsonl", [{"prompt": "x"}])
    with Pipeline("cols") as pipeline:
        load = LoadDataFromFileSystem(name="load", data_files=str(path))
        load >> Upper(name="upper")
    with pytest.raises(ValueError, match="instruction"):
        pipeline.validate()


# -- LoadDataFromHub --------------------------------------------------------------------------------------


def test_hub_local_directory(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    _write_parquet(repo / "data" / "train-00000.parquet", ROWS)
    step = LoadDataFromHub(repo_id=str(repo), batch_size=3)
    assert step.known_output_columns() is None  # only loading can tell
    step.load()
    assert step.outputs == ["instruction", "n"]
    assert step.known_output_columns() == ["instruction", "n"]
    _check_batching(step, ROWS)

    limited = LoadDataFromHub(repo_id=str(repo), num_examples=2, batch_size=5)
    limited.load()
    assert _batches(limited) == [(ROWS[:2], True)]


def test_hub_repo_id_is_required_runtime_parameter() -> None:
    step = LoadDataFromHub()
    assert step.missing_runtime_parameters() == ["repo_id"]
    step.set_runtime_parameters({"repo_id": "some/repo", "split": "test"})
    assert step.missing_runtime_parameters() == [] and step.split == "test"
    assert step._dataset is None  # nothing loaded at construction or configuration



def test_load_hub_dataset_is_distilabels_old_name(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    _write_parquet(repo / "data" / "train-00000.parquet", ROWS)
    with pytest.warns(DeprecationWarning, match="use LoadDataFromHub"):
        step = LoadHubDataset(repo_id=str(repo), batch_size=3)
    assert isinstance(step, LoadDataFromHub)
    assert step.missing_runtime_parameters() == []
    step.load()
    _check_batching(step, ROWS)
    assert step.dump()["type_info"] == {"module": "beam_distil.steps.generators.huggingface", "name": "LoadHubDataset"}
    assert type(LoadHubDataset.from_dict(step.dump())) is LoadHubDataset


# -- make_generator_step ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["list", "dataset", "dataframe"])
def test_make_generator_step_inputs(kind: str) -> None:
    from datasets import Dataset

    source: Any = {
        "list": ROWS,
        "dataset": Dataset.from_list(ROWS),
        "dataframe": pd.DataFrame(ROWS),
    }[kind]
    with Pipeline("mk") as pipeline:
        step = make_generator_step(source, pipeline=pipeline, batch_size=3, output_mappings={"n": "num"})
    assert step.name in pipeline.dag.steps and step.pipeline is pipeline
    assert step.batch_size == 3
    assert step.known_output_columns() == ["instruction", "num"]
    rows = [row for rows, _ in step.process() for row in rows]
    assert rows == ROWS
    assert all(type(row["n"]) is int for row in rows)


def test_make_generator_step_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="list of dicts.*Dataset.*DataFrame"):
        make_generator_step("not rows")


# -- Beam -------------------------------------------------------------------------------------------------


def test_pipeline_end_to_end_with_dicts() -> None:
    with Pipeline("e2e") as pipeline:
        load = LoadDataFromDicts(data=ROWS, batch_size=2)
        load >> Upper(name="upper", input_batch_size=3)
    distiset = pipeline.run()
    expected = [{**row, "upper": row["instruction"].upper()} for row in ROWS]
    assert distiset["default"]["train"].to_list() == expected


def test_pipeline_end_to_end_with_files(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _write_jsonl(data_dir / "a.jsonl", ROWS[:3])
    _write_jsonl(data_dir / "b.jsonl", ROWS[3:])
    with Pipeline("files") as pipeline:
        load = LoadDataFromFileSystem(name="load", batch_size=2)
        load >> Upper(name="upper")
    distiset = pipeline.run(parameters={"load": {"data_files": str(data_dir)}})
    expected = [{**row, "upper": row["instruction"].upper()} for row in ROWS]
    assert distiset["default"]["train"].to_list() == expected


def test_pipeline_run_with_dataset_argument() -> None:
    with Pipeline("ds") as pipeline:
        Upper(name="upper")
    distiset = pipeline.run(dataset=pd.DataFrame(ROWS[:3]))
    assert distiset["default"]["train"].to_list() == [
        {**row, "upper": row["instruction"].upper()} for row in ROWS[:3]
    ]


def test_beam_native_load_data_from_dicts() -> None:
    with beam.Pipeline(runner=FnApiRunner()) as p:
        rows = p | LoadDataFromDicts(data=ROWS, batch_size=2)
        assert_that(rows, equal_to(ROWS))
