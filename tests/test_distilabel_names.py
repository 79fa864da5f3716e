"""distilabel's ``constants``, ``errors`` and ``utils.serialization`` at beam_distil's matching paths: the values
distilabel 1.5.3 has, and what they name in beam_distil (folders a run or a saved Distiset has, keys a saved
pipeline has), checked on real pipeline runs and files."""

from __future__ import annotations

import datetime
import enum
import pickle
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from beam_distil import constants
from beam_distil.distiset import create_distiset
from beam_distil.errors import (
    DistilabelError,
    DistilabelNotImplementedError,
    DistilabelTypeError,
    DistilabelUserError,
)
from beam_distil.pipeline import Pipeline
from beam_distil.steps import KeepColumns, LoadDataFromDicts
from beam_distil.utils.serialization import TYPE_INFO_KEY, read_json, read_yaml, write_json, write_yaml

# distilabel 1.5.3's `distilabel.constants` values, for the names beam_distil has.
DISTILABEL_VALUES = {
    "DISTILABEL_METADATA_KEY": "distilabel_metadata",
    "STEP_ATTR_NAME": "step",
    "RECEIVES_ROUTED_BATCHES_ATTR_NAME": "receives_routed_batches",
    "ROUTING_BATCH_FUNCTION_ATTR_NAME": "routing_batch_function",
    "CONVERGENCE_STEP_ATTR_NAME": "convergence_step",
    "STEPS_OUTPUTS_PATH": "steps_outputs",
    "STEPS_ARTIFACTS_PATH": "steps_artifacts",
    "DISTISET_CONFIG_FOLDER": "distiset_configs",
    "DISTISET_ARTIFACTS_FOLDER": "artifacts",
    "PIPELINE_CONFIG_FILENAME": "pipeline.yaml",
    "PIPELINE_LOG_FILENAME": "pipeline.log",
    "DISTILABEL_DOCS_URL": "https://distilabel.argilla.io/latest/",
}


@pytest.mark.parametrize("name, value", sorted(DISTILABEL_VALUES.items()))
def test_constants_have_distilabels_values(name: str, value: str) -> None:
    assert getattr(constants, name) == value
    assert name in constants.__all__


def test_constants_come_from_the_modules_that_use_them() -> None:
    import beam_distil.distiset as distiset_module
    import beam_distil.rows as rows_module

    assert constants.DISTILABEL_METADATA_KEY is rows_module.DISTILABEL_METADATA_KEY
    assert constants.STEPS_OUTPUTS_PATH is distiset_module.STEPS_OUTPUTS_FOLDER
    assert constants.DISTISET_CONFIG_FOLDER is distiset_module.DISTISET_CONFIG_FOLDER


def test_the_base_cache_dir_is_where_the_response_cache_goes_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from beam_distil.cache import CACHE_DIR_ENV_VAR, default_cache_dir

    monkeypatch.delenv(CACHE_DIR_ENV_VAR, raising=False)
    assert Path(default_cache_dir()) == constants.BASE_CACHE_DIR


@pytest.mark.parametrize(
    "name, hint",
    [
        ("INPUT_QUEUE_ATTR_NAME", "input queues"),
        ("LAST_BATCH_SENT_FLAG", "batch manager"),
        ("PIPELINES_CACHE_DIR", "Pipeline(cache_dir=...)"),
        ("PIPELINE_NAME_ENV_NAME", "as a field or runtime parameter"),
        ("PIPELINE_CACHE_ID_ENV_NAME", "keyed by each request"),
        ("SIGINT_HANDLER_CALLED_ENV_NAME", "Beam runner"),
    ],
)
def test_importing_a_name_of_distilabels_process_machinery_says_why_it_is_missing(name: str, hint: str) -> None:
    with pytest.raises(ImportError, match="no counterpart in beam_distil") as raised:
        exec(f"from beam_distil.constants import {name}", {})
    assert name in str(raised.value) and hint in str(raised.value)


def test_an_unknown_constant_is_an_ordinary_attribute_error() -> None:
    assert not hasattr(constants, "NOT_A_DISTILABEL_CONSTANT")


def test_a_saved_distiset_and_pipeline_are_where_the_constants_say(tmp_path: Path) -> None:
    with Pipeline("names") as pipeline:
        LoadDataFromDicts(data=[{"a": 1, "b": 2}, {"a": 3, "b": 4}]) >> KeepColumns(columns=["a"], name="keep")
    distiset = pipeline.run(use_cache=False)
    distiset.save_to_disk(tmp_path / "saved")

    saved_pipeline = read_yaml(tmp_path / "saved" / constants.DISTISET_CONFIG_FOLDER / constants.PIPELINE_CONFIG_FILENAME)
    steps = saved_pipeline["pipeline"]["steps"]
    assert [entry["name"] for entry in steps] == ["load_data_from_dicts_0", "keep"]
    assert steps[1][constants.STEP_ATTR_NAME][TYPE_INFO_KEY]["name"] == "KeepColumns"
    assert distiset["default"]["train"]["a"] == [1, 3]


def test_a_distilabel_run_folder_is_read_from_the_constants_folders(tmp_path: Path) -> None:
    """distilabel's data dir: ``steps_outputs/<leaf>/*.parquet`` and ``steps_artifacts/<step>/<name>/``."""
    leaf = tmp_path / constants.STEPS_OUTPUTS_PATH / "text_generation_0"
    leaf.mkdir(parents=True)
    pq.write_table(pa.table({"generation": ["x", "y"]}), leaf / "00001.parquet")
    write_json(tmp_path / constants.STEPS_ARTIFACTS_PATH / "text_generation_0" / "plot" / "metadata.json", {"n": 2})

    distiset = create_distiset(tmp_path)

    assert distiset["default"]["train"]["generation"] == ["x", "y"]
    assert distiset.artifacts_path == tmp_path / constants.STEPS_ARTIFACTS_PATH


def test_a_user_error_is_a_value_error_with_an_optional_docs_link() -> None:
    plain = DistilabelUserError("This is an error message.")
    linked = DistilabelUserError("This is an error message.", page="sections/getting_started/faq/")

    assert str(plain) == "This is an error message."
    assert str(linked) == (
        "This is an error message.\n\n"
        "For further information visit 'https://distilabel.argilla.io/latest/sections/getting_started/faq/'"
    )
    assert (linked.message, linked.page) == ("This is an error message.", "sections/getting_started/faq/")
    with pytest.raises(ValueError, match="This is an error message"):
        raise linked


@pytest.mark.parametrize(
    "error_class, builtin",
    [(DistilabelUserError, ValueError), (DistilabelTypeError, TypeError),
     (DistilabelNotImplementedError, NotImplementedError)],
)
def test_each_error_is_its_builtin_and_survives_pickling(error_class: type, builtin: type) -> None:
    error = error_class("bad `llm`", page="api/models/llm/")

    assert isinstance(error, builtin) and isinstance(error, DistilabelError)
    copy = pickle.loads(pickle.dumps(error))  # what a Beam worker does with an error it reports
    assert type(copy) is error_class
    assert str(copy) == str(error) and copy.page == "api/models/llm/"


def test_write_json_creates_folders_and_writes_compact_utf8(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "metadata.json"

    write_json(target, {"text": "café", "n": [1, 2]})

    assert target.read_bytes() == '{"text":"café","n":[1,2]}'.encode("utf-8")
    assert read_json(target) == {"text": "café", "n": [1, 2]}
    assert read_json(str(target)) == {"text": "café", "n": [1, 2]}


def test_write_json_writes_numpy_dates_uuids_and_enums_as_json_values(tmp_path: Path) -> None:
    class Color(enum.Enum):
        RED = "red"

    data = {
        "array": np.array([[1, 2], [3, 4]]),
        "scalar": np.int64(7),
        "flag": np.bool_(True),
        "when": datetime.datetime(2024, 5, 1, 12, 30),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "color": Color.RED,
    }

    write_json(tmp_path / "values.json", data)

    assert read_json(tmp_path / "values.json") == {
        "array": [[1, 2], [3, 4]],
        "scalar": 7,
        "flag": True,
        "when": "2024-05-01T12:30:00",
        "id": "12345678-1234-5678-1234-567812345678",
        "color": "red",
    }


def test_write_json_names_the_type_it_cannot_write(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="can't write a value of type 'object' as JSON"):
        write_json(tmp_path / "x.json", {"value": object()})


def test_yaml_round_trips_with_keys_in_order(tmp_path: Path) -> None:
    data = {"zeta": 1, "alpha": {"nested": [1, "two", None]}, "mid": True}

    write_yaml(tmp_path / "conf" / "c.yaml", data)

    text = (tmp_path / "conf" / "c.yaml").read_text()
    assert text.index("zeta") < text.index("alpha") < text.index("mid")
    assert "{" not in text  # block style, as distilabel writes
    assert list(read_yaml(tmp_path / "conf" / "c.yaml")) == ["zeta", "alpha", "mid"]
    assert read_yaml(tmp_path / "conf" / "c.yaml") == data


def test_read_yaml_reads_the_tuples_yaml_dump_writes(tmp_path: Path) -> None:
    path = tmp_path / "distilabel.yaml"
    path.write_text(yaml.dump({"sizes": (1, 2)}))  # distilabel's write_yaml uses yaml.dump
    assert "!!python/tuple" in path.read_text()

    assert read_yaml(path) == {"sizes": (1, 2)}


def test_read_yaml_refuses_python_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("x: !!python/object/apply:os.system ['echo pwned']\n")

    with pytest.raises(yaml.constructor.ConstructorError, match="python/object/apply"):
        read_yaml(path)


def test_read_yaml_refuses_an_alias_bomb_as_pipeline_files_do(tmp_path: Path) -> None:
    from beam_distil.pipeline.serialization import PipelineSerializationError

    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, 9):
        previous = chr(ord("a") + level - 1)
        name = chr(ord("a") + level)
        lines.append(f"{name}: &{name} [{', '.join(['*' + previous] * 10)}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(PipelineSerializationError, match="alias bomb"):
        read_yaml(path)
