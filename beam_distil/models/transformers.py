"""``TransformersLLM``: a Hugging Face ``transformers`` causal language model run in-process, on the CPU or a GPU.

An optional extra: ``pip install 'beam-distil[transformers]'`` (transformers and torch; gguf and accelerate, which
transformers needs for GGUF files and ``device_map``).
Without it the class still imports and builds, so a pipeline that uses it can be saved, validated and drawn
anywhere; ``check_ready()`` (run before launch) and ``load()`` say what to install.

Example::

    from beam_distil.models.transformers import TransformersLLM

    llm = TransformersLLM(model="HuggingFaceTB/SmolLM2-135M-Instruct", generation_kwargs={"temperature": 0.7})
    gguf = TransformersLLM(model="/models/SmolLM2-135M-Instruct.Q4_1.gguf")   # dequantized on load
    gpu = TransformersLLM(model="Qwen/Qwen2.5-1.5B-Instruct", device="cuda", torch_dtype="bfloat16")

    llm.load()
    llm.generate([[{"role": "user", "content": "Name a colour."}]], max_new_tokens=16)

As with ``LlamaCppLLM``, the model is loaded once per worker process (``beam_distil.beam.shared_llms``), never
pickled, and calls to it are serialised: more processes run more generations. ``n_threads`` sets torch's CPU
threads for the whole process (``torch.set_num_threads``); the default, 1, keeps N worker processes on N cores
from fighting over OpenMP threads that spin while they wait (on 2 cores, SmolLM2-135M generated 22 tokens/s
with 1 thread and no more with 2).

A chat ``input`` goes through the tokenizer's chat template (``chat_template`` overrides it; ChatML when the
tokenizer has none); a string ``input`` is a raw completion. ``num_generations`` answers come from one
``generate`` call (``num_return_sequences``) whose seed derives from ``seed``, the call's ``seed`` and the
prompt, so a row gets the same answers whatever order the rows ran in; torch's global random state is left as
it was. ``structured_output`` is not supported (transformers has no JSON-schema constraint of its own).
"""

from __future__ import annotations

import os
import threading
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Union

from pydantic import Field, PositiveInt, PrivateAttr, SecretStr

from beam_distil.helpers import is_installed
from beam_distil.models.base import FormattedInput, GenerateOutput, LLM
from beam_distil.models.in_flight import request_in_flight
from beam_distil.models.in_process import prompt_seed, render_chat

INSTALL_HINT = "pip install 'beam-distil[transformers]'"

class TransformersLLM(LLM):
    """Chat (``input`` is a list of messages) or raw completion (``input`` is a string) with ``transformers``."""

    completes_raw_text: ClassVar[bool] = True
    follows_structured_output: ClassVar[bool] = False  # transformers has no JSON-schema constraint of its own

    generation_kwarg_ranges: ClassVar[Dict[str, Tuple[Optional[float], Optional[float]]]] = {
        "max_new_tokens": (1, None),
        "temperature": (0.0, None),
        "repetition_penalty": (0.0, None),
        "top_p": (0.0, 1.0),
        "top_k": (0, None),
    }

    model: str = Field(description="A Hugging Face Hub repo id, a local model directory, or a local .gguf file.")
    revision: str = Field(default="main", description="The Hub revision (branch, tag or commit) of `model`.")
    torch_dtype: str = Field(default="auto", description="The weights' dtype: 'auto', 'float32', 'bfloat16'...")
    runs_foreign_code_when: ClassVar[Tuple[str, ...]] = ("trust_remote_code",)
    """Fields that, set to true, run code from outside the project: a saved pipeline may not set them."""
    trust_remote_code: bool = Field(
        default=False, description="Run the model repository's own Python code; only for repositories you trust."
    )
    model_kwargs: Optional[Dict[str, Any]] = Field(
        default=None, description="More keyword arguments for `AutoModelForCausalLM.from_pretrained`."
    )
    tokenizer: Optional[str] = Field(
        default=None, description="The tokenizer's repo id or directory; `model`'s when not given."
    )
    use_fast: bool = Field(default=True, description="Use the fast (Rust) tokenizer.")
    chat_template: Optional[str] = Field(
        default=None, description="A Jinja chat template replacing the tokenizer's (ChatML when it has none)."
    )
    device: Optional[Union[str, int]] = Field(
        default=None, description="Where the model runs: 'cpu', 'cuda', 'cuda:1' or a GPU index; the CPU when not given."
    )
    device_map: Optional[Union[str, Dict[str, Any]]] = Field(
        default=None,
        description="Layers to devices: 'auto', 'sequential' or a dict (needs `accelerate`); wins over `device`.",
    )
    token: Optional[SecretStr] = Field(
        default=None, description="A Hugging Face token for gated or private models; else `HF_TOKEN` on the worker."
    )
    gguf_file: Optional[str] = Field(
        default=None,
        description="A GGUF file inside `model` (a directory or repo) to load, dequantized; needs the `gguf` package."
        " A `model` that is a .gguf file sets it by itself.",
    )
    n_threads: Optional[PositiveInt] = Field(
        default=1, description="torch's CPU threads in the worker process (`torch.set_num_threads`); None keeps torch's."
    )
    seed: int = Field(
        default=0, description="Base seed; a call's seed derives from it, the call's own seed and the prompt."
    )

    # How it runs, not what it answers: left out of the response-cache key with the base class's fields.
    _operational_fields = LLM.__private_attributes__["_operational_fields"].default | {"token", "device", "device_map"}

    _model: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default=None)

    @property
    def model_name(self) -> str:
        return self.model

    def _source(self) -> Tuple[str, Optional[str]]:
        """``(model directory or repo id, GGUF file name or None)``."""
        if self.gguf_file is None and self.model.endswith(".gguf") and os.path.isfile(self.model):
            return os.path.dirname(os.path.abspath(self.model)), os.path.basename(self.model)
        return self.model, self.gguf_file

    def _wants_gpu(self) -> bool:
        return isinstance(self.device, int) or (isinstance(self.device, str) and self.device.startswith("cuda"))

    def _not_installed(self) -> Optional[str]:
        missing = [name for name in ("transformers", "torch") if not is_installed(name)]
        if not missing:
            return None
        return f"TransformersLLM model {self.model!r} needs {' and '.join(missing)}, not installed here: {INSTALL_HINT}."

    def check_ready(self) -> List[str]:
        not_installed = self._not_installed()
        if not_installed:
            return [not_installed]
        source, gguf_file = self._source()
        looks_local = os.path.isabs(source) or source.startswith((".", "~")) or self.model.endswith(".gguf")
        if looks_local and not os.path.exists(os.path.expanduser(source)):
            return [
                f"TransformersLLM model {self.model!r} is not a file or directory here; pass an existing path or a"
                " Hub repo id."
            ]
        problems = []
        # transformers dequantizes GGUF files with `gguf` and places layers (device_map) with `accelerate`.
        needed = (["gguf", "accelerate"] if gguf_file is not None else []) + (["accelerate"] if self.device_map else [])
        missing = sorted({name for name in needed if not is_installed(name)})
        if missing:
            why = "is a GGUF file" if gguf_file is not None else "has a device_map"
            problems.append(
                f"TransformersLLM model {self.model!r} {why}, which needs {' and '.join(missing)}, not installed here:"
                f" {INSTALL_HINT}."
            )
        if self._wants_gpu():
            import torch

            if not torch.cuda.is_available():
                problems.append(
                    f"TransformersLLM model {self.model!r} asks for device {self.device!r}, but torch sees no CUDA GPU"
                    " here; run on a GPU machine with a CUDA build of torch, or set device='cpu'."
                )
        return problems

    def load(self) -> None:
        not_installed = self._not_installed()
        if not_installed:
            raise ImportError(not_installed)
        problems = self.check_ready()
        if problems:
            raise RuntimeError(problems[0])
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.n_threads is not None:
            torch.set_num_threads(self.n_threads)
        source, gguf_file = self._source()
        token = self.token.get_secret_value() if self.token is not None else None
        common: Dict[str, Any] = {
            "revision": self.revision, "trust_remote_code": self.trust_remote_code, "token": token
        }
        tokenizer_options = dict(common, use_fast=self.use_fast)
        if gguf_file is not None:
            common["gguf_file"] = gguf_file
            if self.tokenizer is None:  # the GGUF file carries the tokenizer too
                tokenizer_options["gguf_file"] = gguf_file
        self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer or source, **tokenizer_options)
        if self.chat_template is not None:
            self._tokenizer.chat_template = self.chat_template
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=self.torch_dtype, device_map=self.device_map, **common, **(self.model_kwargs or {})
        )
        if self.device_map is None:
            model.to(f"cuda:{self.device}" if isinstance(self.device, int) else (self.device or "cpu"))
        self._model = model.eval()
        # One model object runs one generation at a time (and owns torch's random state while it does).
        self._lock = threading.Lock()

    def unload(self) -> None:
        self._model = None
        self._tokenizer = None

    def prepare_input(self, input: FormattedInput) -> str:
        """The prompt text: a chat through the chat template, a string as it is."""
        return input if isinstance(input, str) else render_chat(self._tokenizer, input)

    def generate(  # type: ignore[override]
        self,
        inputs: List[FormattedInput],
        num_generations: int = 1,
        max_new_tokens: int = 128,
        temperature: float = 0.1,
        repetition_penalty: float = 1.1,
        top_p: float = 1.0,
        top_k: int = 0,
        do_sample: bool = True,
        stop: Optional[Union[str, List[str]]] = None,
        seed: Optional[int] = None,
    ) -> List[GenerateOutput]:
        """``num_generations`` answers for each input. A ``temperature`` of 0 (or ``do_sample=False``) is greedy
        decoding; ``stop`` ends an answer before the first stop string; ``seed`` varies calls that share a
        prompt."""
        if self._model is None:
            self.load()
        import torch

        stops = [stop] if isinstance(stop, str) else list(stop or [])
        sample = do_sample and temperature > 0
        options: Dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": sample,
            "repetition_penalty": repetition_penalty,
            # Greedy decoding gives one answer however often it is asked: it runs once and is copied.
            "num_return_sequences": num_generations if sample else 1,
            "pad_token_id": self._pad_token_id(),
        }
        if sample:
            options.update(temperature=temperature, top_p=top_p, top_k=top_k)
        if stops:
            options.update(stop_strings=stops, tokenizer=self._tokenizer)
        device = self._model.device
        outputs: List[GenerateOutput] = []
        for input in inputs:
            encoded = self._tokenizer(
                self.prepare_input(input), return_tensors="pt", add_special_tokens=isinstance(input, str)
            ).to(device)
            prompt_length = int(encoded["input_ids"].shape[1])
            cuda_devices = [device] if device.type == "cuda" else []
            with self._lock, request_in_flight(), torch.random.fork_rng(devices=cuda_devices), torch.inference_mode():
                torch.manual_seed(prompt_seed(self.seed, seed, input))
                sequences = self._model.generate(**encoded, **options)
            answers = [self._finish(row[prompt_length:].tolist(), max_new_tokens, stops) for row in sequences]
            if not sample:
                answers = answers[:1] * num_generations
            outputs.append(
                {
                    "generations": [text for text, _, _ in answers],
                    "statistics": {
                        "input_tokens": [prompt_length], "output_tokens": [count for _, count, _ in answers]
                    },
                    "finish_reasons": [reason for _, _, reason in answers],
                }
            )
        return outputs

    def _end_token_ids(self) -> List[int]:
        eos = self._model.generation_config.eos_token_id
        if eos is None:
            eos = self._tokenizer.eos_token_id
        return [eos] if isinstance(eos, int) else list(eos or [])

    def _pad_token_id(self) -> Optional[int]:
        if self._tokenizer.pad_token_id is not None:
            return self._tokenizer.pad_token_id
        ends = self._end_token_ids()
        return ends[0] if ends else None

    def _finish(self, tokens: List[int], max_new_tokens: int, stops: Sequence[str]) -> Tuple[str, int, str]:
        """``(text, tokens generated, finish reason)`` of one returned sequence: it ends at its first end-of-text
        (or padding) token, else it ran to ``max_new_tokens``; a stop string and what follows it are cut off."""
        ends = set(self._end_token_ids())
        padding = self._pad_token_id()
        end = next((i for i, token in enumerate(tokens) if token in ends or token == padding), None)
        if end is None:
            generated, count = tokens, len(tokens)
            reason = "length" if count >= max_new_tokens else "stop"
        else:
            generated, count, reason = tokens[:end], end + (1 if tokens[end] in ends else 0), "stop"
        text = self._tokenizer.decode(generated, skip_special_tokens=True)
        cuts = [text.find(s) for s in stops if s and s in text]
        if cuts:
            text, reason = text[: min(cuts)], "stop"
        return text, count, reason

    def redact(self, text: str) -> str:
        secret = self.token.get_secret_value() if self.token is not None else None
        return text.replace(secret, "**********") if secret and len(secret) >= 8 else text
