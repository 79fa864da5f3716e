"""vLLM: the checks before launch without vLLM or without a GPU, and how ``generate`` drives the engine.

vLLM needs a CUDA GPU and cannot be installed or run on the machines this suite runs on. The guard tests below
run with vLLM made impossible to import, which is what every machine without it sees. The tests of what
``generate`` asks of the engine use ``fake_vllm``: a small stand-in module put in ``sys.modules`` that records the
``LLM(...)`` arguments, the ``SamplingParams`` and the prompts, and answers like vLLM's ``RequestOutput``. This is
the only fake backend in the suite, and it proves only the mapping onto vLLM's API as documented (``LLM``,
``SamplingParams``, ``StructuredOutputsParams``/``GuidedDecodingParams``, ``RequestOutput``/``CompletionOutput``),
not that a real vLLM generates: nothing here ran on a GPU.
"""

from __future__ import annotations

import importlib.machinery
import sys
import threading
import time
import types
from typing import Any, Dict, List, Optional

import jinja2
import pytest

from beam_distil.models import vllm as vllm_backend
from beam_distil.models.vllm import vLLM
from beam_distil.pipeline import Pipeline, PipelineValidationError
from beam_distil.steps import LoadDataFromDicts
from beam_distil.steps.tasks import TextGeneration

MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
CHAT = [{"role": "user", "content": "Name a colour."}]
TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


class FakeEngine:
    """Stands in for ``vllm.LLM``: records what it was given; answers ``"<prompt>#<i>"`` for completion ``i``,
    with one token per word, and finish reason ``"length"`` when ``max_tokens`` is 1."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.batches: List[List[str]] = []
        self.params: List[Any] = []
        self.hold: Optional[threading.Event] = None
        self.fail_on: Optional[str] = None
        FakeEngine.last = self

    def get_tokenizer(self) -> Any:
        return FakeTokenizer()

    def generate(self, prompts: List[str], sampling_params: List[Any], use_tqdm: bool) -> List[Any]:
        assert use_tqdm is False
        if self.hold is not None:
            self.hold.wait(10)
        self.batches.append(list(prompts))
        self.params.extend(sampling_params)
        if self.fail_on and any(self.fail_on in prompt for prompt in prompts):
            raise ValueError(f"prompt too long: {self.fail_on}")
        return [
            types.SimpleNamespace(
                prompt_token_ids=list(range(len(prompt.split()))),
                outputs=[
                    types.SimpleNamespace(
                        text=f"{prompt}#{i}", token_ids=[0] * (i + 1),
                        finish_reason="length" if params.kwargs["max_tokens"] == 1 else "stop",
                    )
                    for i in range(params.kwargs["n"])
                ],
            )
            for prompt, params in zip(prompts, sampling_params, strict=True)
        ]


class FakeTokenizer:
    chat_template: Optional[str] = TEMPLATE

    def apply_chat_template(self, messages: List[Dict[str, Any]], chat_template: str, tokenize: bool,
                            add_generation_prompt: bool) -> str:
        assert tokenize is False
        return jinja2.Template(chat_template).render(messages=messages, add_generation_prompt=add_generation_prompt)


class Recorded:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


class JSONConstraint:
    def __init__(self, json: Any = None) -> None:
        self.json = json


def fake_vllm(monkeypatch: pytest.MonkeyPatch, constraint_class: str = "StructuredOutputsParams") -> None:
    """Installs the stand-in ``vllm`` package (see the module docstring) and one visible GPU."""
    package = types.ModuleType("vllm")
    package.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    package.LLM = FakeEngine
    package.SamplingParams = Recorded
    sampling_params = types.ModuleType("vllm.sampling_params")
    setattr(sampling_params, constraint_class, JSONConstraint)
    package.sampling_params = sampling_params
    monkeypatch.setitem(sys.modules, "vllm", package)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling_params)
    monkeypatch.setattr(vllm_backend, "visible_gpu_count", lambda: 1)


# -- before launch -------------------------------------------------------------------------------------------


def test_without_vllm_check_ready_and_load_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    llm = vLLM(model=MODEL)

    message = (
        f"vLLM model {MODEL!r} needs vLLM, which is not installed here: pip install 'beam-distil[vllm]' on a machine"
        " with an NVIDIA GPU (CUDA). On a CPU, use TransformersLLM or LlamaCppLLM."
    )
    assert llm.check_ready() == [message]
    with pytest.raises(ImportError) as raised:
        llm.load()
    assert str(raised.value) == message


def test_without_vllm_a_pipeline_fails_before_launch_naming_the_step_and_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with Pipeline("vllm-missing") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "Say hi."}])
        load >> TextGeneration(name="gen", llm=vLLM(model=MODEL, generation_kwargs={"temperature": 0.7}))

    with pytest.raises(PipelineValidationError) as raised:
        pipeline.run(use_cache=False)
    [problem] = raised.value.problems
    assert problem.startswith(f"Step 'gen': vLLM model {MODEL!r} needs vLLM")
    assert "pip install 'beam-distil[vllm]'" in problem


def test_without_vllm_a_pipeline_is_saved_loaded_and_drawn(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with Pipeline("vllm-saved") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "Say hi."}])
        llm = vLLM(model=MODEL, dtype="bfloat16", extra_kwargs={"max_model_len": 4096})
        load >> TextGeneration(name="gen", llm=llm)

    pipeline.save(tmp_path / "pipeline.yaml")
    loaded = Pipeline.from_file(tmp_path / "pipeline.yaml")

    assert loaded.dag.steps["gen"].llm == llm
    assert "gen" in loaded.draw()


@pytest.mark.parametrize(
    "gpus, why", [(0, "torch.cuda.device_count() is 0"), (None, "torch cannot be imported")]
)
def test_with_vllm_but_no_visible_gpu_the_load_says_so(monkeypatch, gpus, why):
    fake_vllm(monkeypatch)
    monkeypatch.setattr(vllm_backend, "visible_gpu_count", lambda: gpus)
    llm = vLLM(model=MODEL)

    message = (
        f"vLLM model {MODEL!r} needs a CUDA GPU, and none is visible here ({why}; check the driver and"
        " CUDA_VISIBLE_DEVICES, or run on a GPU machine). On a CPU, use TransformersLLM or LlamaCppLLM."
    )
    assert llm.check_ready() == []  # the launching machine need not have the workers' GPUs
    with pytest.raises(RuntimeError) as raised:
        llm.load()
    assert str(raised.value) == message


def test_more_tensor_parallel_gpus_than_visible_is_found_when_the_model_loads(monkeypatch):
    fake_vllm(monkeypatch)
    with pytest.raises(RuntimeError) as raised:
        vLLM(model=MODEL, extra_kwargs={"tensor_parallel_size": 2}).load()
    assert str(raised.value) == f"vLLM model {MODEL!r} asks for tensor_parallel_size=2, but only 1 GPU(s) are visible here."


def test_generation_kwargs_are_checked_against_vllms_ranges():
    llm = vLLM(model=MODEL)
    assert llm.check_generation_kwarg("top_k", -1) is None
    assert llm.check_generation_kwarg("top_p", 1.5) == "got 1.5: vLLM takes top_p between 0.0 and 1.0"
    assert "structured_output" in llm.generation_parameter_names()


# -- what generate asks of the engine (fake vllm) ------------------------------------------------------------


def test_load_passes_distilabels_constructor_parameters_to_the_engine(monkeypatch):
    fake_vllm(monkeypatch)
    llm = vLLM(model=MODEL, dtype="bfloat16", quantization="awq", revision="r1", tokenizer="tok", seed=7,
               chat_template="{{ messages[0]['content'] }}", extra_kwargs={"gpu_memory_utilization": 0.8})
    llm.load()

    assert FakeEngine.last.kwargs == {
        "model": MODEL, "dtype": "bfloat16", "trust_remote_code": False, "quantization": "awq", "revision": "r1",
        "tokenizer": "tok", "tokenizer_mode": "auto", "tokenizer_revision": None, "skip_tokenizer_init": False,
        "seed": 7, "gpu_memory_utilization": 0.8,
    }
    assert llm.prepare_input(CHAT) == "Name a colour."  # chat_template replaces the tokenizer's


def test_generation_kwargs_map_onto_sampling_params_and_outputs_onto_generate_output(monkeypatch):
    fake_vllm(monkeypatch)
    llm = vLLM(model=MODEL)
    llm.load()
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}}

    chat, raw = llm.generate(
        [CHAT, "Once upon a time"], num_generations=2, max_new_tokens=7, presence_penalty=0.1,
        frequency_penalty=0.2, repetition_penalty=1.1, temperature=0.5, top_p=0.9, top_k=20, min_p=0.05,
        stop=["\n"], stop_token_ids=[2], seed=3, structured_output=schema, extra_sampling_params={"ignore_eos": True},
    )

    assert FakeEngine.last.batches == [["<user>Name a colour.<assistant>", "Once upon a time"]]
    first, second = FakeEngine.last.params
    constraint = first.kwargs.pop("structured_outputs")
    assert isinstance(constraint, JSONConstraint) and constraint.json == schema
    assert {key: value for key, value in first.kwargs.items() if key != "seed"} == {
        "n": 2, "max_tokens": 7, "presence_penalty": 0.1, "frequency_penalty": 0.2, "repetition_penalty": 1.1,
        "temperature": 0.5, "top_p": 0.9, "top_k": 20, "min_p": 0.05, "stop": ["\n"], "stop_token_ids": [2],
        "include_stop_str_in_output": False, "ignore_eos": True,
    }
    assert first.kwargs["seed"] != second.kwargs["seed"]  # each prompt has its own seed
    assert chat == {
        "generations": ["<user>Name a colour.<assistant>#0", "<user>Name a colour.<assistant>#1"],
        "statistics": {"input_tokens": [3], "output_tokens": [1, 2]},
        "finish_reasons": ["stop", "stop"],
    }
    assert raw["generations"] == ["Once upon a time#0", "Once upon a time#1"]
    assert llm.generate(["Once"], max_new_tokens=1)[0]["finish_reasons"] == ["length"]


def test_a_prompts_seed_depends_on_the_prompt_and_the_call_seed_not_on_its_batch(monkeypatch):
    fake_vllm(monkeypatch)
    llm = vLLM(model=MODEL)
    llm.load()

    def seeds(*inputs: Any, seed: Optional[int] = None) -> List[int]:
        FakeEngine.last.params.clear()
        llm.generate(list(inputs), seed=seed)
        return [params.kwargs["seed"] for params in FakeEngine.last.params]

    [alone] = seeds("a")
    assert seeds("b", "a")[1] == alone
    assert seeds("a", seed=1) != [alone]


def test_older_vllm_gets_the_schema_as_guided_decoding(monkeypatch):
    fake_vllm(monkeypatch, constraint_class="GuidedDecodingParams")
    llm = vLLM(model=MODEL)
    llm.load()
    llm.generate([CHAT], structured_output={"type": "object"})
    [params] = FakeEngine.last.params
    assert params.kwargs["guided_decoding"].json == {"type": "object"} and "structured_outputs" not in params.kwargs


def generate_from_threads(llm: vLLM, prompts: List[str]) -> Dict[str, Any]:
    """Each prompt generated from its own thread: the first holds the engine until all the others are queued
    behind it. Returns each prompt's generations, or the error its call raised."""
    engine = FakeEngine.last
    engine.hold = threading.Event()
    results: Dict[str, Any] = {}

    def call(prompt: str) -> None:
        try:
            results[prompt] = llm.generate([prompt])[0]["generations"]
        except Exception as error:  # noqa: BLE001 — what the caller would get
            results[prompt] = error

    threads = [threading.Thread(target=call, args=(prompt,)) for prompt in prompts]
    threads[0].start()
    while not llm._batcher._running:
        time.sleep(0.001)
    for thread in threads[1:]:
        thread.start()
    while len(llm._batcher._waiting) < len(prompts) - 1:
        time.sleep(0.001)
    engine.hold.set()
    for thread in threads:
        thread.join(10)
    return results


def test_calls_from_many_threads_are_gathered_into_one_engine_call(monkeypatch):
    fake_vllm(monkeypatch)
    llm = vLLM(model=MODEL)
    llm.load()

    results = generate_from_threads(llm, [f"prompt {i}" for i in range(5)])

    assert [len(batch) for batch in FakeEngine.last.batches] == [1, 4]
    assert results == {f"prompt {i}": [f"prompt {i}#0"] for i in range(5)}


def test_a_failing_batch_is_run_again_call_by_call_so_only_the_bad_prompt_fails(monkeypatch):
    fake_vllm(monkeypatch)
    llm = vLLM(model=MODEL)
    llm.load()
    FakeEngine.last.fail_on = "huge"

    results = generate_from_threads(llm, ["first", "fine", "huge"])

    assert results["first"] == ["first#0"] and results["fine"] == ["fine#0"]
    assert isinstance(results["huge"], ValueError) and str(results["huge"]) == "prompt too long: huge"
    assert FakeEngine.last.batches == [["first"], ["fine", "huge"], ["fine"], ["huge"]]
