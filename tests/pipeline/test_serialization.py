"""Pipeline.dump/save/from_file: round trips for every step type, secrets, routing, errors, identical runs."""

from __future__ import annotations

import inspect
import json
import os
from typing import Any, Dict, List

import pytest
import yaml
from apache_beam.io.localfilesystem import LocalFileSystem
from pydantic import BaseModel

import beam_distil.steps as steps_module
import beam_distil.steps.tasks as tasks_module
from beam_distil.models import LlamaCppLLM, OpenAILLM
from beam_distil.pipeline import Pipeline, register, routing_batch_function, sample_n_steps
from beam_distil.pipeline.serialization import PipelineSerializationError
from beam_distil.models.embeddings import MiniLMEmbeddings
from beam_distil.steps import GroupColumns, LoadDataFromDicts
from beam_distil.steps.base import _Step
from beam_distil.steps.tasks import TextGeneration

SECRET = "sk-serialization-test-9f8e7d6c5b4a"
MODELS = ["model-a", "model-b", "model-c"]


class Character(BaseModel):
    name: str
    age: int


# Arguments for the exported steps that have required fields; any other exported step must build without any.
STEP_KWARGS: Dict[str, Dict[str, Any]] = {
    "LoadDataFromDicts": {"data": [{"instruction": "hi", "n": 1.5, "tags": ["a", "b"]}], "batch_size": 7},
    "LoadDataFromHub": {"repo_id": "org/dataset", "split": "test", "num_examples": 3},
    "LoadDataFromFileSystem": {"data_files": "data/*.jsonl", "filetype": "jsonl"},
    "ExpandColumns": {"columns": ["generations"]},
    "GroupColumns": {"columns": ["generation"], "output_columns": ["generations"]},
    "KeepColumns": {"columns": ["instruction", "generation"]},
    "MergeColumns": {"columns": ["a", "b"], "output_column": "merged"},
    "CombineOutputs": {},
    "FormatTextGenerationDPO": {},
    "FormatTextGenerationSFT": {"input_mappings": {"instruction": "prompt"}},
    "ExactDedup": {"columns": ["instruction"]},
    "MinHashDedup": {"threshold": 0.8, "n": 2},
    "EmbeddingGeneration": {"embeddings": MiniLMEmbeddings(normalize_embeddings=False)},
    "EmbeddingDedup": {"threshold": 0.9},
    "TextGenerationToArgilla": {"dataset_name": "reviews", "api_url": "http://127.0.0.1:6900", "api_key": SECRET},
    "PreferenceToArgilla": {
        "dataset_name": "preferences", "num_generations": 2, "api_url": "http://127.0.0.1:6900", "api_key": SECRET
    },
}

# Arguments other than `llm` for the exported tasks that have more required fields.
TASK_KWARGS: Dict[str, Dict[str, Any]] = {
    "EvolInstruct": {"num_evolutions": 2},
    "EvolInstructGenerator": {"num_instructions": 3},
    "EvolQuality": {"num_evolutions": 1},
    "GenerateSentencePair": {"action": "paraphrase"},
    "PrometheusEval": {"mode": "absolute", "rubric": "helpfulness"},
    "MagpieGenerator": {"num_rows": 2},
}


def _build(cls: type, **kwargs: Any) -> Any:
    try:
        return cls(**kwargs)
    except ValueError as error:
        pytest.fail(f"{cls.__name__} is exported but this test does not know how to build it: add its arguments ({error})")


def _llms(index: int) -> List[Any]:
    return [
        OpenAILLM(
            model=f"model-{index}",
            base_url="http://127.0.0.1:9/v1",
            api_key=SECRET,
            generation_kwargs={"temperature": 0.3, "max_new_tokens": 11},
            max_retries=2,
        ),
        LlamaCppLLM(model_path="/models/tiny.gguf", n_ctx=512, seed=3, generation_kwargs={"temperature": 0.1}),
    ]


def _concrete_step_classes(module: Any) -> List[type]:
    classes = [getattr(module, name) for name in module.__all__]
    return [c for c in classes if inspect.isclass(c) and issubclass(c, _Step) and not inspect.isabstract(c)]


def every_step_pipeline() -> Pipeline:
    """One step of each exported step class, and each exported task with an OpenAILLM and a LlamaCppLLM."""
    with Pipeline("every-step", description="All the step types") as pipeline:
        built = {}
        for cls in _concrete_step_classes(steps_module):
            built[cls.__name__] = _build(cls, **STEP_KWARGS.get(cls.__name__, {}))
        load = built["LoadDataFromDicts"]
        for cls in _concrete_step_classes(tasks_module):
            for index, llm in enumerate(_llms(len(built))):
                built[f"{cls.__name__}_{index}"] = _build(
                    cls, name=f"{cls.__name__.lower()}_{index}", llm=llm, **TASK_KWARGS.get(cls.__name__, {})
                )
        others = [step for step in built.values() if not step.is_generator]
        load >> others
    return pipeline


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_every_step_type_round_trips(tmp_path, suffix):
    pipeline = every_step_pipeline()
    path = tmp_path / f"pipeline{suffix}"

    pipeline.save(path)
    loaded = Pipeline.from_file(path)

    assert loaded.dump() == pipeline.dump()
    assert list(loaded.dag.steps) == list(pipeline.dag.steps)
    for name, step in pipeline.dag.steps.items():
        twin = loaded.dag.steps[name]
        assert type(twin) is type(step)
        assert twin.pipeline is loaded
        # A step's own secret (the Argilla steps' api_key) is not saved: it comes from the environment again.
        unsaved = {"pipeline", "llm", "api_key"}
        assert twin.model_dump(exclude=unsaved) == step.model_dump(exclude=unsaved)
        assert loaded.dag.successors(name) == pipeline.dag.successors(name)
    # Every exported step class and every task with both LLMs is in the file.
    saved = pipeline.dump()["pipeline"]["steps"]
    saved_types = {entry["step"]["type_info"]["name"] for entry in saved}
    assert {c.__name__ for c in _concrete_step_classes(steps_module) + _concrete_step_classes(tasks_module)} <= saved_types
    llm_types = {entry["step"]["llm"]["type_info"]["name"] for entry in saved if "llm" in entry["step"]}
    assert llm_types == {"OpenAILLM", "LlamaCppLLM"}
    text = path.read_text()
    parsed = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    assert parsed == pipeline.dump()
    assert parsed["beam_distil"]["version"]
    assert loaded.dag.steps["textgeneration_0"].llm.generation_kwargs == {"temperature": 0.3, "max_new_tokens": 11}
    assert loaded.dag.steps["textgeneration_1"].llm.model_path == "/models/tiny.gguf"
    assert loaded.dag.steps["load_data_from_hub_0"].num_examples == 3


def test_the_api_key_is_never_saved_and_comes_from_the_environment(tmp_path, monkeypatch):
    pipeline = every_step_pipeline()
    assert pipeline.dag.steps["textgeneration_0"].llm.api_key.get_secret_value() == SECRET

    for suffix in (".yaml", ".json"):
        path = tmp_path / f"pipeline{suffix}"
        pipeline.save(path)
        text = path.read_text()
        assert SECRET not in text
        assert "**********" not in text  # not even masked
        for entry in pipeline.dump()["pipeline"]["steps"]:
            assert "api_key" not in entry["step"].get("llm", {})
            assert entry["step"].get("api_key") is None  # a step's own key (Argilla's) neither

    loaded = Pipeline.from_file(tmp_path / "pipeline.yaml")
    llm = loaded.dag.steps["textgeneration_0"].llm
    assert llm.api_key is None
    assert llm.check_ready()  # no key anywhere yet
    monkeypatch.setenv("OPENAI_API_KEY", "from-the-worker-environment")
    assert llm.check_ready() == []


def test_an_explicit_format_overrides_the_suffix(tmp_path):
    pipeline = every_step_pipeline()
    path = tmp_path / "pipeline.txt"

    pipeline.save(path, format="json")

    assert json.loads(path.read_text())["pipeline"]["name"] == "every-step"
    assert Pipeline.from_json(path).dump() == pipeline.dump()
    with pytest.raises(PipelineSerializationError, match="suffix"):
        Pipeline.from_file(path)
    yaml_path = tmp_path / "pipeline.yml"
    pipeline.save(yaml_path)
    assert Pipeline.from_yaml(yaml_path).dump() == pipeline.dump()


def test_a_pydantic_structured_output_comes_back_as_its_json_schema():
    with Pipeline("structured") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "a character"}])
        generate = TextGeneration(name="gen", llm=OpenAILLM(model="m", api_key=SECRET, structured_output=Character))
        load >> generate

    loaded = Pipeline.from_dict(pipeline.dump())

    assert loaded.dag.steps["gen"].llm.structured_output == Character.model_json_schema()
    assert loaded.dump() == pipeline.dump()


# -- routing ---------------------------------------------------------------------------------------------------


@register  # a saved pipeline may name it: Pipeline.from_dict looks it up, it imports nothing
@routing_batch_function(description="first or last", seed=5)
def first_or_last(steps: List[str]) -> List[str]:
    import random

    return [random.choice([steps[0], steps[-1]])]


def routed_pipeline(base_url: str, rows: int, routing: Any) -> Pipeline:
    with Pipeline("routed") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(rows)], batch_size=2)
        tasks = [TextGeneration(name=f"gen_{m[-1]}", llm=OpenAILLM(model=m, base_url=base_url)) for m in MODELS]
        group = GroupColumns(columns=["generation", "model_name"], output_columns=["generations", "model_names"])
        load >> routing >> tasks >> group
    return pipeline


def test_sample_n_steps_routing_survives_and_routes_the_same(tmp_path, openai_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    pipeline = routed_pipeline(openai_server.base_url, 16, sample_n_steps(2, seed=11))
    path = tmp_path / "routed.yaml"
    pipeline.save(path)

    loaded = Pipeline.from_file(path)

    saved = yaml.safe_load(path.read_text())["pipeline"]["routing_batch_functions"]
    assert saved[0]["step"] == "load_data_from_dicts_0"
    # distilabel's layout, which distilabel loads too; the seed beside it, since distilabel's factory takes none.
    assert saved[0]["type_info"] == {
        "module": "distilabel.pipeline.routing_batch_function", "name": "sample_n_steps", "kwargs": {"n": 2}
    }
    assert saved[0]["seed"] == 11
    routing = loaded.routing["load_data_from_dicts_0"]
    assert routing.factory["name"] == "sample_n_steps" and routing.seed == 11
    assert routing.downstream == ["gen_a", "gen_b", "gen_c"]
    assert routing.upstream is loaded.dag.steps["load_data_from_dicts_0"]
    assert loaded.dump() == pipeline.dump()

    def model_names(p: Pipeline) -> List[List[str]]:
        return [row["model_names"] for row in p.run(use_cache=False)["default"]["train"]]

    original = model_names(pipeline)
    assert all(len(names) == 2 for names in original)
    assert model_names(loaded) == original


def test_a_registered_user_routing_function_round_trips():
    pipeline = routed_pipeline("http://127.0.0.1:9/v1", 4, first_or_last)

    data = pipeline.dump()
    loaded = Pipeline.from_dict(json.loads(json.dumps(data)))

    saved = data["pipeline"]["routing_batch_functions"][0]
    assert saved["type_info"] == {"module": __name__, "name": "first_or_last"}
    assert saved["seed"] == 5 and saved["description"] == "first or last"
    routing = loaded.routing["load_data_from_dicts_0"]
    assert routing.fn is first_or_last.fn
    assert [routing.choose(MODELS, "load", k) for k in range(20)] == [
        first_or_last.choose(MODELS, "load", k) for k in range(20)
    ]


def test_a_local_routing_function_cannot_be_saved():
    @routing_batch_function
    def local_choice(steps: List[str]) -> List[str]:
        return steps[:1]

    pipeline = routed_pipeline("http://127.0.0.1:9/v1", 4, local_choice)

    with pytest.raises(PipelineSerializationError, match=r"local_choice.*load_data_from_dicts_0.*inside a function"):
        pipeline.dump()


# -- the docs pipeline runs the same -----------------------------------------------------------------------------


def test_a_loaded_docs_pipeline_runs_to_the_same_rows(tmp_path, openai_server, monkeypatch):
    instructions = [f"question {i}" for i in range(6)]
    with Pipeline("pipe-name", description="My first pipe") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": text} for text in instructions], batch_size=4)
        tasks = [
            TextGeneration(name=f"gen_{m[-1]}", llm=OpenAILLM(model=m, base_url=openai_server.base_url, api_key=SECRET))
            for m in MODELS
        ]
        group = GroupColumns(columns=["generation", "model_name"], output_columns=["generations", "model_names"])
        load >> tasks >> group
    path = tmp_path / "docs.yaml"
    pipeline.save(path)
    assert SECRET not in path.read_text()

    expected = pipeline.run(use_cache=False)["default"]["train"].to_list()
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # what a worker would have
    loaded = Pipeline.from_file(path)
    rows = loaded.run(use_cache=False)["default"]["train"].to_list()

    assert rows == expected
    assert [row["instruction"] for row in rows] == instructions
    assert rows[0]["generations"] == [f"{m}: question 0" for m in MODELS]
    assert openai_server.request_count == 2 * 3 * len(instructions)


# -- URLs --------------------------------------------------------------------------------------------------------


class _PrefixedFileSystem(LocalFileSystem):
    """Local files under a ``beamdistiltest://`` scheme, to go through Beam's ``FileSystems`` like ``gs://``."""

    @classmethod
    def scheme(cls) -> str:
        return "beamdistiltest"

    @staticmethod
    def _local(path: str) -> str:
        return path[len("beamdistiltest://") :]

    def create(self, path, *args, **kwargs):  # type: ignore[override]
        return super().create(self._local(path), *args, **kwargs)

    def open(self, path, *args, **kwargs):  # type: ignore[override]
        return super().open(self._local(path), *args, **kwargs)


def test_save_and_load_through_beam_filesystems(tmp_path):
    pipeline = every_step_pipeline()
    url = f"beamdistiltest://{tmp_path}/remote.yaml"

    pipeline.save(url)
    loaded = Pipeline.from_file(url)

    assert (tmp_path / "remote.yaml").is_file()
    assert loaded.dump() == pipeline.dump()
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        Pipeline.from_file(f"beamdistiltest://{tmp_path}/missing.yaml")


# -- errors ------------------------------------------------------------------------------------------------------


def _saved(tmp_path, suffix=".yaml") -> Any:
    with Pipeline("small") as pipeline:
        load = LoadDataFromDicts(name="load", data=[{"instruction": "x"}])
        gen = TextGeneration(name="gen", llm=OpenAILLM(model="m"))
        load >> gen
    path = tmp_path / f"small{suffix}"
    pipeline.save(path)
    return path


def test_malformed_yaml_and_json_name_the_file(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("pipeline:\n  name: [unclosed\n")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"pipeline": {"name": }')

    with pytest.raises(PipelineSerializationError, match=r"Malformed YAML in .*bad\.yaml"):
        Pipeline.from_file(bad_yaml)
    with pytest.raises(PipelineSerializationError, match=r"Malformed JSON in .*bad\.json.*line 1"):
        Pipeline.from_file(bad_json)
    not_a_pipeline = tmp_path / "list.yaml"
    not_a_pipeline.write_text("- 1\n- 2\n")
    with pytest.raises(PipelineSerializationError, match=r"`pipeline` section.*list\.yaml"):
        Pipeline.from_file(not_a_pipeline)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda step: step["type_info"].update(name="NoSuchStep"), r"has no 'NoSuchStep'"),
        (lambda step: step["type_info"].update(module="no_such_module.steps"), r"'no_such_module\.steps'.*not registered"),
        (lambda step: step["llm"]["type_info"].update(name="NoSuchLLM"), r"has no 'NoSuchLLM'"),
        (lambda step: step.update(temprature=0.7), r"(?s)TextGeneration.*temprature"),
        (lambda step: step["llm"].update(max_retries="many"), r"(?s)OpenAILLM.*max_retries"),
        (lambda step: step.pop("type_info"), r"type_info"),
    ],
)
def test_a_bad_step_names_the_file_and_the_step(tmp_path, edit, message):
    path = _saved(tmp_path)
    data = yaml.safe_load(path.read_text())
    edit(data["pipeline"]["steps"][1]["step"])
    path.write_text(yaml.safe_dump(data))

    with pytest.raises(PipelineSerializationError, match=message) as raised:
        Pipeline.from_file(path)

    assert str(path) in str(raised.value)
    assert "step 'gen'" in str(raised.value)


def test_a_connection_to_an_unknown_step_is_named(tmp_path):
    path = _saved(tmp_path, ".json")
    data = json.loads(path.read_text())
    data["pipeline"]["connections"][0]["to"] = ["gen", "ghost"]
    path.write_text(json.dumps(data))

    with pytest.raises(PipelineSerializationError, match=r"'load' -> 'ghost'.*small\.json"):
        Pipeline.from_file(path)


def test_a_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        Pipeline.from_file(os.path.join(tmp_path, "nope.yaml"))
