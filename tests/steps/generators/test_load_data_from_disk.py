"""``LoadDataFromDisk``: a dataset saved with ``save_to_disk``, or a Distiset, read back on Beam's runners as
distilabel's ``LoadDataFromDisk`` reads it, with stable row ids and without the data travelling with the job."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Dict, List

import fsspec
import pytest
from datasets import Dataset, DatasetDict

from beam_distil.distiset import Distiset
from beam_distil.pipeline import Pipeline, PipelineValidationError
from beam_distil.steps import GroupColumns, KeepColumns, LoadDataFromDisk, Step, StepInput, StepOutput

ROWS = [{"instruction": f"q{i}", "n": i} for i in range(9)]
WORKER_PROCESSES = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


class Tag(Step):
    """Adds ``generation`` = ``<instruction>-<tag>``."""

    tag: str

    @property
    def inputs(self) -> List[str]:
        return ["instruction"]

    @property
    def outputs(self) -> List[str]:
        return ["generation"]

    def process(self, inputs: StepInput) -> StepOutput:
        yield [{**row, "generation": f"{row['instruction']}-{self.tag}"} for row in inputs]


@pytest.fixture
def saved_dataset(tmp_path: Path) -> Path:
    path = tmp_path / "dataset"
    Dataset.from_list(ROWS).save_to_disk(str(path))
    return path


def _rows(pipeline: Pipeline, **run: Any) -> List[Dict[str, Any]]:
    return pipeline.run(use_cache=False, **run)["default"]["train"].to_list()


def test_batches_of_a_saved_dataset(saved_dataset: Path) -> None:
    load = LoadDataFromDisk(dataset_path=str(saved_dataset), batch_size=4)
    batches = list(load.process())
    assert [rows for rows, _ in batches] == [ROWS[0:4], ROWS[4:8], ROWS[8:]]
    assert [last for _, last in batches] == [False, False, True]
    assert load.outputs == ["instruction", "n"]
    assert list(LoadDataFromDisk(dataset_path=str(saved_dataset), num_examples=2).process()) == [(ROWS[:2], True)]


@pytest.mark.parametrize("options", [None, WORKER_PROCESSES], ids=["in_memory", "multi_processing"])
def test_a_pipeline_reads_it_in_order_with_one_row_per_saved_row(tmp_path: Path, options: Any) -> None:
    # Identical rows stay distinct and in place: each row's id is its position, through a join of two branches.
    rows = [{"instruction": "same"}] * 3 + [{"instruction": f"q{i}"} for i in range(5)]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "dups"))
    with Pipeline("from-disk") as pipeline:
        load = LoadDataFromDisk(name="load", dataset_path=str(tmp_path / "dups"), batch_size=3)
        a, b = Tag(name="a", tag="a", input_batch_size=2), Tag(name="b", tag="b", input_batch_size=5)
        group = GroupColumns(columns=["generation"], output_columns=["generations"])
        load >> [a, b] >> group
    got = _rows(pipeline, options=options)
    assert [row["instruction"] for row in got] == [row["instruction"] for row in rows]
    assert [row["generations"] for row in got] == [[f"{row['instruction']}-a", f"{row['instruction']}-b"] for row in rows]


def test_distilabels_runtime_parameters_set_it_at_run_time(saved_dataset: Path) -> None:
    with Pipeline("from-disk") as pipeline:
        LoadDataFromDisk(name="load") >> KeepColumns(columns=["n"])
    assert _rows(pipeline, parameters={"load": {"dataset_path": str(saved_dataset), "num_examples": 3}}) == [
        {"n": 0},
        {"n": 1},
        {"n": 2},
    ]
    info = {entry["name"] for entry in LoadDataFromDisk().get_runtime_parameters_info()}
    assert {"dataset_path", "config", "is_distiset", "keep_in_memory", "split", "num_examples", "batch_size"} <= info


def test_a_split_of_a_dataset_dict(tmp_path: Path) -> None:
    DatasetDict({"train": Dataset.from_list(ROWS[:5]), "test": Dataset.from_list(ROWS[5:])}).save_to_disk(str(tmp_path / "dd"))
    with Pipeline("split") as pipeline:
        LoadDataFromDisk(name="load", dataset_path=str(tmp_path / "dd"), split="test") >> KeepColumns(columns=["n"])
    assert _rows(pipeline) == [{"n": n} for n in range(5, 9)]

    # Several splits and none chosen: said before anything runs (distilabel fails on the first batch).
    with Pipeline("no-split") as pipeline:
        LoadDataFromDisk(name="load", dataset_path=str(tmp_path / "dd")) >> KeepColumns(columns=["n"])
    with pytest.raises(PipelineValidationError, match=r"has the splits \['train', 'test'\]: set `split`"):
        pipeline.run(use_cache=False)


def test_a_distiset_configuration(tmp_path: Path) -> None:
    distiset = Distiset(
        {
            "leaf_a": DatasetDict({"train": Dataset.from_list([{"x": 1}, {"x": 2}])}),
            "leaf_b": DatasetDict({"train": Dataset.from_list([{"y": 3}])}),
        }
    )
    distiset.save_to_disk(str(tmp_path / "distiset"))
    load = LoadDataFromDisk(dataset_path=str(tmp_path / "distiset"), is_distiset=True, config="leaf_a")
    assert load.outputs == ["x"]  # known before loading, for validation
    assert list(load.process()) == [([{"x": 1}, {"x": 2}], True)]

    with Pipeline("bad-config") as pipeline:
        LoadDataFromDisk(name="load", dataset_path=str(tmp_path / "distiset"), is_distiset=True) >> KeepColumns(columns=["x"])
    with pytest.raises(PipelineValidationError, match=r"configuration 'default' is not in the Distiset.*\['leaf_a', 'leaf_b'\]"):
        pipeline.run(use_cache=False)


def test_the_columns_are_checked_before_the_run(saved_dataset: Path) -> None:
    with Pipeline("columns") as pipeline:
        LoadDataFromDisk(name="load", dataset_path=str(saved_dataset)) >> KeepColumns(columns=["instruction", "missing"])
    with pytest.raises(PipelineValidationError, match="missing"):
        pipeline.run(use_cache=False)


def test_a_missing_folder_is_named_before_the_run(tmp_path: Path) -> None:
    with Pipeline("missing") as pipeline:
        LoadDataFromDisk(name="load", dataset_path=str(tmp_path / "nope")) >> KeepColumns(columns=["n"])
    with pytest.raises(PipelineValidationError, match=r"dataset_path '.*nope' is not a folder on this machine"):
        pipeline.run(use_cache=False)


def test_a_url_is_read_through_fsspec_on_the_worker() -> None:
    # `memory://` stands for gs:// or s3://: the path goes to fsspec (with `storage_options`) where the step loads.
    Dataset.from_list(ROWS).save_to_disk("memory://saved/dataset")
    try:
        with Pipeline("remote") as pipeline:
            load = LoadDataFromDisk(name="load", dataset_path="memory://saved/dataset", storage_options={"skip_instance_cache": False})
            load >> KeepColumns(columns=["instruction"])
        assert _rows(pipeline) == [{"instruction": row["instruction"]} for row in ROWS]
    finally:
        fsspec.filesystem("memory").rm("/saved", recursive=True)


def test_the_job_carries_the_configuration_not_the_data(saved_dataset: Path) -> None:
    load = LoadDataFromDisk(dataset_path=str(saved_dataset), keep_in_memory=True)
    load.load()  # a dataset loaded in the launching process...
    copy = pickle.loads(pickle.dumps(load))  # ...is left behind: the worker reads the folder itself
    assert copy._dataset is None and copy.dataset_path == str(saved_dataset)
    assert list(copy.process()) == list(load.process())


def test_it_round_trips_as_distilabels_class(saved_dataset: Path) -> None:
    data = LoadDataFromDisk(name="load", dataset_path=str(saved_dataset), split=None).dump()
    assert data["type_info"] == {"module": "distilabel.steps.generators.huggingface", "name": "LoadDataFromDisk"}
    copy = LoadDataFromDisk.from_dict(data)
    assert (copy.dataset_path, copy.config, copy.is_distiset) == (str(saved_dataset), "default", False)
