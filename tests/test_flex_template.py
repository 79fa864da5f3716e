"""The Dataflow Flex Template: ``templates/metadata.json`` against the launcher, the launcher end to end on the
local runner, and the Dataflow translation of a launched pipeline (``--dry_run``, offline)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult, PipelineRunner, PipelineState

from beam_distil.beam.launch import launch
from beam_distil.distiset import Distiset
from beam_distil.flex_template import build_parser, collect_parameters, main, parse_args, run
from beam_distil.parameter_overrides import ParameterOverrideError, overrides_from_json
from beam_distil.pipeline import Pipeline
from pipelines.docs_pipeline import DEFAULT_MODELS as MODELS

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(REPO_ROOT, "templates")


# -- metadata.json ---------------------------------------------------------------------------------------------


def load_metadata():
    with open(os.path.join(TEMPLATES, "metadata.json"), encoding="utf-8") as file:
        return json.load(file)


def launcher_arguments():
    """``{dest: action}`` of the launcher's own arguments (introspected, without ``--help``)."""
    return {action.dest: action for action in build_parser()._actions if action.dest != "help"}


def test_metadata_has_googles_required_fields():
    metadata = load_metadata()

    assert isinstance(metadata["name"], str) and metadata["name"]
    assert isinstance(metadata["description"], str) and metadata["description"]
    assert isinstance(metadata["parameters"], list) and metadata["parameters"]
    for parameter in metadata["parameters"]:
        assert set(parameter) <= {"name", "label", "helpText", "isOptional", "regexes", "paramType", "defaultValue"}
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", parameter["name"])
        assert parameter["label"] and parameter["helpText"]
        assert isinstance(parameter["isOptional"], bool)
        for regex in parameter.get("regexes", []):
            re.compile(regex)


def test_metadata_parameters_are_the_launcher_arguments_one_to_one():
    metadata = load_metadata()
    names = [parameter["name"] for parameter in metadata["parameters"]]
    arguments = launcher_arguments()

    assert len(names) == len(set(names))
    assert set(names) == set(arguments)
    for parameter in metadata["parameters"]:
        action = arguments[parameter["name"]]
        assert parameter["isOptional"] is (not action.required), parameter["name"]
        assert action.option_strings == [f"--{parameter['name']}"]


@pytest.mark.parametrize(
    "name, good, bad",
    [
        ("pipeline_config", ["gs://b/p.yaml", "gs://b/dir/p.json", "gs://b/p.yml"], ["p.yaml", "gs://b/p.txt"]),
        ("param", ["gen.llm.generation_kwargs.temperature=0.7", "load.batch_size=10"], ["gen=1", "nope"]),
        ("params", ['{"gen": {"input_batch_size": 2}}', '{"a.b": 1, "c": {"d": [1, 2]}}'], ["[1]", "gen.x=1"]),
        ("output_dir", ["gs://bucket/runs/1"], ["/tmp/out"]),
        ("output_format", ["parquet", "jsonl"], ["csv"]),
        ("use_cache", ["true", "false"], ["yes", "TRUE "]),
        ("dead_letter_dir", ["gs://bucket/runs/1-failures"], ["/tmp/dead"]),
    ],
)
def test_metadata_regexes_accept_what_the_launcher_reads(name, good, bad):
    parameter = {p["name"]: p for p in load_metadata()["parameters"]}[name]

    for value in good:
        assert all(re.search(regex, value) for regex in parameter["regexes"]), value
    for value in bad:
        assert not all(re.search(regex, value) for regex in parameter["regexes"]), value


def test_dockerfile_and_readme_use_the_launcher():
    with open(os.path.join(TEMPLATES, "Dockerfile"), encoding="utf-8") as file:
        dockerfile = file.read()
    with open(os.path.join(TEMPLATES, "README.md"), encoding="utf-8") as file:
        readme = file.read()

    assert "python311-template-launcher-base" in dockerfile
    assert "FLEX_TEMPLATE_PYTHON_PY_FILE" in dockerfile
    assert "beam_distil.flex_template" in dockerfile
    assert "apache/beam_python3.11_sdk:2.77.0" in dockerfile  # the Beam version setup.py pins
    assert "scripts/install.sh" in dockerfile  # the recipe tests/test_installed_package.py runs
    assert "GGML_NATIVE=ON" not in dockerfile
    assert "gcloud dataflow flex-template build" in readme
    assert "gcloud dataflow flex-template run" in readme
    assert "--sdk-container-image" in readme or "sdk_container_image" in readme
    for parameter in load_metadata()["parameters"]:
        assert parameter["name"] in readme


# -- arguments -------------------------------------------------------------------------------------------------


def test_unknown_arguments_are_beam_options():
    args, beam_options = parse_args(
        [
            "--pipeline_config=p.yaml", "--output_dir=out", "--param", "gen.input_batch_size=2",
            "--output=not-ours", "--runner=DataflowRunner", "--project=p", "--use_cache=false",
        ]
    )

    assert args.pipeline_config == "p.yaml" and args.output_dir == "out"
    assert args.use_cache is False
    assert args.param == ["gen.input_batch_size=2"]
    assert beam_options == ["--output=not-ours", "--runner=DataflowRunner", "--project=p"]


def test_params_json_nested_and_dotted_keys_combine_with_param():
    args, _ = parse_args(
        [
            "--pipeline_config=p.yaml", "--output_dir=o",
            "--param=gen.llm.generation_kwargs.temperature=0.7",
            '--params={"gen.llm.generation_kwargs.max_new_tokens": 17, "gen": {"input_batch_size": 2},'
            ' "load": {"batch_size": 10}, "gen.llm.generation_kwargs.stop": ["a", "b"]}',
        ]
    )

    assert collect_parameters(args) == {
        "gen": {
            "llm": {"generation_kwargs": {"temperature": 0.7, "max_new_tokens": 17, "stop": ["a", "b"]}},
            "input_batch_size": 2,
        },
        "load": {"batch_size": 10},
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ("{nope", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"gen": 1}', "names no parameter"),
        ('{"gen..x": 1}', "empty name"),
        ('{"gen.x": 1, "gen": {"x": 2}}', "conflicts"),
    ],
)
def test_bad_params_json(text, message):
    with pytest.raises(ParameterOverrideError, match=message):
        args, _ = parse_args(["--pipeline_config=p", "--output_dir=o", f"--params={text}"])
        collect_parameters(args)
    if message != "conflicts":
        with pytest.raises(ParameterOverrideError, match=message):
            overrides_from_json(text)


def test_bad_arguments_are_exit_code_2(tmp_path, capsys, docs_pipelines):
    config = docs_pipelines.save(tmp_path / "pipeline.yaml", "http://127.0.0.1:9/v1", ["q"])

    assert main(["--output_dir", str(tmp_path / "o")]) == 2
    assert "--pipeline_config" in capsys.readouterr().err
    assert main(["--pipeline_config", config, "--output_dir", str(tmp_path / "o"), "--use_cache=maybe"]) == 2
    assert "expected true or false" in capsys.readouterr().err
    assert main(["--pipeline_config", config, "--output_dir", str(tmp_path / "o"), "--params={x"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["--pipeline_config", str(tmp_path / "missing.yaml"), "--output_dir", str(tmp_path / "o")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    # No OPENAI_API_KEY: the pipeline's validation rejects it before anything is launched.
    assert main(["--pipeline_config", config, "--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "OPENAI_API_KEY" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


# -- running ---------------------------------------------------------------------------------------------------


def test_launcher_runs_a_yaml_pipeline_locally_and_the_distiset_reads_back(tmp_path, openai_server, monkeypatch, capsys, docs_pipelines):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    instructions = ["hello", "world", "again"]
    config = docs_pipelines.save(tmp_path / "pipeline.yaml", openai_server.base_url, instructions)
    output_dir = tmp_path / "run"

    code = main(
        [
            "--pipeline_config", config,
            "--param", "gen_a.llm.generation_kwargs.temperature=0.7",
            "--params", '{"gen_a.llm.generation_kwargs.max_new_tokens": 17, "gen_b": {"input_batch_size": 2}}',
            "--output_dir", str(output_dir),
            "--use_cache", "false",
            "--output_format", "jsonl",
            "--direct_running_mode=in_memory",
        ]
    )

    assert code == 0, capsys.readouterr().err
    by_model = {body["model"]: body for body in openai_server.requests}
    assert by_model["model-a"]["temperature"] == 0.7
    assert by_model["model-a"]["max_tokens"] == 17
    assert by_model["model-b"]["temperature"] == 1.0
    assert openai_server.request_count == 3 * len(instructions)
    assert sorted(os.listdir(output_dir)) == ["default", "distiset_configs"]
    assert (output_dir / "distiset_configs" / "README.md").exists()  # the card, after a local run
    assert all(name.endswith(".jsonl") for name in os.listdir(output_dir / "default") if not name.startswith("."))

    distiset = Distiset.load_from_disk(str(output_dir))
    rows = distiset["default"]["train"].to_list()
    assert [row["instruction"] for row in rows] == instructions
    assert rows[1]["generations"] == [f"{m}: world" for m in MODELS]
    saved = Pipeline.from_dict(yaml.safe_load(distiset.pipeline_yaml))
    assert saved.dag.steps["gen_a"].llm.generation_kwargs == {"temperature": 0.7, "max_new_tokens": 17}
    assert "test" not in distiset.pipeline_yaml.split()  # the key is not saved


def test_use_cache_true_serves_a_second_launch_from_the_cache(tmp_path, openai_server, monkeypatch, docs_pipelines):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    config = docs_pipelines.save(tmp_path / "pipeline.json", openai_server.base_url, ["one", "two"])
    argv = ["--pipeline_config", config, "--use_cache=true", "--direct_running_mode=in_memory"]

    assert main([*argv, "--output_dir", str(tmp_path / "first")]) == 0
    assert openai_server.request_count == 6
    assert main([*argv, "--output_dir", str(tmp_path / "second")]) == 0
    assert openai_server.request_count == 6
    assert Distiset.load_from_disk(str(tmp_path / "second"))["default"]["train"].to_list() == (
        Distiset.load_from_disk(str(tmp_path / "first"))["default"]["train"].to_list()
    )


class _NeverFinishingResult(PipelineResult):
    def wait_until_finish(self, duration=None):
        raise AssertionError("a Flex Template launcher must not wait for a remote job")


class _SubmitOnlyRunner(PipelineRunner):
    """A stand-in for a remote runner: accepts the job and reports it running."""

    submitted = []

    def run_pipeline(self, pipeline, options):
        self.submitted.append({t.unique_name for t in pipeline.to_runner_api().components.transforms.values()})
        return _NeverFinishingResult(PipelineState.RUNNING)


def test_a_remote_runner_is_not_waited_for(tmp_path, monkeypatch, docs_pipelines):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    pipeline = docs_pipelines.build("http://127.0.0.1:9/v1", ["q"])
    runner = _SubmitOnlyRunner()

    result = launch(
        pipeline, {"gen_a": {"input_batch_size": 3}}, output_dir=str(tmp_path / "out"),
        options=PipelineOptions([], runner=runner), wait_for_remote=False,
    )

    assert result.state == PipelineState.RUNNING
    assert {"load_instructions", "gen_a", "gen_b", "gen_c", "group_generations"} <= runner.submitted[-1]
    configs = tmp_path / "out" / "distiset_configs"
    assert "input_batch_size: 3" in (configs / "pipeline.yaml").read_text()
    assert json.loads((configs / "subsets.json").read_text()) == {"subsets": {"default": ["train"]}}
    assert not (configs / "README.md").exists()  # no card before the rows exist


def test_dataflow_runner_translates_the_job_offline_with_dry_run(tmp_path, monkeypatch, docs_pipelines):
    """``--dry_run=True``: DataflowRunner builds the whole job (portable pipeline, environment) and returns
    before it makes an API client, so no credentials, staging or network are needed."""
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    config = docs_pipelines.save(tmp_path / "pipeline.yaml", "http://127.0.0.1:9/v1", ["q"], routed=True)
    image = "europe-west1-docker.pkg.dev/my-project/beam/beam-distil:0.1.0"

    result = run(
        [
            "--pipeline_config", config,
            "--params", '{"gen_a": {"llm": {"generation_kwargs": {"temperature": 0.2}}}}',
            "--output_dir", str(tmp_path / "out"),
            "--runner=DataflowRunner", "--dry_run=True",
            "--project=my-project", "--region=europe-west1",
            "--temp_location=gs://my-bucket/tmp", "--staging_location=gs://my-bucket/staging",
            f"--sdk_container_image={image}", "--job_name=beam-distil-dry-run",
        ]
    )

    job = result.pipeline_result.job
    transforms = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    for step in ["load_instructions", "load_instructions.route", "gen_a", "gen_b", "gen_c", "group_generations.join",
                 "group_generations", "group_generations.collect"]:
        assert step in transforms
    environments = list(job.proto_pipeline.components.environments.values())
    assert environments and all(image.encode() in env.payload for env in environments)
    assert job.proto.name == "beam-distil-dry-run"
    assert job.google_cloud_options.project == "my-project"
    assert (tmp_path / "out" / "distiset_configs" / "pipeline.yaml").exists()
    assert not (tmp_path / "out" / "default").exists()  # nothing ran


def test_python_dash_m_reports_errors_with_exit_code_2(tmp_path, docs_pipelines):
    config = docs_pipelines.save(tmp_path / "pipeline.yaml", "http://127.0.0.1:9/v1", ["q"])
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}

    result = subprocess.run(
        [sys.executable, "-m", "beam_distil.flex_template", "--pipeline_config", config,
         "--output_dir", str(tmp_path / "o"), "--param", "gen_x.input_batch_size=2"],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120,
    )

    assert result.returncode == 2
    assert "names step 'gen_x'" in result.stderr
