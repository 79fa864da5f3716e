"""``vLLM``: a model run in-process by the vLLM engine on the worker's GPUs.

An optional extra: ``pip install 'beam-distil[vllm]'``, on a machine with an NVIDIA GPU and CUDA. Without vLLM the
class still imports and builds, so a pipeline that uses it can be saved, validated and drawn anywhere;
``check_ready()`` (run before launch) and ``load()`` say what is missing: vLLM itself, or a visible GPU.

Example::

    from beam_distil.models.vllm import vLLM

    llm = vLLM(
        model="Qwen/Qwen2.5-1.5B-Instruct",
        extra_kwargs={"gpu_memory_utilization": 0.85, "max_model_len": 4096},
        generation_kwargs={"temperature": 0.7, "max_new_tokens": 256},
    )
    TextGeneration(llm=llm)

One engine per worker process (``beam_distil.beam.shared_llms``) holds the GPU's memory, so run one worker
process per GPU (on Dataflow, ``--experiments=no_use_multiple_sdk_containers``; locally, no
``multi_processing``). The rows of a process reach the engine from several threads at once (the Task calls a
synchronous backend from a thread pool); their calls are gathered into one ``LLM.generate`` call, so vLLM batches
them, rather than running them one after another.

``generate`` maps its keyword arguments onto ``SamplingParams`` (``max_new_tokens`` is ``max_tokens``,
``num_generations`` is ``n``, and ``structured_output``, a JSON schema, is vLLM's structured-outputs/guided
decoding). Each prompt's seed derives from ``seed``, the call's ``seed`` and the prompt, so a row gets the same
answers whatever other rows share its batch. The names used here (``LLM(...)`` arguments, ``LLM.generate``,
``SamplingParams``, ``StructuredOutputsParams``, ``RequestOutput``) were read from vLLM 0.32.0's source; this
module has not run against a real vLLM.
"""

from __future__ import annotations

import gc
import threading
from typing import Any, Callable, ClassVar, Dict, List, Optional, Tuple, Union

from pydantic import Field, PrivateAttr

from beam_distil.models.base import FormattedInput, GenerateOutput, LLM
from beam_distil.helpers import is_installed
from beam_distil.models.in_process import prompt_seed, render_chat
from beam_distil.runtime_parameters import RuntimeParameter

INSTALL_HINT = "pip install 'beam-distil[vllm]'"


def visible_gpu_count() -> Optional[int]:
    """The CUDA GPUs torch sees in this process, or ``None`` when torch cannot be imported."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class vLLM(LLM):  # noqa: N801 — distilabel's name
    """Chat (``input`` is a list of messages) or raw completion (``input`` is a string) with vLLM."""

    completes_raw_text: ClassVar[bool] = True

    # The values vLLM's SamplingParams accepts (top_k 0 or -1 turns top-k sampling off; top_p must be above 0).
    generation_kwarg_ranges: ClassVar[Dict[str, Tuple[Optional[float], Optional[float]]]] = {
        "max_new_tokens": (1, None),
        "presence_penalty": (-2.0, 2.0),
        "frequency_penalty": (-2.0, 2.0),
        "repetition_penalty": (0.0, None),
        "temperature": (0.0, 2.0),
        "top_p": (0.0, 1.0),
        "top_k": (-1, None),
        "min_p": (0.0, 1.0),
    }

    model: str = Field(description="A Hugging Face Hub repo id or a local model directory.")
    dtype: str = Field(default="auto", description="The weights' dtype: 'auto', 'float16', 'bfloat16'...")
    runs_foreign_code_when: ClassVar[Tuple[str, ...]] = ("trust_remote_code",)
    """Fields that, set to true, run code from outside the project: a saved pipeline may not set them."""
    trust_remote_code: bool = Field(
        default=False, description="Run the model repository's own Python code; only for repositories you trust."
    )
    quantization: Optional[str] = Field(default=None, description="vLLM's quantization method: 'awq', 'gptq', 'fp8'...")
    revision: Optional[str] = Field(default=None, description="The Hub revision of `model`.")
    tokenizer: Optional[str] = Field(
        default=None, description="The tokenizer's repo id or directory; `model`'s when not given."
    )
    tokenizer_mode: str = Field(default="auto", description="vLLM's tokenizer mode: 'auto', 'hf', 'mistral'...")
    tokenizer_revision: Optional[str] = Field(default=None, description="The Hub revision of the tokenizer.")
    skip_tokenizer_init: bool = Field(
        default=False, description="Load no tokenizer; then only string (raw completion) inputs can be generated."
    )
    chat_template: Optional[str] = Field(
        default=None, description="A Jinja chat template replacing the tokenizer's (ChatML when it has none)."
    )
    seed: int = Field(
        default=0, description="The engine's seed; a prompt's seed derives from it, the call's own seed and the prompt."
    )
    extra_kwargs: Optional[RuntimeParameter[Dict[str, Any]]] = Field(
        default_factory=dict,
        description="More keyword arguments for `vllm.LLM`: gpu_memory_utilization, max_model_len,"
        " tensor_parallel_size...",
    )

    _model: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)
    _batcher: Optional["_GatheredCalls"] = PrivateAttr(default=None)

    @property
    def model_name(self) -> str:
        return self.model

    def _not_installed(self) -> Optional[str]:
        if is_installed("vllm"):
            return None
        return (
            f"vLLM model {self.model!r} needs vLLM, which is not installed here: {INSTALL_HINT} on a machine with an"
            " NVIDIA GPU (CUDA). On a CPU, use TransformersLLM or LlamaCppLLM."
        )

    def check_ready(self) -> List[str]:
        # Only what the launching machine can tell: the GPUs are the workers' (a Dataflow launcher has none),
        # so they are checked where the model loads.
        not_installed = self._not_installed()
        return [not_installed] if not_installed else []

    def _gpu_problems(self) -> List[str]:
        gpus = visible_gpu_count()
        if not gpus:
            why = "torch cannot be imported" if gpus is None else "torch.cuda.device_count() is 0"
            return [
                f"vLLM model {self.model!r} needs a CUDA GPU, and none is visible here ({why}; check the driver and"
                " CUDA_VISIBLE_DEVICES, or run on a GPU machine). On a CPU, use TransformersLLM or LlamaCppLLM."
            ]
        wanted = (self.extra_kwargs or {}).get("tensor_parallel_size", 1)
        if isinstance(wanted, int) and wanted > gpus:
            return [
                f"vLLM model {self.model!r} asks for tensor_parallel_size={wanted}, but only {gpus} GPU(s) are"
                " visible here."
            ]
        return []

    def load(self) -> None:
        not_installed = self._not_installed()
        if not_installed:
            raise ImportError(not_installed)
        problems = self._gpu_problems()
        if problems:
            raise RuntimeError(problems[0])
        from vllm import LLM as Engine

        self._model = Engine(
            model=self.model,
            dtype=self.dtype,
            trust_remote_code=self.trust_remote_code,
            quantization=self.quantization,
            revision=self.revision,
            tokenizer=self.tokenizer,
            tokenizer_mode=self.tokenizer_mode,
            tokenizer_revision=self.tokenizer_revision,
            skip_tokenizer_init=self.skip_tokenizer_init,
            seed=self.seed,
            **(self.extra_kwargs or {}),
        )
        self._tokenizer = None if self.skip_tokenizer_init else self._model.get_tokenizer()
        if self._tokenizer is not None and self.chat_template is not None:
            self._tokenizer.chat_template = self.chat_template
        model = self._model
        self._batcher = _GatheredCalls(
            lambda prompts, params: model.generate(prompts, sampling_params=params, use_tqdm=False)
        )

    def unload(self) -> None:
        self._model = self._tokenizer = self._batcher = None
        gc.collect()
        try:
            import torch
        except ImportError:
            return
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def prepare_input(self, input: FormattedInput) -> str:
        """The prompt text: a chat through the chat template, a string as it is."""
        if isinstance(input, str):
            return input
        if self._tokenizer is None:
            raise ValueError(
                f"vLLM model {self.model!r} was loaded with skip_tokenizer_init=True, so it cannot apply a chat"
                " template: pass string prompts, or load the tokenizer."
            )
        return render_chat(self._tokenizer, input)

    def generate(  # type: ignore[override]
        self,
        inputs: List[FormattedInput],
        num_generations: int = 1,
        max_new_tokens: int = 128,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        repetition_penalty: float = 1.0,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = -1,
        min_p: float = 0.0,
        stop: Optional[Union[str, List[str]]] = None,
        stop_token_ids: Optional[List[int]] = None,
        include_stop_str_in_output: bool = False,
        seed: Optional[int] = None,
        structured_output: Optional[Dict[str, Any]] = None,
        extra_sampling_params: Optional[Dict[str, Any]] = None,
    ) -> List[GenerateOutput]:
        """``num_generations`` answers for each input, with their finish reasons (``"stop"``, ``"length"``...)
        and token counts. ``structured_output`` is a JSON schema every answer follows; ``extra_sampling_params``
        are more ``SamplingParams`` fields."""
        if self._model is None:
            self.load()
        from vllm import SamplingParams

        common: Dict[str, Any] = {
            "n": num_generations,
            "max_tokens": max_new_tokens,
            "presence_penalty": presence_penalty,
            "frequency_penalty": frequency_penalty,
            "repetition_penalty": repetition_penalty,
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "min_p": min_p,
            "stop": stop,
            "stop_token_ids": stop_token_ids,
            "include_stop_str_in_output": include_stop_str_in_output,
        }
        if structured_output is not None:
            common.update(json_schema_constraint(structured_output))
        common.update(extra_sampling_params or {})
        prompts = [self.prepare_input(input) for input in inputs]
        params = [SamplingParams(**{"seed": prompt_seed(self.seed, seed, input), **common}) for input in inputs]
        assert self._batcher is not None
        return [_output_of(request) for request in self._batcher.generate(prompts, params)]


def json_schema_constraint(schema: Dict[str, Any]) -> Dict[str, Any]:
    """The ``SamplingParams`` field that makes vLLM follow a JSON schema: ``structured_outputs``, else, on an older
    vLLM, ``guided_decoding`` (the name it had before; removed in 0.12)."""
    try:
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:
        pass
    else:
        return {"structured_outputs": StructuredOutputsParams(json=schema)}
    try:
        from vllm.sampling_params import GuidedDecodingParams
    except ImportError:
        raise NotImplementedError(
            "this vLLM has neither StructuredOutputsParams nor GuidedDecodingParams, so it cannot follow a JSON"
            f" schema: {INSTALL_HINT} installs a version that can."
        ) from None
    return {"guided_decoding": GuidedDecodingParams(json=schema)}


def _output_of(request: Any) -> GenerateOutput:
    """A ``GenerateOutput`` from a vLLM ``RequestOutput``: every completion's text, token count and finish
    reason; the prompt's tokens once (vLLM evaluates a prompt once for all its completions)."""
    completions = list(request.outputs)
    return {
        "generations": [completion.text for completion in completions],
        "statistics": {
            "input_tokens": [len(request.prompt_token_ids or [])],
            "output_tokens": [len(completion.token_ids) for completion in completions],
        },
        "finish_reasons": [completion.finish_reason for completion in completions],
    }


class _Call:
    def __init__(self, prompts: List[str], params: List[Any]) -> None:
        self.prompts = prompts
        self.params = params
        self.outputs: Optional[List[Any]] = None
        self.error: Optional[BaseException] = None
        self.done = False


class _GatheredCalls:
    """Runs calls made from many threads as few ``generate`` calls: while one runs, the calls that arrive wait,
    and the next of their threads runs them all together. vLLM's offline engine takes one caller at a time, and
    batches what that caller gives it; one prompt per call would leave the GPU mostly idle.

    A batch that fails is run again one call at a time, so a bad prompt (one too long for the model, say) fails
    only its own row.
    """

    def __init__(self, run: Callable[[List[str], List[Any]], List[Any]]) -> None:
        self._run = run
        self._condition = threading.Condition()
        self._waiting: List[_Call] = []
        self._running = False

    def generate(self, prompts: List[str], params: List[Any]) -> List[Any]:
        call = _Call(prompts, params)
        batch: List[_Call] = []
        with self._condition:
            self._waiting.append(call)
            while self._running and not call.done:
                self._condition.wait()
            if not call.done:  # nothing running and this call not yet run: this thread runs all that waits
                batch, self._waiting = self._waiting, []
                self._running = True
        if batch:
            try:
                self._run_batch(batch)
            finally:
                with self._condition:
                    for gathered in batch:
                        gathered.done = True
                    self._running = False
                    self._condition.notify_all()
        if call.error is not None:
            raise call.error
        assert call.outputs is not None
        return call.outputs

    def _run_batch(self, batch: List[_Call]) -> None:
        try:
            outputs = self._run([p for c in batch for p in c.prompts], [p for c in batch for p in c.params])
        except Exception as error:  # noqa: BLE001 — given to the calls it belongs to
            if len(batch) == 1:
                batch[0].error = error
                return
            for call in batch:
                self._run_batch([call])
            return
        start = 0
        for call in batch:
            call.outputs = list(outputs[start : start + len(call.prompts)])
            start += len(call.prompts)
