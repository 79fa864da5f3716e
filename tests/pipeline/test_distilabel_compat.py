"""What a distilabel 1.5.3 user meets when porting: a pipeline without a name, requirements, runtime-parameter info,
required runtime parameters given at run time, and pipeline files going both ways between distilabel and beam_distil.

``distilabel_1_5_3_pipeline.yaml`` was written by distilabel 1.5.3 itself (``data/make_distilabel_1_5_3_pipeline.py``);
``beam_distil_0_1_pipeline.yaml`` by beam_distil before it wrote distilabel's layout.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import textwrap
from pathlib import Path
from typing import List, Optional

import pytest
import yaml
from pydantic import Field

from beam_distil.models import OpenAILLM
from beam_distil.pipeline import MissingRequirementsError, Pipeline, PipelineValidationError, register, sample_n_steps
from beam_distil.runtime_parameters import RuntimeParameter, RuntimeParametersMixin
from beam_distil.steps import GroupColumns, KeepColumns, LoadDataFromDicts, Step, StepInput, StepOutput
from beam_distil.steps.generators import LoadDataFromFileSystem
from beam_distil.steps.tasks import TextGeneration
from beam_distil.utils.requirements import requirements

DATA = Path(__file__).resolve().parent / "data"
DISTILABEL_FILE = DATA / "distilabel_1_5_3_pipeline.yaml"
OLD_FILE = DATA / "beam_distil_0_1_pipeline.yaml"
DISTILABEL_PYTHON = os.environ.get("BEAM_DISTIL_DISTILABEL_PYTHON")


class Prefix(Step):
    """A step with a required runtime parameter declared without a default, and one declared with ``None``."""

    prefix: RuntimeParameter[str]
    suffix: RuntimeParameter[str] = Field(default=None, description="Added after the text.")

    @property
    def inputs(self):
        return ["text"]

    @property
    def outputs(self):
        return ["prefixed"]

    def process(self, inputs: StepInput) -> StepOutput:
        yield [{**row, "prefixed": f"{self.prefix}{row['text']}{self.suffix}"} for row in inputs]


@register
@requirements(["pyyaml>=5", "beam-distil-not-installed-package>=2"])
class NeedsPackages(Step):
    @property
    def inputs(self):
        return ["text"]

    @property
    def outputs(self):
        return ["text"]

    def process(self, inputs: StepInput) -> StepOutput:
        yield inputs


# -- Pipeline() without a name ---------------------------------------------------------------------------------


def test_a_pipeline_without_a_name_is_named_after_its_steps():
    with Pipeline() as pipeline:
        load = LoadDataFromDicts(data=[{"text": "a"}])
        load >> KeepColumns(columns=["text"])

    assert pipeline.name == "pipeline_load_data_from_dicts_0_keep_columns_0"
    assert pipeline.dump()["pipeline"]["name"] == pipeline.name


def test_a_named_pipeline_keeps_its_name():
    with Pipeline(name="mine") as pipeline:
        LoadDataFromDicts(data=[{"text": "a"}])
    assert pipeline.name == "mine"


# -- requirements ----------------------------------------------------------------------------------------------


def test_requirements_of_the_pipeline_and_its_steps_are_listed_in_the_dump():
    with Pipeline("reqs", requirements=["datasets", "pyyaml>=5"]) as pipeline:
        LoadDataFromDicts(data=[{"text": "a"}]) >> NeedsPackages()

    expected = ["beam-distil-not-installed-package>=2", "datasets", "pyyaml>=5"]
    assert NeedsPackages.requirements == ["beam-distil-not-installed-package>=2", "pyyaml>=5"]
    assert pipeline.requirements == expected
    assert pipeline.dump()["requirements"] == expected
    assert Pipeline.from_dict(pipeline.dump()).requirements == expected


def test_a_missing_requirement_stops_the_run_before_it_starts():
    with Pipeline("reqs") as pipeline:
        LoadDataFromDicts(data=[{"text": "a"}]) >> NeedsPackages()

    assert pipeline.requirements_to_install() == ["beam-distil-not-installed-package>=2"]
    with pytest.raises(MissingRequirementsError) as raised:
        pipeline.run()

    # distilabel raises ModuleNotFoundError; beam_distil's error is one too, and a PipelineValidationError.
    assert isinstance(raised.value, ModuleNotFoundError) and isinstance(raised.value, PipelineValidationError)
    message = str(raised.value)
    assert "'beam-distil-not-installed-package>=2' is not met: not installed" in message
    assert "pip install 'beam-distil-not-installed-package>=2'" in message
    assert "pyyaml" not in message  # installed, and at a matching version


def test_a_requirement_at_another_version_is_not_met():
    import yaml as installed_yaml

    with Pipeline("reqs", requirements=["pyyaml<1"]) as pipeline:
        LoadDataFromDicts(data=[{"text": "a"}])

    with pytest.raises(MissingRequirementsError, match=r"'pyyaml<1' is not met: pyyaml \S+ is installed"):
        pipeline.validate()
    assert installed_yaml.__version__ >= "1"


def test_met_requirements_let_the_pipeline_run():
    with Pipeline("reqs", requirements=["pyyaml>=5", "apache-beam"]) as pipeline:
        LoadDataFromDicts(data=[{"text": "a"}])

    assert pipeline.requirements_to_install() == []
    assert pipeline.run()["default"]["train"].to_list() == [{"text": "a"}]


def test_an_invalid_requirement_is_left_out_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="beam_distil"):
        pipeline = Pipeline("reqs", requirements=["not a requirement!!", "pyyaml"])

    assert pipeline.requirements == ["pyyaml"]
    assert "'not a requirement!!' is not a PEP 508 requirement" in caplog.text


def test_the_requirements_setter_adds_as_distilabels_does():
    pipeline = Pipeline("reqs", requirements=["pyyaml"])
    pipeline.requirements = ["datasets"]
    assert pipeline.requirements == ["datasets", "pyyaml"]


# -- runtime parameters ----------------------------------------------------------------------------------------


def test_a_required_runtime_parameter_without_default_is_given_to_run():
    with Pipeline("params") as pipeline:
        load = LoadDataFromDicts(data=[{"text": "a"}, {"text": "b"}])
        step = Prefix(name="prefix")  # constructing it without the parameter is fine, as in distilabel
        load >> step

    assert step.prefix is None and step.runtime_parameters_names == {"input_batch_size": True, "prefix": False, "suffix": False}

    rows = pipeline.run(parameters={"prefix": {"prefix": "> ", "suffix": "!"}})["default"]["train"].to_list()

    assert [row["prefixed"] for row in rows] == ["> a!", "> b!"]


def test_a_required_runtime_parameter_still_missing_fails_validation_naming_step_and_parameter():
    with Pipeline("params") as pipeline:
        LoadDataFromDicts(data=[{"text": "a"}]) >> Prefix(name="prefix", suffix="!")

    with pytest.raises(PipelineValidationError) as raised:
        pipeline.run()

    message = str(raised.value)
    assert "Step 'prefix': runtime parameter 'prefix' is required but has no value" in message
    assert "run(parameters={'prefix': {'prefix': ...}})" in message
    assert "'suffix'" not in message


def test_a_nested_required_parameter_names_its_path():
    with Pipeline("params") as pipeline:
        load = LoadDataFromFileSystem(name="load")
        load >> TextGeneration(name="gen", llm=OpenAILLM(model="m", base_url="http://127.0.0.1:9/v1"))

    with pytest.raises(PipelineValidationError, match=r"run\(parameters=\{'load': \{'data_files': \.\.\.\}\}\)"):
        pipeline.validate()


def test_unknown_runtime_parameters_are_refused_by_run_but_skipped_by_the_mixin(caplog):
    # beam_distil keeps refusing a misspelt name before a run pays for anything (distilabel warns and ignores);
    # the mixin's own set_runtime_parameters skips it with a warning, as distilabel's does.
    with Pipeline("params") as pipeline:
        LoadDataFromDicts(data=[{"text": "a"}]) >> Prefix(name="prefix", prefix="> ")

    with pytest.raises(PipelineValidationError, match=r"unknown runtime parameter 'prefx'. Did you mean 'prefix'\?"):
        pipeline.run(parameters={"prefix": {"prefx": "x"}})

    step = pipeline.dag.steps["prefix"]
    with caplog.at_level(logging.WARNING, logger="beam_distil"):
        step.set_runtime_parameters({"prefx": "x", "suffix": "?"})
    assert step.prefix == "> " and step.suffix == "?"
    assert "unknown runtime parameter 'prefx' ignored. Did you mean 'prefix'?" in caplog.text


class Nested(RuntimeParametersMixin):
    runtime_param1: RuntimeParameter[str] = Field(default=None, description="Runtime param 1")
    runtime_param2: Optional[RuntimeParameter[str]] = Field(default=None, description="Runtime param 2")


class Outer(RuntimeParametersMixin):
    nested_class: Nested
    mixins_list: List[Nested]
    runtime_param1: RuntimeParameter[str] = Field(default=None, description="Runtime param 1")


def test_lists_of_objects_with_runtime_parameters_are_reported_by_position_in_field_order():
    outer = Outer(nested_class=Nested(), mixins_list=[Nested(), Nested(runtime_param1="set")])
    nested_info = [
        {"name": "runtime_param1", "optional": False, "description": "Runtime param 1"},
        {"name": "runtime_param2", "optional": True, "description": "Runtime param 2"},
    ]

    assert outer.get_runtime_parameters_info() == [
        {"name": "nested_class", "runtime_parameters_info": nested_info},
        {"name": "mixins_list", "runtime_parameters_info": {"0": nested_info, "1": nested_info}},
        {"name": "runtime_param1", "optional": False, "description": "Runtime param 1"},
    ]
    assert list(outer.runtime_parameters_names) == ["nested_class", "mixins_list", "runtime_param1"]
    assert outer.runtime_parameters_names["mixins_list"] == {
        "0": {"runtime_param1": False, "runtime_param2": True},
        "1": {"runtime_param1": False, "runtime_param2": True},
    }

    outer.set_runtime_parameters({"mixins_list": {"0": {"runtime_param1": "first"}}, "runtime_param1": "outer"})
    assert outer.mixins_list[0].runtime_param1 == "first" and outer.mixins_list[1].runtime_param1 == "set"
    assert outer.missing_runtime_parameters() == ["nested_class.runtime_param1"]


def test_pipeline_runtime_parameters_info_follows_distilabels_order():
    pipeline = Pipeline.from_file(DISTILABEL_FILE)
    written = yaml.safe_load(DISTILABEL_FILE.read_text())
    written_info = {entry["name"]: entry["step"]["runtime_parameters_info"] for entry in written["pipeline"]["steps"]}

    info = pipeline.get_runtime_parameters_info()

    assert list(info) == ["load", "prompts", "gen_a", "gen_b", "gen_c", "group_columns_0"]
    for name in ("gen_a", "group_columns_0", "prompts"):
        # distilabel's `resources` sizes its own workers; Beam sizes the workers, so beam_distil has none.
        assert [entry["name"] for entry in info[name]] == [
            entry["name"] for entry in written_info[name] if entry["name"] != "resources"
        ]
    assert info["gen_a"] == pipeline.dag.steps["gen_a"].get_runtime_parameters_info()
    assert {"name": "data_files", "optional": False} == {
        key: value for key, value in next(e for e in info["load"] if e["name"] == "data_files").items() if key != "description"
    }


# -- pipeline files: distilabel -> beam_distil -> distilabel -----------------------------------------------------


def test_the_dump_has_distilabels_top_level_keys():
    with Pipeline("keys", requirements=["pyyaml"]) as pipeline:
        LoadDataFromDicts(data=[{"text": "a"}]) >> KeepColumns(columns=["text"])

    data = pipeline.dump()

    assert list(data) == ["distilabel", "beam_distil", "pipeline", "requirements"]
    assert data["distilabel"] == {"version": "1.5.3"}
    assert data["beam_distil"]["version"]
    assert data["requirements"] == ["pyyaml"]
    assert data["pipeline"]["steps"][1]["step"]["type_info"] == {"module": "distilabel.steps.columns.keep", "name": "KeepColumns"}


def test_a_file_distilabel_wrote_loads_and_runs(tmp_path, openai_server):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"instruction": text, "other": 1}) + "\n" for text in ("one", "two", "three")))

    pipeline = Pipeline.from_file(DISTILABEL_FILE)

    assert pipeline.name == "written-by-distilabel" and pipeline.description == "Saved by distilabel 1.5.3."
    assert pipeline.requirements == ["pyyaml>=5"]
    assert {name: type(step).__name__ for name, step in pipeline.dag.steps.items()} == {
        "load": "LoadDataFromFileSystem", "prompts": "KeepColumns", "gen_a": "TextGeneration",
        "gen_b": "TextGeneration", "gen_c": "TextGeneration", "group_columns_0": "GroupColumns",
    }
    gen_a = pipeline.dag.steps["gen_a"]
    assert gen_a.system_prompt == "Answer briefly." and gen_a.llm.generation_kwargs == {"temperature": 0.7, "max_new_tokens": 64}
    assert gen_a.llm.api_key is None
    assert pipeline.routing["prompts"].downstream == ["gen_a", "gen_b", "gen_c"]

    llm = {"llm": {"base_url": openai_server.base_url, "api_key": "t"}}
    rows = pipeline.run(
        parameters={"load": {"data_files": str(prompts)}, "gen_a": llm, "gen_b": llm, "gen_c": llm},
    )["default"]["train"].to_list()

    assert [row["instruction"] for row in rows] == ["one", "two", "three"]
    for row in rows:
        assert set(row) == {"instruction", "generations", "model_names", "distilabel_metadata"}
        assert len(row["model_names"]) == 2  # sample_n_steps(2): two of the three tasks
        assert row["generations"] == [f"{model}: {row['instruction']}" for model in row["model_names"]]


def test_a_file_distilabel_wrote_round_trips_in_distilabels_layout():
    pipeline = Pipeline.from_file(DISTILABEL_FILE)
    written = yaml.safe_load(DISTILABEL_FILE.read_text())

    data = pipeline.dump()

    assert [entry["name"] for entry in data["pipeline"]["steps"]] == [entry["name"] for entry in written["pipeline"]["steps"]]
    assert [step["step"]["type_info"] for step in data["pipeline"]["steps"]] == [
        step["step"]["type_info"] for step in written["pipeline"]["steps"]
    ]
    assert data["pipeline"]["connections"] == [c for c in written["pipeline"]["connections"] if c["to"]]
    routing = data["pipeline"]["routing_batch_functions"][0]
    assert {key: routing[key] for key in ("step", "description", "type_info")} == written["pipeline"]["routing_batch_functions"][0]
    assert Pipeline.from_dict(data).dump() == data


def test_a_field_distilabel_has_and_beam_distil_lacks_is_left_out_with_a_warning_when_it_matters(caplog):
    written = yaml.safe_load(DISTILABEL_FILE.read_text())
    gen_a = next(entry["step"] for entry in written["pipeline"]["steps"] if entry["name"] == "gen_a")
    gen_a["resources"]["replicas"] = 4
    gen_a["llm"]["jobs_ids"] = ["job-1"]

    with caplog.at_level(logging.WARNING, logger="beam_distil"):
        pipeline = Pipeline.from_dict(written)

    assert "gen_a" in pipeline.dag.steps
    assert "has no ['resources']" in caplog.text and "'replicas': 4" in caplog.text
    # distilabel's batch ids are kept on the LLM, for a direct offline_batch_generate call.
    assert pipeline.dag.steps["gen_a"].llm.jobs_ids == ("job-1",)
    assert "gen_b" not in caplog.text  # distilabel's defaults: nothing worth a warning


def test_a_misspelt_field_in_a_file_beam_distil_wrote_is_still_an_error():
    with Pipeline("strict") as pipeline:
        LoadDataFromDicts(data=[{"text": "a"}]) >> KeepColumns(name="keep", columns=["text"])
    data = pipeline.dump()
    data["pipeline"]["steps"][1]["step"]["colums"] = ["text"]

    with pytest.raises(ValueError, match=r"colums"):
        Pipeline.from_dict(data)


def test_a_file_beam_distil_wrote_before_the_distilabel_layout_still_loads(openai_server):
    old = yaml.safe_load(OLD_FILE.read_text())
    assert "distilabel" not in old and old["beam_distil"]["version"] == "0.1.0"
    assert "routing_batch_function" in old["pipeline"]["routing_batch_functions"][0]

    pipeline = Pipeline.from_file(OLD_FILE)

    routing = pipeline.routing["load"]
    assert routing.seed == 3 and routing.downstream == ["gen_a", "gen_b", "gen_c"]
    assert pipeline.dag.steps["gen_a"].llm.model == "model-a"
    data = pipeline.dump()
    assert data["distilabel"] == {"version": "1.5.3"} and data["requirements"] == []
    assert data["pipeline"]["steps"][0]["step"]["type_info"]["module"] == "distilabel.steps.generators.data"

    llm = {"llm": {"base_url": openai_server.base_url, "api_key": "t"}}
    rows = pipeline.run(parameters={"gen_a": llm, "gen_b": llm, "gen_c": llm})["default"]["train"].to_list()
    assert [row["instruction"] for row in rows] == ["one", "two", "three"]


LOAD_IN_DISTILABEL = textwrap.dedent(
    """
    import json, sys
    from distilabel.pipeline import Pipeline
    pipeline = Pipeline.from_yaml(sys.argv[1])
    steps = {name: pipeline.dag.get_step(name)["step"] for name in pipeline.dag}
    print(json.dumps({
        "name": pipeline.name,
        "requirements": pipeline.requirements,
        "steps": {name: type(step).__name__ for name, step in steps.items()},
        "model": steps["gen_a"].llm.model,
        "routed": [name for name in pipeline.dag if "routing_batch_function" in pipeline.dag.get_step(name)],
    }))
    """
)


@pytest.mark.skipif(
    not DISTILABEL_PYTHON,
    reason=(
        "needs distilabel 1.5.3 in a separate venv: python -m venv /tmp/dl153 &&"
        " /tmp/dl153/bin/pip install distilabel==1.5.3 openai requests, then run with"
        " BEAM_DISTIL_DISTILABEL_PYTHON=/tmp/dl153/bin/python"
    ),
)
def test_a_file_beam_distil_wrote_loads_in_distilabel_1_5_3(tmp_path):
    with Pipeline("for-distilabel", requirements=["openai"]) as pipeline:
        load = LoadDataFromDicts(name="load", data=[{"instruction": "one"}])
        tasks = [
            TextGeneration(name=f"gen_{m}", llm=OpenAILLM(model=f"model-{m}", base_url="http://127.0.0.1:9/v1"))
            for m in "abc"
        ]
        load >> sample_n_steps(2) >> tasks >> GroupColumns(columns=["generation"], output_columns=["generations"])
    path = tmp_path / "pipeline.yaml"
    pipeline.save(path)

    result = subprocess.run(
        [DISTILABEL_PYTHON, "-c", LOAD_IN_DISTILABEL, str(path)], capture_output=True, text=True, timeout=300
    )

    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {
        "name": "for-distilabel",
        "requirements": ["openai"],
        "steps": {
            "load": "LoadDataFromDicts", "gen_a": "TextGeneration", "gen_b": "TextGeneration",
            "gen_c": "TextGeneration", "group_columns_0": "GroupColumns",
        },
        "model": "model-a",
        "routed": ["load"],
    }


def test_pipeline_info_shows_a_distilabel_file_with_the_classes_that_run_it_and_its_requirements(capsys):
    from beam_distil.cli import main

    assert main(["pipeline", "info", "--config", str(DISTILABEL_FILE)]) == 0

    out = capsys.readouterr().out
    assert "Requirements: pyyaml>=5" in out
    assert "  gen_a (beam_distil.steps.tasks.text_generation.TextGeneration)" in out
    assert "      data_files (required): " in out
    assert "  prompts -> sample_n_steps(n=2" in out


def test_distilabels_constructor_arguments_are_accepted_in_its_order(tmp_path):
    pipeline = Pipeline("ported", "described", str(tmp_path / "cache"), True, ["pyyaml"])

    assert (pipeline.name, pipeline.description, pipeline.cache_dir) == ("ported", "described", str(tmp_path / "cache"))
    assert pipeline.enable_metadata is True and pipeline.requirements == ["pyyaml"]
