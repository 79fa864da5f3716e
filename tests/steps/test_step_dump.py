"""Step.dump()/from_dict() and Task.dump()/from_dict() as distilabel's: type_info, the nested LLM, runtime parameters,
secrets left out, and only registered classes loaded; automatic step names with distilabel's ``_0`` suffix."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import apache_beam as beam
import pytest
import yaml
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from beam_distil.models import OpenAILLM
from beam_distil.pipeline import Pipeline
from beam_distil.pipeline.serialization import PipelineSerializationError
from beam_distil.steps import GroupColumns, KeepColumns, LoadDataFromDicts, Step, StepInput, StepOutput
from beam_distil.steps.base import _Step
from beam_distil.steps.tasks import Task, TextGeneration

SECRET = "sk-step-dump-test-0a1b2c3d"
DISTILABEL_FILE = Path(__file__).resolve().parent.parent / "pipeline" / "data" / "distilabel_1_5_3_pipeline.yaml"


def make_task(**kwargs) -> TextGeneration:
    llm = OpenAILLM(model="model-a", base_url="http://127.0.0.1:9/v1", api_key=SECRET, generation_kwargs={"temperature": 0.3})
    return TextGeneration(name="gen", llm=llm, system_prompt="Be brief.", **kwargs)


def test_task_dump_names_distilabels_classes_nests_the_llm_and_leaves_the_key_out():
    data = make_task().dump()

    assert data["type_info"] == {"module": "distilabel.steps.tasks.text_generation", "name": "TextGeneration"}
    assert data["llm"]["type_info"] == {"module": "distilabel.models.llms.openai", "name": "OpenAILLM"}
    assert data["llm"]["model"] == "model-a" and data["llm"]["generation_kwargs"] == {"temperature": 0.3}
    assert data["name"] == "gen" and data["system_prompt"] == "Be brief."
    assert "pipeline" not in data
    assert SECRET not in json.dumps(data) and "api_key" not in data["llm"]
    # distilabel's order: the fields, then runtime_parameters_info, then type_info.
    assert list(data)[-2:] == ["runtime_parameters_info", "type_info"]
    llm_info = next(entry for entry in data["runtime_parameters_info"] if entry["name"] == "llm")
    assert {"name", "runtime_parameters_info"} == set(llm_info)
    assert "generation_kwargs" in [entry["name"] for entry in llm_info["runtime_parameters_info"]]


def test_task_from_dict_rebuilds_the_task_and_its_llm():
    task = make_task(num_generations=2)
    data = json.loads(json.dumps(task.dump()))

    copy = TextGeneration.from_dict(data)

    assert type(copy) is TextGeneration and type(copy.llm) is OpenAILLM
    assert copy is not task and copy.llm is not task.llm
    assert copy.name == "gen" and copy.num_generations == 2 and copy.llm.generation_kwargs == {"temperature": 0.3}
    assert copy.llm.api_key is None  # never saved: the worker reads OPENAI_API_KEY
    assert copy.dump() == {**task.dump()}
    # Task.from_dict and _Step.from_dict take any step whose type_info names a subclass.
    assert type(Task.from_dict(data)) is TextGeneration
    assert type(_Step.from_dict(data)) is TextGeneration


def test_step_dump_and_from_dict_round_trip():
    step = GroupColumns(name="group", columns=["generation"], output_columns=["generations"], input_batch_size=7)
    data = step.dump()

    assert data["type_info"] == {"module": "distilabel.steps.columns.group", "name": "GroupColumns"}
    assert data["columns"] == ["generation"] and data["input_batch_size"] == 7
    assert [entry["name"] for entry in data["runtime_parameters_info"]] == ["input_batch_size"]

    copy = GroupColumns.from_dict(data)
    assert copy.output_columns == ["generations"] and copy.input_batch_size == 7 and copy.name == "group"


def test_from_dict_refuses_a_class_that_is_not_the_one_asked_for():
    data = KeepColumns(columns=["a"]).dump()

    with pytest.raises(PipelineSerializationError, match=r"names KeepColumns, which is not a TextGeneration"):
        TextGeneration.from_dict(data)


def test_from_dict_never_imports_the_module_a_dict_names(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_step_module.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\nclass Evil: pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    data = {**KeepColumns(columns=["a"]).dump(), "type_info": {"module": "evil_step_module", "name": "Evil"}}

    with pytest.raises(PipelineSerializationError, match=r"not registered") as raised:
        _Step.from_dict(data)

    assert "evil_step_module" not in sys.modules and not marker.exists()
    assert "register it with `@register`" in str(raised.value)


def test_from_dict_loads_a_step_distilabel_wrote():
    written = yaml.safe_load(DISTILABEL_FILE.read_text())
    step_data = next(entry["step"] for entry in written["pipeline"]["steps"] if entry["name"] == "gen_a")
    assert "resources" in step_data  # distilabel's own field, which beam_distil's steps do not have

    task = TextGeneration.from_dict(step_data)

    assert task.name == "gen_a" and task.system_prompt == "Answer briefly."
    assert task.llm.model == "model-a" and task.llm.generation_kwargs == {"temperature": 0.7, "max_new_tokens": 64}


def test_from_dict_inside_a_pipeline_block_joins_it():
    data = KeepColumns(name="keep", columns=["a"]).dump()

    with Pipeline("joined") as pipeline:
        step = KeepColumns.from_dict(data)

    assert pipeline.dag.steps["keep"] is step and step.pipeline is pipeline


class Shout(Step):
    @property
    def inputs(self):
        return ["text"]

    @property
    def outputs(self):
        return ["shout"]

    def process(self, inputs: StepInput) -> StepOutput:
        yield [{**row, "shout": row["text"].upper()} for row in inputs]


def test_automatic_names_outside_a_pipeline_end_in_0_as_in_distilabel():
    assert TextGeneration(llm=OpenAILLM(model="m")).name == "text_generation_0"
    assert Shout().name == "shout_0"
    with Pipeline("numbered"):
        first, second = Shout(), Shout()
    assert (first.name, second.name) == ("shout_0", "shout_1")


def test_metadata_keys_of_a_task_made_outside_a_pipeline_carry_the_0_name(openai_server):
    task = TextGeneration(llm=OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t"))
    with beam.Pipeline(runner=FnApiRunner()) as p:
        rows = p | beam.Create([{"instruction": "one"}]) | task
        assert_that(
            rows | beam.Map(lambda row: sorted(row["distilabel_metadata"])),
            equal_to([["raw_input_text_generation_0", "raw_output_text_generation_0", "statistics_text_generation_0"]]),
        )


def test_from_dict_of_a_generator_keeps_its_data():
    data = LoadDataFromDicts(name="load", data=[{"a": 1}, {"a": 2}]).dump()

    assert LoadDataFromDicts.from_dict(data).data == [{"a": 1}, {"a": 2}]
