"""``beam-distil pipeline info|run``: in-process through ``main([...])``, and once as ``python -m beam_distil``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from beam_distil.cli import main
from beam_distil.distiset import Distiset
from beam_distil.parameter_overrides import ParameterOverrideError, overrides_from_params
from beam_distil.pipeline import Pipeline
from pipelines.docs_pipeline import DEFAULT_MODELS as MODELS

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_info_prints_steps_connections_and_runtime_parameters(tmp_path, capsys, docs_pipelines):
    config = docs_pipelines.save(tmp_path / "pipeline.yaml", "http://127.0.0.1:9/v1", ["q"], routed=True)

    code = main(["pipeline", "info", "--config", config])

    out = capsys.readouterr().out
    assert code == 0
    assert "Pipeline: docs-pipeline" in out and "Description: Several models answer the same instructions." in out
    assert "  gen_a (beam_distil.steps.tasks.text_generation.TextGeneration)" in out
    assert "  load_instructions (beam_distil.steps.generators.data.LoadDataFromDicts)" in out
    assert "    llm: OpenAILLM (model-a)" in out
    assert "      batch_size (optional): How many rows each batch holds." in out
    assert "      llm.generation_kwargs (optional): " in out
    assert "      input_batch_size (optional)" in out
    assert "  load_instructions -> gen_a, gen_b, gen_c" in out
    assert "  gen_c -> group_generations" in out
    assert "  load_instructions -> sample_n_steps(n=2, seed=0) -> gen_a, gen_b, gen_c" in out


def test_info_marks_required_parameters(tmp_path, capsys):
    from beam_distil.steps import LoadDataFromHub

    with Pipeline("hub") as pipeline:
        LoadDataFromHub(name="hub")
    pipeline.save(tmp_path / "hub.json")

    assert main(["pipeline", "info", "--config", str(tmp_path / "hub.json")]) == 0

    out = capsys.readouterr().out
    assert "      repo_id (required)" in out
    assert "      split (optional)" in out


def test_run_sends_the_params_and_saves_the_distiset(tmp_path, openai_server, monkeypatch, capsys, docs_pipelines):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    instructions = ["hello", "world", "again"]
    config = docs_pipelines.save(tmp_path / "pipeline.json", openai_server.base_url, instructions)
    output = tmp_path / "distiset"

    code = main(
        [
            "pipeline", "run", "--config", config,
            "--param", "gen_a.llm.generation_kwargs.temperature=0.7",
            "--param", "gen_a.llm.generation_kwargs.max_new_tokens=17",
            "--param", "gen_b.input_batch_size=2",
            "--output", str(output),
            "--", "--direct_running_mode=in_memory",
        ]
    )

    assert code == 0, capsys.readouterr().err
    by_model = {body["model"]: body for body in openai_server.requests}
    assert by_model["model-a"]["temperature"] == 0.7
    assert by_model["model-a"]["max_tokens"] == 17
    assert by_model["model-b"]["temperature"] == 1.0
    assert openai_server.request_count == 3 * len(instructions)
    distiset = Distiset.load_from_disk(output)
    rows = distiset["default"]["train"].to_list()
    assert [row["instruction"] for row in rows] == instructions
    assert rows[1]["generations"] == [f"{m}: world" for m in MODELS]
    assert yaml.safe_load(distiset.pipeline_yaml)["pipeline"]["name"] == "docs-pipeline"
    assert str(output) in capsys.readouterr().out


def test_param_values_are_yaml():
    parameters = overrides_from_params(
        [
            "gen.llm.generation_kwargs.temperature=0.7",
            "gen.llm.generation_kwargs.stop=[a, b]",
            "gen.llm.generation_kwargs.logprobs=true",
            "gen.add_raw_input=false",
            "gen.system_prompt=x=1",
            "load.batch_size=10",
            "load.name='010'",
        ]
    )

    assert parameters == {
        "gen": {
            "llm": {"generation_kwargs": {"temperature": 0.7, "stop": ["a", "b"], "logprobs": True}},
            "add_raw_input": False,
            "system_prompt": "x=1",
        },
        "load": {"batch_size": 10, "name": "010"},
    }
    assert isinstance(parameters["gen"]["llm"]["generation_kwargs"]["temperature"], float)
    with pytest.raises(ParameterOverrideError, match="conflicts"):
        overrides_from_params(["gen.llm=1", "gen.llm.generation_kwargs.temperature=0.5"])


@pytest.mark.parametrize(
    "param, message",
    [
        ("gen_a.llm.generation_kwargs.temperature", "has no '='"),
        ("=0.7", "empty name"),
        ("gen_a..temperature=0.7", "empty name"),
        ("gen_a.=0.7", "empty name"),
        ("gen_a=0.7", "names no parameter of step 'gen_a'"),
        ("gen_a.input_batch_size=[1, 2", "cannot read the value"),
    ],
)
def test_bad_param_syntax_is_exit_code_2(tmp_path, capsys, param, message, docs_pipelines):
    config = docs_pipelines.save(tmp_path / "pipeline.yaml", "http://127.0.0.1:9/v1", ["q"])

    code = main(["pipeline", "run", "--config", config, "--param", param, "--output", str(tmp_path / "out")])

    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.startswith("beam-distil: error: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "param, message",
    [
        ("gen_x.input_batch_size=3", "names step 'gen_x', which is not in the pipeline. Did you mean"),
        ("gen_a.llm.temprature=0.7", "unknown runtime parameter 'llm.temprature'"),
        ("gen_a.input_batch_size=lots", "input_batch_size"),
    ],
)
def test_unknown_names_are_reported_without_a_traceback(tmp_path, openai_server, monkeypatch, capsys, param, message, docs_pipelines):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    config = docs_pipelines.save(tmp_path / "pipeline.yaml", openai_server.base_url, ["q"])

    code = main(["pipeline", "run", "--config", config, "--param", param, "--output", str(tmp_path / "out")])

    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert openai_server.request_count == 0


def test_a_missing_or_broken_config_is_exit_code_2(tmp_path, capsys):
    assert main(["pipeline", "info", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err

    broken = tmp_path / "broken.yaml"
    broken.write_text("pipeline: [\n")
    assert main(["pipeline", "info", "--config", str(broken)]) == 2
    assert "Malformed YAML" in capsys.readouterr().err

    assert main(["pipeline", "run", "--config", str(broken)]) == 2  # argparse: --output is required
    assert "--output" in capsys.readouterr().err
    assert main(["pipeline", "info", "--config", str(broken), "--", "--runner=DirectRunner"]) == 2
    assert "only accepted by `pipeline run`" in capsys.readouterr().err


def test_python_dash_m_prints_the_info(tmp_path, docs_pipelines):
    config = docs_pipelines.save(tmp_path / "pipeline.yaml", "http://127.0.0.1:9/v1", ["q"])
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}

    result = subprocess.run(
        [sys.executable, "-m", "beam_distil", "pipeline", "info", "--config", config],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert "gen_b (beam_distil.steps.tasks.text_generation.TextGeneration)" in result.stdout
    assert "llm.generation_kwargs (optional)" in result.stdout

    bad = subprocess.run(
        [sys.executable, "-m", "beam_distil", "pipeline", "run", "--config", config, "--param", "nope", "--output", "x"],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120,
    )
    assert bad.returncode == 2
    assert "has no '='" in bad.stderr


def test_info_shows_where_each_llm_sends_its_prompts(tmp_path, capsys, docs_pipelines):
    config = docs_pipelines.save(tmp_path / "pipeline.yaml", "http://198.51.100.7:8000/v1", ["q"])

    assert main(["pipeline", "info", "--config", config]) == 0

    assert "    llm: OpenAILLM (model-a) at http://198.51.100.7:8000/v1" in capsys.readouterr().out


def test_an_unwritable_output_is_refused_before_any_request(tmp_path, openai_server, monkeypatch, capsys, docs_pipelines):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    config = docs_pipelines.save(tmp_path / "pipeline.yaml", openai_server.base_url, ["q"])
    (tmp_path / "a-file").write_text("")

    code = main(["pipeline", "run", "--config", config, "--output", str(tmp_path / "a-file" / "distiset")])

    err = capsys.readouterr().err
    assert code == 2
    assert "--output" in err and "cannot be written" in err and "Traceback" not in err
    assert openai_server.request_count == 0


def test_a_run_where_every_row_of_a_task_failed_exits_1_and_keeps_the_rows(tmp_path, openai_server, monkeypatch, capsys, docs_pipelines):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    openai_server.fail_models = {"model-b"}
    config = docs_pipelines.save(tmp_path / "pipeline.yaml", openai_server.base_url, ["q1", "q2"])
    output = tmp_path / "distiset"

    code = main(["pipeline", "run", "--config", config, "--param", "gen_b.llm.max_retries=0", "--output", str(output),
                 "--dead-letter-dir", str(tmp_path / "dead"), "--", "--direct_running_mode=in_memory"])

    captured = capsys.readouterr()
    assert code == 1
    assert "every row of step 'gen_b' (2 of 2 rows) failed" in captured.err
    assert str(output) in captured.out
    rows = Distiset.load_from_disk(str(output))["default"]["train"].to_list()
    assert [row["generations"][1] for row in rows] == [None, None]
    assert list((tmp_path / "dead").glob("*.jsonl"))


def test_info_shows_where_an_llm_whose_url_is_built_sends_its_prompts(tmp_path, capsys):
    from beam_distil.models.inference_endpoints import InferenceEndpointsLLM
    from beam_distil.steps import LoadDataFromDicts
    from beam_distil.steps.tasks import TextGeneration

    with Pipeline("serverless") as pipeline:
        LoadDataFromDicts(data=[{"instruction": "q"}]) >> TextGeneration(
            name="gen", llm=InferenceEndpointsLLM(model_id="org/model")
        )
    pipeline.save(tmp_path / "pipeline.yaml")

    assert main(["pipeline", "info", "--config", str(tmp_path / "pipeline.yaml")]) == 0

    assert "    llm: InferenceEndpointsLLM at https://router.huggingface.co/v1" in capsys.readouterr().out
