"""Tests for beam_distil.distiset (offline: the Hub is never contacted)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub
import pytest
import yaml

from beam_distil.distiset import Distiset

PIPELINE_YAML = "# generated\npipeline:\n  name: demo\n  steps: []\n"

NESTED_ROWS: list[dict[str, Any]] = [
    {"id": 0, "tags": ["a", "b"], "meta": {"model": "m1", "score": 0.5}, "note": None},
    {"id": 1, "tags": [], "meta": {"model": "m2", "score": None}, "note": "x"},
    {"id": 2, "tags": ["c"], "meta": None, "note": None},
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)


def _rows(n: int, prefix: str = "r") -> list[dict[str, Any]]:
    return [{"instruction": f"{prefix}{i}", "generation": f"out {i}", "n": i} for i in range(n)]


def _as_lists(distiset: Distiset) -> dict[str, dict[str, list[dict[str, Any]]]]:
    return {name: {split: ds.to_list() for split, ds in dd.items()} for name, dd in distiset.items()}


# ------------------------------------------------------------------ from_rows


def test_from_rows_single_leaf_is_default() -> None:
    rows = _rows(3)
    distiset = Distiset.from_rows({"text_generation": rows}, pipeline_yaml=PIPELINE_YAML)

    assert list(distiset) == ["default"]
    assert isinstance(distiset["default"], datasets.DatasetDict)
    assert list(distiset["default"]) == ["train"]
    assert distiset["default"]["train"].to_list() == rows
    assert distiset.pipeline_yaml == PIPELINE_YAML


def test_from_rows_several_leaves_keep_their_names() -> None:
    distiset = Distiset.from_rows({"gen_a": _rows(2, "a"), "gen_b": _rows(4, "b")})

    assert list(distiset) == ["gen_a", "gen_b"]
    assert distiset["gen_a"]["train"].num_rows == 2
    assert list(distiset["gen_b"]["train"]["instruction"]) == ["b0", "b1", "b2", "b3"]
    assert distiset.pipeline_yaml is None


def test_from_rows_empty_leaf() -> None:
    distiset = Distiset.from_rows({"kept": _rows(2), "filtered_out": []})

    empty = distiset["filtered_out"]["train"]
    assert empty.num_rows == 0
    assert empty.column_names == []
    assert distiset["kept"]["train"].num_rows == 2


def test_from_rows_single_empty_leaf() -> None:
    distiset = Distiset.from_rows({"only": []})
    assert list(distiset) == ["default"]
    assert distiset["default"]["train"].num_rows == 0


def test_from_rows_keeps_columns_missing_from_first_row() -> None:
    rows = [{"a": 1}, {"a": 2, "extra": "late"}]
    ds = Distiset.from_rows({"x": rows})["default"]["train"]

    assert ds.column_names == ["a", "extra"]
    assert ds.to_list() == [{"a": 1, "extra": None}, {"a": 2, "extra": "late"}]
    assert rows[0] == {"a": 1}  # caller's rows are not mutated


def test_mixed_type_columns_are_kept_as_json_text(caplog: pytest.LogCaptureFixture) -> None:
    rows = [{"v": [1, 2], "w": "a"}, {"v": "one", "w": "b"}, {"v": None, "w": "c"}]
    ds = Distiset.from_rows({"ok": _rows(1), "mixed_leaf": rows})["mixed_leaf"]["train"]
    assert ds.to_list() == [{"v": "[1, 2]", "w": "a"}, {"v": '"one"', "w": "b"}, {"v": None, "w": "c"}]
    assert "Leaf 'mixed_leaf': columns ['v'] mix value types" in caplog.text


def test_nested_values_in_memory() -> None:
    ds = Distiset.from_rows({"leaf": NESTED_ROWS})["default"]["train"]
    assert ds.to_list() == NESTED_ROWS


# ------------------------------------------------------------------ disk


def test_save_load_round_trip(tmp_path: Path) -> None:
    rows_a = _rows(5, "a")[::-1]  # non-sorted order must survive
    distiset = Distiset.from_rows({"gen_a": rows_a, "gen_b": NESTED_ROWS}, pipeline_yaml=PIPELINE_YAML)
    target = tmp_path / "my-distiset"

    distiset.save_to_disk(target)

    assert (target / "gen_a" / "dataset_dict.json").is_file()
    assert (target / "gen_b" / "dataset_dict.json").is_file()
    config_dir = target / "distiset_configs"
    assert (config_dir / "pipeline.yaml").read_text() == PIPELINE_YAML
    readme = (config_dir / "README.md").read_text()
    assert readme.startswith("---\n")
    assert "| gen_a | train | 5 |" in readme
    assert "| gen_b | train | 3 |" in readme
    assert "`instruction`" in readme and "`meta`" in readme
    assert "Distiset.load_from_disk" in readme

    loaded = Distiset.load_from_disk(target)

    assert isinstance(loaded, Distiset)
    assert list(loaded) == ["gen_a", "gen_b"]
    assert _as_lists(loaded) == _as_lists(distiset)
    assert list(loaded["gen_a"]["train"]["instruction"]) == [r["instruction"] for r in rows_a]
    assert loaded["gen_b"]["train"].to_list() == NESTED_ROWS
    assert loaded.pipeline_yaml == PIPELINE_YAML


def test_save_without_card_and_pipeline(tmp_path: Path) -> None:
    distiset = Distiset.from_rows({"x": _rows(1)}, pipeline_yaml=PIPELINE_YAML)
    distiset.save_to_disk(tmp_path / "d", save_card=False, save_pipeline_config=False)

    assert not (tmp_path / "d" / "distiset_configs" / "README.md").exists()
    assert not (tmp_path / "d" / "distiset_configs" / "pipeline.yaml").exists()
    assert Distiset.load_from_disk(tmp_path / "d").pipeline_yaml is None


def test_round_trip_with_empty_leaf(tmp_path: Path) -> None:
    distiset = Distiset.from_rows({"kept": _rows(2), "filtered_out": []})
    distiset.save_to_disk(tmp_path / "d")

    loaded = Distiset.load_from_disk(tmp_path / "d")

    assert list(loaded) == ["kept", "filtered_out"]
    assert loaded["filtered_out"]["train"].num_rows == 0
    assert loaded["kept"]["train"].to_list() == _rows(2)
    assert "| filtered_out | train | 0 | (none) |" in (tmp_path / "d" / "distiset_configs" / "README.md").read_text()


@pytest.mark.parametrize("num_shards", [None, 2, {"train": 3}])
def test_round_trip_zero_rows_with_columns(tmp_path: Path, num_shards: Any) -> None:
    # By default `datasets` writes 0 shards for an empty split and then cannot load it.
    empty_with_schema = datasets.Dataset.from_list(_rows(1)).select([])
    distiset = Distiset({"default": datasets.DatasetDict({"train": empty_with_schema})})
    distiset.save_to_disk(tmp_path / "d", num_shards=num_shards)

    loaded = Distiset.load_from_disk(tmp_path / "d")
    assert loaded["default"]["train"].num_rows == 0
    assert loaded["default"]["train"].column_names == ["instruction", "generation", "n"]


def test_round_trip_zero_rows_with_max_shard_size(tmp_path: Path) -> None:
    empty_with_schema = datasets.Dataset.from_list(_rows(1)).select([])
    split = datasets.DatasetDict({"train": datasets.Dataset.from_list(_rows(2)), "test": empty_with_schema})
    distiset = Distiset({"bare": empty_with_schema, "split": split})
    distiset.save_to_disk(tmp_path / "d", max_shard_size="1MB")

    loaded = Distiset.load_from_disk(tmp_path / "d")
    assert loaded["bare"].column_names == ["instruction", "generation", "n"] and loaded["bare"].num_rows == 0
    assert {s: ds.num_rows for s, ds in loaded["split"].items()} == {"train": 2, "test": 0}


def test_round_trip_after_split_and_custom_card(tmp_path: Path) -> None:
    distiset = Distiset.from_rows({"x": _rows(10)}, card_text="---\nlicense: mit\n---\n# My card\n")
    distiset.train_test_split(train_size=0.7, seed=1)
    distiset.save_to_disk(tmp_path / "d", num_shards=1)

    loaded = Distiset.load_from_disk(tmp_path / "d")
    assert list(loaded["default"]) == ["train", "test"]
    assert _as_lists(loaded) == _as_lists(distiset)
    readme = (tmp_path / "d" / "distiset_configs" / "README.md").read_text()
    assert "license: mit" in readme and "# My card" in readme


def test_round_trip_through_fsspec_uri() -> None:
    # memory:// stands in for gs:// or s3://: every write must go through fsspec.
    distiset = Distiset.from_rows({"a": _rows(3), "b": NESTED_ROWS}, pipeline_yaml=PIPELINE_YAML)
    uri = "memory://bucket/test_round_trip_through_fsspec_uri"
    try:
        distiset.save_to_disk(uri, storage_options={})
        loaded = Distiset.load_from_disk(uri, storage_options={})
        assert _as_lists(loaded) == _as_lists(distiset)
        assert loaded.pipeline_yaml == PIPELINE_YAML
    finally:
        import fsspec

        fsspec.filesystem("memory").rm("/bucket/test_round_trip_through_fsspec_uri", recursive=True)


def test_load_distilabel_layout_without_manifest(tmp_path: Path) -> None:
    # distilabel writes no subsets.json; a subset saved as a bare Dataset comes back as a Dataset, as in distilabel.
    target = tmp_path / "d"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(_rows(2))}).save_to_disk(str(target / "zeta"))
    datasets.Dataset.from_list(_rows(1)).save_to_disk(str(target / "alpha"))
    (target / "distiset_configs").mkdir()
    (target / "distiset_configs" / "pipeline.yaml").write_text(PIPELINE_YAML)

    loaded = Distiset.load_from_disk(target)

    assert list(loaded) == ["alpha", "zeta"]
    assert isinstance(loaded["alpha"], datasets.Dataset)
    assert loaded["alpha"].to_list() == _rows(1)
    assert isinstance(loaded["zeta"], datasets.DatasetDict)
    assert loaded["zeta"]["train"].num_rows == 2
    assert loaded.pipeline_yaml == PIPELINE_YAML
    assert loaded.pipeline_path == target / "distiset_configs" / "pipeline.yaml"


def test_load_missing_dir_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Distiset.load_from_disk(tmp_path / "nope")


def test_save_rejects_reserved_subset_name(tmp_path: Path) -> None:
    distiset = Distiset({"distiset_configs": datasets.DatasetDict({"train": datasets.Dataset.from_list(_rows(1))})})
    with pytest.raises(ValueError, match="distiset_configs"):
        distiset.save_to_disk(tmp_path / "d")


# ------------------------------------------------------------------ train_test_split


def test_train_test_split_sizes() -> None:
    distiset = Distiset.from_rows({"a": _rows(10), "b": _rows(20)})

    result = distiset.train_test_split(train_size=0.8, seed=42)

    assert result is distiset  # in place, as in distilabel
    assert {s: ds.num_rows for s, ds in result["a"].items()} == {"train": 8, "test": 2}
    assert {s: ds.num_rows for s, ds in result["b"].items()} == {"train": 16, "test": 4}
    all_ids = sorted(list(result["a"]["train"]["n"]) + list(result["a"]["test"]["n"]))
    assert all_ids == list(range(10))


def test_train_test_split_seed_and_no_shuffle() -> None:
    one = Distiset.from_rows({"a": _rows(10)}).train_test_split(train_size=0.5, seed=3)
    two = Distiset.from_rows({"a": _rows(10)}).train_test_split(train_size=0.5, seed=3)
    assert list(one["default"]["train"]["n"]) == list(two["default"]["train"]["n"])

    ordered = Distiset.from_rows({"a": _rows(10)}).train_test_split(train_size=0.6, shuffle=False)
    assert list(ordered["default"]["train"]["n"]) == [0, 1, 2, 3, 4, 5]
    assert list(ordered["default"]["test"]["n"]) == [6, 7, 8, 9]


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1])
def test_train_test_split_rejects_bad_size(bad: float) -> None:
    with pytest.raises(ValueError, match="train_size"):
        Distiset.from_rows({"a": _rows(10)}).train_test_split(train_size=bad)


def test_train_test_split_twice_raises_without_losing_data() -> None:
    distiset = Distiset.from_rows({"a": _rows(10)}).train_test_split(train_size=0.5, seed=0)
    with pytest.raises(ValueError, match="already has splits"):
        distiset.train_test_split(train_size=0.5)
    assert distiset["default"]["test"].num_rows == 5


# ------------------------------------------------------------------ push_to_hub


class _HubRecorder:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, remote_readme: str | None) -> None:
        self.pushes: list[dict[str, Any]] = []
        self.uploads: list[dict[str, Any]] = []
        self.folder_uploads: list[dict[str, Any]] = []
        recorder = self

        def fake_push(self_dd: datasets.DatasetDict, repo_id: str, **kwargs: Any) -> None:
            recorder.pushes.append({"repo_id": repo_id, "rows": {s: d.num_rows for s, d in self_dd.items()}, **kwargs})

        def fake_push_dataset(self_ds: datasets.Dataset, repo_id: str, **kwargs: Any) -> None:
            recorder.pushes.append({"repo_id": repo_id, "rows": self_ds.num_rows, **kwargs})

        def fake_upload(self_api: huggingface_hub.HfApi, **kwargs: Any) -> None:
            recorder.uploads.append(kwargs)

        def fake_upload_folder(self_api: huggingface_hub.HfApi, **kwargs: Any) -> None:
            recorder.folder_uploads.append(kwargs)

        def fake_download(repo_id: str, filename: str, **kwargs: Any) -> str:
            if remote_readme is None:
                raise OSError("offline")
            path = tmp_path / "remote_README.md"
            path.write_text(remote_readme)
            return str(path)

        monkeypatch.setattr(datasets.DatasetDict, "push_to_hub", fake_push)
        monkeypatch.setattr(datasets.Dataset, "push_to_hub", fake_push_dataset)
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_file", fake_upload)
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", fake_upload_folder)
        # No token saved by a login on this machine may stand in for the one a test gives (or withholds).
        monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)

    def upload(self, path_in_repo: str) -> dict[str, Any]:
        matches = [u for u in self.uploads if u["path_in_repo"] == path_in_repo]
        assert len(matches) == 1, [u["path_in_repo"] for u in self.uploads]
        return matches[0]


REMOTE_README = (
    "---\nconfigs:\n- config_name: gen_a\n  data_files:\n  - split: train\n    path: gen_a/train-*\n"
    "dataset_info:\n- config_name: gen_a\n---\n"
)


def test_push_to_hub_pushes_each_subset_and_uploads_card(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub = _HubRecorder(monkeypatch, tmp_path, REMOTE_README)
    distiset = Distiset.from_rows(
        {"gen_a": _rows(2), "gen_b": _rows(3), "empty": []}, pipeline_yaml=PIPELINE_YAML
    )
    caplog.set_level(logging.DEBUG)

    distiset.push_to_hub("me/ds", private=True, token="hf_secret_token")

    assert [p["config_name"] for p in hub.pushes] == ["gen_a", "gen_b"]  # empty subset skipped
    assert all(p["repo_id"] == "me/ds" and p["token"] == "hf_secret_token" for p in hub.pushes)
    assert all(p["private"] is True for p in hub.pushes)
    assert hub.pushes[1]["rows"] == {"train": 3}

    readme = hub.upload("README.md")
    assert readme["repo_id"] == "me/ds" and readme["repo_type"] == "dataset"
    assert readme["token"] == "hf_secret_token"
    card = readme["path_or_fileobj"].decode()
    assert "config_name: gen_a" in card  # datasets' config metadata is preserved
    assert "| gen_b | train | 3 |" in card
    assert 'load_dataset("me/ds", "gen_b")' in card

    assert hub.upload("pipeline.yaml")["path_or_fileobj"] == PIPELINE_YAML.encode()
    assert "hf_secret_token" not in caplog.text


def test_push_to_hub_token_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hub = _HubRecorder(monkeypatch, tmp_path, REMOTE_README)
    monkeypatch.setenv("HF_TOKEN", "hf_env_token")

    Distiset.from_rows({"x": _rows(1)}).push_to_hub("me/ds", generate_card=False)

    assert [(p["config_name"], p["token"]) for p in hub.pushes] == [("default", "hf_env_token")]
    assert hub.uploads == []  # no card requested, no pipeline.yaml to upload


def test_push_to_hub_forwards_kwargs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hub = _HubRecorder(monkeypatch, tmp_path, REMOTE_README)
    Distiset.from_rows({"x": _rows(1)}).push_to_hub("me/ds", token="t", generate_card=False, max_shard_size="1MB")
    assert hub.pushes[0]["max_shard_size"] == "1MB"


def test_push_to_hub_keeps_remote_readme_if_unreadable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hub = _HubRecorder(monkeypatch, tmp_path, remote_readme=None)
    Distiset.from_rows({"x": _rows(1)}, pipeline_yaml=PIPELINE_YAML).push_to_hub("me/ds", token="t")

    assert [u["path_in_repo"] for u in hub.uploads] == ["pipeline.yaml"]


def test_push_to_hub_include_script(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hub = _HubRecorder(monkeypatch, tmp_path, REMOTE_README)
    script = tmp_path / "make_data.py"
    script.write_text("print('hi')\n")
    monkeypatch.setattr("sys.argv", [str(script)])

    Distiset.from_rows({"x": _rows(1)}).push_to_hub("me/ds", token="t", include_script=True)

    assert hub.upload("make_data.py")["path_or_fileobj"] == b"print('hi')\n"


def test_push_to_hub_without_token_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hub = _HubRecorder(monkeypatch, tmp_path, REMOTE_README)
    monkeypatch.setenv("HF_TOKEN", "")

    with pytest.raises(ValueError, match="HF_TOKEN.*hf auth login"):
        Distiset.from_rows({"x": _rows(1)}).push_to_hub("me/ds")
    assert hub.pushes == [] and hub.uploads == []


# ------------------------------------------------------------------ repr


def test_repr_lists_subsets() -> None:
    text = repr(Distiset.from_rows({"gen_a": _rows(2), "gen_b": _rows(7)}))

    assert text.startswith("Distiset({")
    assert "    gen_a: DatasetDict" in text
    assert "    gen_b: DatasetDict" in text
    assert "num_rows: 7" in text


# ------------------------------------------------------------------ distilabel 1.5 compatibility
# Behaviour distilabel 1.5.3 documents for its Distiset, which ported code relies on.


def _dataset_subsets() -> Distiset:
    # distilabel's documented example: subsets that are plain Datasets.
    return Distiset(
        {
            "leaf_step_1": datasets.Dataset.from_dict({"instruction": [1, 2, 3, 4, 5]}),
            "leaf_step_2": datasets.Dataset.from_dict({"instruction": list(range(10)), "generation": list(range(10))}),
        }
    )


def test_save_to_disk_takes_distilabel_keywords(tmp_path: Path) -> None:
    distiset = Distiset.from_rows({"x": _rows(4)}, pipeline_yaml=PIPELINE_YAML)
    distiset.statistics = {"x": {"rows_in": 4, "rows_out": 4}}

    distiset.save_to_disk(
        tmp_path / "d",
        max_shard_size="10MB",
        num_shards=None,  # `datasets` takes one of max_shard_size and num_shards
        num_proc=None,
        storage_options={},
        save_card=True,
        save_pipeline_config=True,
        save_pipeline_log=True,
    )

    config_dir = tmp_path / "d" / "distiset_configs"
    assert {p.name for p in config_dir.iterdir()} >= {"README.md", "pipeline.yaml", "pipeline.log"}
    assert Distiset.load_from_disk(tmp_path / "d")["default"]["train"].to_list() == _rows(4)


def test_pipeline_log_is_the_run_summary(tmp_path: Path) -> None:
    distiset = Distiset.from_rows({"gen": _rows(2)})
    distiset.statistics = {"gen": {"rows_in": 2, "rows_out": 2, "llm_requests": 2, "llm_failures": 0}}

    distiset.save_to_disk(tmp_path / "d")

    log = (tmp_path / "d" / "distiset_configs" / "pipeline.log").read_text()
    header, _rule, row = log.splitlines()[1:4]
    table = dict(zip(header.split(), row.split()))
    assert table["step"] == "gen"
    assert {k: table[k] for k in ("rows_in", "rows_out", "llm_requests", "llm_failures")} == {
        "rows_in": "2", "rows_out": "2", "llm_requests": "2", "llm_failures": "0"
    }
    loaded = Distiset.load_from_disk(tmp_path / "d")
    assert loaded.log_filename_path == tmp_path / "d" / "distiset_configs" / "pipeline.log"

    # Saved again, the loaded Distiset keeps the same log (it has no statistics of its own).
    loaded.save_to_disk(tmp_path / "again")
    assert (tmp_path / "again" / "distiset_configs" / "pipeline.log").read_text() == log


def test_pipeline_log_copies_log_filename_path(tmp_path: Path) -> None:
    log_file = tmp_path / "run.log"
    log_file.write_text("INFO step gen: 2 rows\n")
    distiset = Distiset.from_rows({"gen": _rows(2)})
    distiset.statistics = {"gen": {"rows_in": 2}}
    distiset.log_filename_path = log_file

    distiset.save_to_disk(tmp_path / "d")

    assert (tmp_path / "d" / "distiset_configs" / "pipeline.log").read_text() == "INFO step gen: 2 rows\n"


def test_save_pipeline_log_false_or_nothing_to_log_writes_no_log(tmp_path: Path) -> None:
    with_summary = Distiset.from_rows({"gen": _rows(1)})
    with_summary.statistics = {"gen": {"rows_in": 1}}
    with_summary.save_to_disk(tmp_path / "off", save_pipeline_log=False)
    Distiset.from_rows({"gen": _rows(1)}).save_to_disk(tmp_path / "nothing")

    assert not (tmp_path / "off" / "distiset_configs" / "pipeline.log").exists()
    assert not (tmp_path / "nothing" / "distiset_configs" / "pipeline.log").exists()
    assert Distiset.load_from_disk(tmp_path / "nothing").log_filename_path is None


def test_train_test_split_of_dataset_subsets() -> None:
    distiset = _dataset_subsets()

    result = distiset.train_test_split(train_size=0.8, seed=0)

    assert result is distiset
    assert {name: {s: ds.num_rows for s, ds in dd.items()} for name, dd in result.items()} == {
        "leaf_step_1": {"train": 4, "test": 1},
        "leaf_step_2": {"train": 8, "test": 2},
    }
    both = list(result["leaf_step_2"]["train"]["instruction"]) + list(result["leaf_step_2"]["test"]["instruction"])
    assert sorted(both) == list(range(10))


def test_dataset_and_dataset_dict_subsets_round_trip_as_themselves(tmp_path: Path) -> None:
    distiset = _dataset_subsets()
    distiset["split_one"] = Distiset.from_rows({"x": _rows(4)})["default"]

    distiset.save_to_disk(tmp_path / "d", num_shards=1)
    loaded = Distiset.load_from_disk(tmp_path / "d")

    assert list(loaded) == ["leaf_step_1", "leaf_step_2", "split_one"]
    assert isinstance(loaded["leaf_step_1"], datasets.Dataset)
    assert loaded["leaf_step_2"].to_dict() == distiset["leaf_step_2"].to_dict()
    assert isinstance(loaded["split_one"], datasets.DatasetDict)
    assert loaded["split_one"]["train"].to_list() == _rows(4)
    assert "| leaf_step_2 | - | 10 |" in (tmp_path / "d" / "distiset_configs" / "README.md").read_text()


def test_dataset_subsets_after_split_round_trip(tmp_path: Path) -> None:
    distiset = _dataset_subsets().train_test_split(train_size=0.6, seed=1)

    distiset.save_to_disk(tmp_path / "d")
    loaded = Distiset.load_from_disk(tmp_path / "d")

    assert _as_lists(loaded) == _as_lists(distiset)


def test_empty_dataset_subset_round_trips(tmp_path: Path) -> None:
    distiset = Distiset({"kept": datasets.Dataset.from_list(_rows(2)), "nothing": datasets.Dataset.from_list([])})

    distiset.save_to_disk(tmp_path / "d")
    loaded = Distiset.load_from_disk(tmp_path / "d")

    assert isinstance(loaded["nothing"], datasets.Dataset)
    assert loaded["nothing"].num_rows == 0
    assert loaded["kept"].to_list() == _rows(2)


def test_num_shards_dict_is_refused_for_dataset_subsets(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'leaf_step_1' is a Dataset.*int"):
        _dataset_subsets().save_to_disk(tmp_path / "d", num_shards={"train": 2})
    assert not (tmp_path / "d").exists()  # refused before anything is written


def test_subset_of_another_type_is_refused(tmp_path: Path) -> None:
    distiset = Distiset({"rows": [{"a": 1}]})
    with pytest.raises(TypeError, match="Subset 'rows' is a list"):
        distiset.save_to_disk(tmp_path / "d")
    with pytest.raises(TypeError, match="Subset 'rows' is a list"):
        distiset.train_test_split(train_size=0.5)


def test_push_to_hub_pushes_dataset_subsets_and_run_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hub = _HubRecorder(monkeypatch, tmp_path, REMOTE_README)
    artifacts = tmp_path / "artifacts"
    (artifacts / "gen" / "plot").mkdir(parents=True)
    (artifacts / "gen" / "plot" / "metadata.json").write_text("{}")
    distiset = _dataset_subsets()
    distiset.statistics = {"leaf_step_1": {"rows_out": 5}}
    distiset.artifacts_path = artifacts

    distiset.push_to_hub("me/ds", token="t")

    assert [(p["config_name"], p["rows"]) for p in hub.pushes] == [("leaf_step_1", 5), ("leaf_step_2", 10)]
    card = hub.upload("README.md")["path_or_fileobj"].decode()
    assert "| leaf_step_2 | - | 10 |" in card
    assert "leaf_step_1" in hub.upload("pipeline.log")["path_or_fileobj"].decode()
    [folder] = hub.folder_uploads
    assert (folder["folder_path"], folder["path_in_repo"]) == (str(artifacts), "artifacts")
    assert (folder["repo_id"], folder["repo_type"]) == ("me/ds", "dataset")


def test_push_to_hub_uses_the_token_saved_by_login(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hub = _HubRecorder(monkeypatch, tmp_path, REMOTE_README)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_saved_token")

    Distiset.from_rows({"x": _rows(1)}).push_to_hub("me/ds", generate_card=False)

    assert hub.pushes[0]["token"] == "hf_saved_token"


def test_pipeline_path_reads_the_file_and_is_set_on_load(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(PIPELINE_YAML)
    distiset = Distiset.from_rows({"x": _rows(1)})

    distiset.pipeline_path = config
    distiset.save_to_disk(tmp_path / "d")

    assert distiset.pipeline_yaml == PIPELINE_YAML
    loaded = Distiset.load_from_disk(tmp_path / "d")
    assert loaded.pipeline_path == tmp_path / "d" / "distiset_configs" / "pipeline.yaml"
    assert loaded.pipeline_path.read_text() == PIPELINE_YAML
    with pytest.raises(FileNotFoundError, match="pipeline.yaml"):
        distiset.pipeline_path = tmp_path / "missing" / "pipeline.yaml"


def test_artifacts_are_copied_and_found_on_load(tmp_path: Path) -> None:
    artifacts = tmp_path / "steps_artifacts"
    (artifacts / "gen" / "plot").mkdir(parents=True)
    (artifacts / "gen" / "plot" / "metadata.json").write_text('{"kind": "figure"}')
    (artifacts / "gen" / "plot" / "figure.png").write_bytes(b"\x89PNG")
    distiset = Distiset.from_rows({"gen": _rows(2)})
    distiset.artifacts_path = artifacts

    distiset.save_to_disk(tmp_path / "d")

    saved = tmp_path / "d" / "artifacts"
    assert (saved / "gen" / "plot" / "metadata.json").read_text() == '{"kind": "figure"}'
    assert (saved / "gen" / "plot" / "figure.png").read_bytes() == b"\x89PNG"
    loaded = Distiset.load_from_disk(tmp_path / "d")
    assert list(loaded) == ["default"]
    assert loaded.artifacts_path == saved


def test_artifacts_folder_of_distilabel_layout_is_not_a_subset(tmp_path: Path) -> None:
    target = tmp_path / "d"
    datasets.Dataset.from_list(_rows(1)).save_to_disk(str(target / "default"))
    (target / "artifacts" / "gen" / "plot").mkdir(parents=True)

    loaded = Distiset.load_from_disk(target)

    assert list(loaded) == ["default"]
    assert loaded.artifacts_path == target / "artifacts"


def test_load_remote_into_download_dir(tmp_path: Path) -> None:
    import fsspec

    distiset = Distiset.from_rows({"a": _rows(3), "b": _rows(1)}, pipeline_yaml=PIPELINE_YAML)
    uri = "memory://bucket/test_load_remote_into_download_dir"
    try:
        distiset.save_to_disk(uri)
        loaded = Distiset.load_from_disk(uri, download_dir=tmp_path / "local")
    finally:
        fsspec.filesystem("memory").rm("/bucket/test_load_remote_into_download_dir", recursive=True)

    assert _as_lists(loaded) == _as_lists(distiset)
    assert (tmp_path / "local" / "a" / "dataset_dict.json").is_file()
    assert loaded.pipeline_path == tmp_path / "local" / "distiset_configs" / "pipeline.yaml"


def test_citations_are_sorted_once_and_in_the_card(tmp_path: Path) -> None:
    distiset = Distiset.from_rows({"x": _rows(1)})
    zeta = "@misc{zeta2024,\n  title={Z},\n}"
    alpha = "@misc{alpha2023,\n  title={A},\n}"

    distiset.citations = [zeta, alpha, zeta]
    distiset.save_to_disk(tmp_path / "d")

    assert distiset.citations == [alpha, zeta]
    readme = (tmp_path / "d" / "distiset_configs" / "README.md").read_text()
    assert "## References" in readme
    assert readme.index("@misc{alpha2023") < readme.index("@misc{zeta2024")


def test_card_has_distilabel_tags(tmp_path: Path) -> None:
    Distiset.from_rows({"x": _rows(1)}).save_to_disk(tmp_path / "d")
    readme = (tmp_path / "d" / "distiset_configs" / "README.md").read_text()
    metadata = yaml.safe_load(readme.split("---\n")[1])
    assert metadata["size_categories"] == "n<1K"
    assert metadata["tags"][:3] == ["synthetic", "distilabel", "rlaif"]


def _png_base64(color: tuple[int, int, int]) -> str:
    import base64
    import io

    image_module = pytest.importorskip("PIL.Image")
    buffer = io.BytesIO()
    image_module.new("RGB", (4, 3), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_transform_columns_to_image() -> None:
    red, blue = _png_base64((255, 0, 0)), _png_base64((0, 0, 255))
    distiset = Distiset(
        {
            "images": datasets.Dataset.from_dict({"image": [red, blue], "n": [0, 1]}),
            "split": datasets.DatasetDict({"train": datasets.Dataset.from_dict({"image": [blue, None]})}),
            "text": datasets.Dataset.from_dict({"n": [1]}),
        }
    )

    assert distiset.transform_columns_to_image("image") is distiset

    first = distiset["images"][0]["image"]
    assert first.size == (4, 3) and first.convert("RGB").getpixel((0, 0)) == (255, 0, 0)
    assert distiset["split"]["train"][0]["image"].convert("RGB").getpixel((0, 0)) == (0, 0, 255)
    assert distiset["split"]["train"][1]["image"] is None
    assert distiset["text"].to_list() == [{"n": 1}]
    with pytest.raises(ValueError, match="no subset has the column"):
        distiset.transform_columns_to_image(["imgae"])


# ------------------------------------------------------------------ create_distiset


def _write_step_outputs(data_dir: Path, step: str, rows: list[dict[str, Any]], files: int = 1) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = data_dir / "steps_outputs" / step
    folder.mkdir(parents=True)
    size = -(-len(rows) // files)
    for i in range(files):
        pq.write_table(pa.Table.from_pylist(rows[i * size : (i + 1) * size]), folder / f"0000{i}.parquet")


def test_create_distiset_reads_distilabel_run_folder(tmp_path: Path) -> None:
    from beam_distil.distiset import create_distiset

    rows = [{"instruction": f"q{i}", "distilabel_metadata": {"raw_output_gen": f"a{i}"}} for i in range(5)]
    _write_step_outputs(tmp_path, "gen", rows, files=2)
    (tmp_path / "pipeline.yaml").write_text(PIPELINE_YAML)
    (tmp_path / "pipeline.log").write_text("INFO done\n")
    (tmp_path / "steps_artifacts" / "gen" / "plot").mkdir(parents=True)
    (tmp_path / "steps_artifacts" / "gen" / "plot" / "metadata.json").write_text("{}")

    distiset = create_distiset(tmp_path)

    assert list(distiset) == ["default"]
    assert distiset["default"]["train"].to_list() == [{"instruction": f"q{i}"} for i in range(5)]
    assert distiset.pipeline_yaml == PIPELINE_YAML
    assert distiset.log_filename_path == tmp_path / "pipeline.log"
    assert distiset.artifacts_path == tmp_path / "steps_artifacts"
    with_metadata = create_distiset(tmp_path, enable_metadata=True)
    assert with_metadata["default"]["train"][4]["distilabel_metadata"] == {"raw_output_gen": "a4"}


def test_create_distiset_several_leaves_and_an_empty_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from beam_distil.distiset import create_distiset

    _write_step_outputs(tmp_path, "gen_a", _rows(2))
    _write_step_outputs(tmp_path, "gen_b", _rows(3))
    (tmp_path / "steps_outputs" / "silent").mkdir()
    log_file = tmp_path / "elsewhere.log"
    log_file.write_text("log\n")

    with caplog.at_level(logging.WARNING, logger="beam_distil.distiset"):
        distiset = create_distiset(tmp_path, log_filename_path=log_file)

    assert list(distiset) == ["gen_a", "gen_b"]
    assert distiset["gen_b"]["train"].to_list() == _rows(3)
    assert distiset.pipeline_path is None and distiset.artifacts_path is None
    assert distiset.log_filename_path == log_file
    assert "'silent' wrote no output files" in caplog.text
    with pytest.raises(FileNotFoundError, match="not a folder"):
        create_distiset(tmp_path / "missing")


def test_create_distiset_reads_a_run_output_dir(tmp_path: Path) -> None:
    from beam_distil.distiset import create_distiset
    from beam_distil.pipeline import Pipeline
    from beam_distil.steps import LoadDataFromDicts

    data = [{"instruction": f"q{i}", "distilabel_metadata": {"note": f"n{i}"}} for i in range(4)]
    with Pipeline("create-distiset") as pipeline:
        LoadDataFromDicts(name="load", data=data)
    pipeline.run(output_dir=str(tmp_path / "out"))

    distiset = create_distiset(tmp_path / "out")

    assert distiset["default"]["train"].to_list() == [{"instruction": f"q{i}"} for i in range(4)]
    assert distiset.pipeline_path == tmp_path / "out" / "distiset_configs" / "pipeline.yaml"
    assert "create-distiset" in distiset.pipeline_yaml


class _CitedLoader:
    """Loads rows (its docstring has distilabel's ``Citations:`` section).

    Citations:

        ```
        @misc{zeta2024,
          title={Z},
        }
        ```

        ```
        @misc{alpha2023, title={A}}
        ```

    Attributes:
        data: not a citation.
    """


def test_create_distiset_takes_citations_from_the_dag(tmp_path: Path) -> None:
    from beam_distil.distiset import create_distiset
    from beam_distil.pipeline.dag import DAG
    from beam_distil.steps import LoadDataFromDicts

    cited = type("CitedLoader", (LoadDataFromDicts,), {"__doc__": _CitedLoader.__doc__})
    dag = DAG()
    dag.add_step(cited(name="load", data=[{"a": 1}]))
    dag.add_step(LoadDataFromDicts(name="plain", data=[{"a": 1}]))
    _write_step_outputs(tmp_path, "load", [{"a": 1}])

    distiset = create_distiset(tmp_path, dag=dag)

    assert distiset.citations == ["@misc{alpha2023, title={A}}", "@misc{zeta2024,\n  title={Z},\n}"]
    distiset.save_to_disk(tmp_path / "saved")
    assert "@misc{zeta2024" in (tmp_path / "saved" / "distiset_configs" / "README.md").read_text()


def test_public_signatures_are_distilabels() -> None:
    """Parameter names, order and defaults of distilabel 1.5.3's Distiset API, so positional and keyword calls port."""
    import inspect

    from beam_distil.distiset import create_distiset

    def params(function: Any) -> list[tuple[str, Any]]:
        return [
            (p.name, p.default)
            for p in inspect.signature(function).parameters.values()
            if p.name not in ("self", "cls")
        ]

    empty = inspect.Parameter.empty
    assert params(Distiset.save_to_disk) == [
        ("distiset_path", empty), ("max_shard_size", None), ("num_shards", None), ("num_proc", None),
        ("storage_options", None), ("save_card", True), ("save_pipeline_config", True), ("save_pipeline_log", True),
    ]  # fmt: skip
    assert params(Distiset.load_from_disk) == [
        ("distiset_path", empty), ("keep_in_memory", None), ("storage_options", None), ("download_dir", None),
    ]  # fmt: skip
    assert params(Distiset.push_to_hub) == [
        ("repo_id", empty), ("private", False), ("token", None), ("generate_card", True),
        ("include_script", False), ("kwargs", empty),
    ]  # fmt: skip
    assert params(Distiset.train_test_split) == [("train_size", empty), ("shuffle", True), ("seed", None)]
    assert params(Distiset.transform_columns_to_image) == [("columns", empty)]
    assert params(create_distiset) == [
        ("data_dir", empty), ("pipeline_path", None), ("log_filename_path", None), ("enable_metadata", False),
        ("dag", None),
    ]  # fmt: skip
