"""Services that speak OpenAI's chat completions API: ``TogetherLLM``, ``AnyscaleLLM``, ``GroqLLM``, ``MistralLLM``
and ``ClientvLLM`` (a vLLM server), with distilabel's names and parameters.

Each is an :class:`~beam_distil.models.openai.OpenAILLM` with the service's base URL, the environment variable its
key is read from, and what its API takes in the request body; everything else is OpenAILLM's: the REST client,
retries (``Retry-After``, 5xx, malformed bodies), client limits, the response cache, JSON-schema structured output,
token counts, and keys that never reach a repr, a saved pipeline or an error message::

    from beam_distil.models import GroqLLM, MistralLLM, TogetherLLM, ClientvLLM

    TogetherLLM(model="meta-llama/Llama-3.3-70B-Instruct-Turbo")       # key from TOGETHER_API_KEY
    GroqLLM(model="llama-3.1-8b-instant")                                # key from GROQ_API_KEY
    MistralLLM(model="mistral-small-latest", generation_kwargs={"random_seed": 7, "safe_prompt": True})
    ClientvLLM(base_url="http://10.0.0.5:8000/v1", model="Qwen/Qwen2.5-7B-Instruct",
               generation_kwargs={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.05})

    # A private deployment or gateway speaking the same API: its URL (and, for the hosted services, its key).
    TogetherLLM(model="my-model", base_url="https://llm-gateway.internal.example/together/v1")

What differs from OpenAI's API, and is handled here:

* **Groq** returns one choice per request (``n`` must be 1), so ``num_generations`` > 1 is that many requests,
  each retried on its own. It has no text completions endpoint: a string input is refused before any request.
* **Mistral** takes ``random_seed`` (not ``seed``) and ``safe_prompt``, no ``logprobs``, temperatures up to 1.5,
  and has no text completions endpoint. Everything else (URL scheme, Bearer key, ``n``, ``response_format`` with
  a JSON schema, the answer's ``choices`` and ``usage``, error statuses) is OpenAI's, so ``MistralLLM`` is an
  ``OpenAILLM`` whose body is adjusted rather than a client of its own.
* **vLLM** takes sampling parameters OpenAI's API has not (``top_k``, ``min_p``, ``repetition_penalty``...) as
  top-level body fields, needs no key unless the server was started with ``--api-key``, and has no default URL.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any, ClassVar, Dict, List, Optional, Tuple, Union

from pydantic import Field, SecretStr, field_validator, model_validator

from beam_distil.helpers import http_url_problem
from beam_distil.models.base import FormattedInput, GenerateOutput
from beam_distil.models.openai import OpenAILLM
from beam_distil.runtime_parameters import RuntimeParameter

_Ranges = Dict[str, Tuple[Optional[float], Optional[float]]]


def api_key_field(env_var: str, service: str) -> Any:
    """The ``api_key`` field of a service whose key is read, on the worker, from ``env_var`` when not given."""
    return Field(
        default=None,
        description=f"The {service} API key; when not given, `{env_var}` on the worker. May be a gcp-secret://"
        " reference.",
    )


def with_path_when_bare(url: Optional[str], path: str) -> Optional[str]:
    """``url`` with ``path`` appended when it has none (``https://api.groq.com`` -> ``.../openai/v1``): the form
    in which SDKs take a service's root URL; a URL with a path of its own is kept as it is."""
    if url is None:
        return None
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc and parts.path in ("", "/"):
        return url.rstrip("/") + path
    return url


def refuse_text_completion(llm: OpenAILLM, input: FormattedInput) -> None:
    """Raises for a string input on a service whose API has chat completions only."""
    if isinstance(input, str):
        raise ValueError(
            f"{type(llm).__name__} takes chat messages only: the service has no text completions endpoint for a raw"
            " prompt. Give the task chat messages, or use an LLM that completes raw text (OpenAILLM on a server"
            " with /completions, ClientvLLM, LlamaCppLLM)."
        )


class OpenAICompatibleLLM(OpenAILLM):
    """``OpenAILLM`` for a service that speaks OpenAI's API with defaults of its own (the base of this module's
    classes, of ``AzureOpenAILLM`` and of ``InferenceEndpointsLLM``).

    Subclasses set ``api_key_env_var`` and their ``base_url`` default, and may set:

    * ``one_request_per_generation`` (``AsyncLLM``'s): the service returns one choice per request;
    * ``check_ready``: what the service needs. A key is needed only where ``check_ready`` says so: when none is
      configured and nothing is missing, requests go without ``Authorization`` (a private vLLM or TGI server).

    None of them takes ``use_offline_batch_generation``: OpenAILLM's batch flow is OpenAI's Files and Batches API,
    which these services either lack (vLLM, TGI) or offer with differences of their own (Mistral's batch jobs,
    Together's upload purpose and job objects), or which has not been checked against the service (Groq).
    """

    supports_offline_batch_generation: ClassVar[bool] = False

    def load(self) -> None:
        from beam_distil.models.openai_rest import OpenAIRESTClient
        from beam_distil.secrets import resolve_secret

        problems = self.check_ready()
        if problems:
            raise ValueError(problems[0])
        setting = self._api_key_setting()
        # Resolved here, on the worker: a Secret Manager reference is read with the worker's own identity.
        api_key = self._resolved_key = resolve_secret(setting) if setting else None
        self._aclient = OpenAIRESTClient(timeout=self.timeout, **self.client_options(api_key))  # type: ignore[arg-type]


class TogetherLLM(OpenAICompatibleLLM):
    """Together AI's OpenAI-compatible API (``https://api.together.xyz/v1``), key from ``TOGETHER_API_KEY``.

    Together's own sampling parameters (``top_k``, ``repetition_penalty``, ``min_p``) go in ``extra_body``.
    """

    api_key_env_var: ClassVar[str] = "TOGETHER_API_KEY"

    base_url: Optional[RuntimeParameter[str]] = Field(
        default_factory=lambda: os.getenv("TOGETHER_BASE_URL", "https://api.together.xyz/v1"),
        description="Together's API URL (or `TOGETHER_BASE_URL`); another URL for a gateway in front of it.",
    )
    api_key: Optional[RuntimeParameter[SecretStr]] = api_key_field("TOGETHER_API_KEY", "Together")


class AnyscaleLLM(OpenAICompatibleLLM):
    """Anyscale Endpoints' OpenAI-compatible API (``https://api.endpoints.anyscale.com/v1``), key from
    ``ANYSCALE_API_KEY``. Anyscale discontinued its public shared endpoints in 2024; for an Anyscale deployment of
    your own, set ``base_url`` (or ``ANYSCALE_BASE_URL``) to its OpenAI-compatible URL."""

    api_key_env_var: ClassVar[str] = "ANYSCALE_API_KEY"

    base_url: Optional[RuntimeParameter[str]] = Field(
        default_factory=lambda: os.getenv("ANYSCALE_BASE_URL", "https://api.endpoints.anyscale.com/v1"),
        description="Anyscale's API URL (or `ANYSCALE_BASE_URL`).",
    )
    api_key: Optional[RuntimeParameter[SecretStr]] = api_key_field("ANYSCALE_API_KEY", "Anyscale")


_GROQ_API_PATH = "/openai/v1"


class GroqLLM(OpenAICompatibleLLM):
    """Groq's OpenAI-compatible API (``https://api.groq.com/openai/v1``), key from ``GROQ_API_KEY``.

    ``base_url`` (or ``GROQ_BASE_URL``) may be the root URL, as distilabel and Groq's SDK take it
    (``https://api.groq.com``): ``/openai/v1`` is then appended. Groq returns one choice per request and has no
    text completions; both are handled as the module docstring says.
    """

    api_key_env_var: ClassVar[str] = "GROQ_API_KEY"
    completes_raw_text: ClassVar[bool] = False  # chat completions only
    one_request_per_generation: ClassVar[bool] = True
    generation_kwarg_ranges: ClassVar[_Ranges] = {
        "max_new_tokens": (1, None),
        "temperature": (0.0, 2.0),
        "top_p": (0.0, 1.0),
    }

    base_url: Optional[RuntimeParameter[str]] = Field(
        default_factory=lambda: os.getenv("GROQ_BASE_URL", "https://api.groq.com" + _GROQ_API_PATH),
        description="Groq's API URL (or `GROQ_BASE_URL`); a root URL such as 'https://api.groq.com' gets /openai/v1.",
    )
    api_key: Optional[RuntimeParameter[SecretStr]] = api_key_field("GROQ_API_KEY", "Groq")

    @field_validator("base_url")
    @classmethod
    def _api_path(cls, url: Optional[str]) -> Optional[str]:
        return with_path_when_bare(url, _GROQ_API_PATH)

    async def agenerate(  # type: ignore[override]
        self,
        input: FormattedInput,
        num_generations: int = 1,
        max_new_tokens: int = 128,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop: Optional[Union[str, List[str]]] = None,
        seed: Optional[int] = None,
        response_format: Optional[Dict[str, Any]] = None,
        extra_body: Optional[Dict[str, Any]] = None,
        structured_output: Optional[Dict[str, Any]] = None,
    ) -> GenerateOutput:
        """One chat request (``acall`` sends one per generation). Groq documents ``logprobs`` and the frequency and
        presence penalties as unsupported by its models, so they are not parameters here."""
        refuse_text_completion(self, input)
        return await super().agenerate(
            input,
            num_generations=num_generations,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            response_format=response_format,
            extra_body=extra_body,
            structured_output=structured_output,
        )


class MistralLLM(OpenAICompatibleLLM):
    """Mistral AI's chat completions API (``https://api.mistral.ai/v1``), key from ``MISTRAL_API_KEY``.

    distilabel's ``endpoint`` (the API root, ``https://api.mistral.ai``) and ``max_concurrent_requests`` are
    accepted in the constructor: they are ``base_url`` (with ``/v1``) and ``max_concurrency`` here, which is
    what a saved pipeline holds. ``temperature`` is sent only when given (Mistral's default depends on the model);
    ``random_seed`` (or OpenAI's name, ``seed``) and ``safe_prompt`` are Mistral's own.
    """

    api_key_env_var: ClassVar[str] = "MISTRAL_API_KEY"
    completes_raw_text: ClassVar[bool] = False  # chat completions only
    generation_kwarg_ranges: ClassVar[_Ranges] = {
        "max_new_tokens": (1, None),
        "temperature": (0.0, 1.5),
        "top_p": (0.0, 1.0),
        "frequency_penalty": (-2.0, 2.0),
        "presence_penalty": (-2.0, 2.0),
    }

    base_url: Optional[RuntimeParameter[str]] = Field(
        default="https://api.mistral.ai/v1",
        description="Mistral's API URL (distilabel's `endpoint`); a root URL such as 'https://api.mistral.ai' gets"
        " /v1.",
    )
    api_key: Optional[RuntimeParameter[SecretStr]] = api_key_field("MISTRAL_API_KEY", "Mistral")

    @model_validator(mode="before")
    @classmethod
    def _distilabel_parameter_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for distilabel_name, name in (("endpoint", "base_url"), ("max_concurrent_requests", "max_concurrency")):
            if distilabel_name in data:
                if name in data:
                    raise ValueError(
                        f"MistralLLM got both `{distilabel_name}` (distilabel's name) and `{name}`; keep one of them"
                    )
                data[name] = data.pop(distilabel_name)
        return data

    @field_validator("base_url")
    @classmethod
    def _api_path(cls, url: Optional[str]) -> Optional[str]:
        return with_path_when_bare(url, "/v1")

    async def agenerate(  # type: ignore[override]
        self,
        input: FormattedInput,
        num_generations: int = 1,
        max_new_tokens: int = 128,
        temperature: Optional[float] = None,
        top_p: float = 1.0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        stop: Optional[Union[str, List[str]]] = None,
        random_seed: Optional[int] = None,
        seed: Optional[int] = None,
        safe_prompt: bool = False,
        response_format: Optional[Dict[str, Any]] = None,
        extra_body: Optional[Dict[str, Any]] = None,
        structured_output: Optional[Dict[str, Any]] = None,
    ) -> GenerateOutput:
        """One request for ``num_generations`` choices (Mistral's ``n``). ``seed`` is sent as ``random_seed`` (the
        two must agree when both are given); ``safe_prompt=True`` has Mistral prepend its safety prompt."""
        refuse_text_completion(self, input)
        if seed is not None and random_seed is not None and seed != random_seed:
            raise ValueError(
                f"MistralLLM got seed={seed} and random_seed={random_seed}, two names for the same seed; keep one"
                " of them in generation_kwargs"
            )
        adjustments: Dict[str, Any] = {}
        if temperature is None:
            adjustments["temperature"] = None  # null: Mistral's default for the model
        if random_seed is not None or seed is not None:
            adjustments["random_seed"] = random_seed if random_seed is not None else seed
        if safe_prompt:
            adjustments["safe_prompt"] = True
        return await super().agenerate(
            input,
            num_generations=num_generations,
            max_new_tokens=max_new_tokens,
            temperature=1.0 if temperature is None else temperature,
            top_p=top_p,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
            stop=stop,
            response_format=response_format,
            extra_body={**adjustments, **(extra_body or {})},
            structured_output=structured_output,
        )


class ClientvLLM(OpenAICompatibleLLM):
    """A vLLM server's OpenAI-compatible API (``vllm serve``): ``base_url`` is required, a key only when the
    server was started with ``--api-key``, and vLLM's own sampling parameters are generation kwargs.

    ``model`` is the name the server serves (the model given to ``vllm serve``, or its ``--served-model-name``;
    ``GET {base_url}/models`` lists it). distilabel asked the server for it while loading; beam_distil sends no
    request then, so it must be named: ``model=``, or else ``tokenizer`` (distilabel's parameter, usually the
    same Hub id) is taken as the model's name. The server applies the model's chat template to chat messages;
    a string input is a raw completion (``/completions``), which Magpie uses.
    """

    api_key_env_var: ClassVar[str] = ""
    generation_kwarg_ranges: ClassVar[_Ranges] = {
        **OpenAILLM.generation_kwarg_ranges,
        "temperature": (0.0, None),  # vLLM takes any non-negative temperature
        "top_k": (-1, None),  # -1 (or 0) considers every token
        "min_p": (0.0, 1.0),
    }

    model: str = Field(default="", description="The model's name on the server; defaults to `tokenizer`.")
    base_url: Optional[RuntimeParameter[str]] = Field(
        default=None,
        description="The vLLM server's OpenAI-compatible URL, such as 'http://127.0.0.1:8000/v1' (a root URL gets"
        " /v1).",
    )
    api_key: Optional[RuntimeParameter[SecretStr]] = Field(
        default=None,
        description="The key the server was started with (`--api-key`), if any; none is sent when not given. May be"
        " a gcp-secret:// reference.",
    )
    tokenizer: Optional[str] = Field(
        default=None,
        description="distilabel's tokenizer id, used here as the model's name when `model` is not given (the"
        " server applies the chat template).",
    )
    tokenizer_revision: Optional[str] = Field(
        default=None, description="Accepted from distilabel configs; unused, as the server holds the tokenizer."
    )

    @model_validator(mode="before")
    @classmethod
    def _model_from_tokenizer(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("model") and data.get("tokenizer"):
            data = {**data, "model": data["tokenizer"]}
        return data

    @field_validator("base_url")
    @classmethod
    def _api_path(cls, url: Optional[str]) -> Optional[str]:
        return with_path_when_bare(url, "/v1")

    def check_ready(self) -> List[str]:
        problems = []
        if not self.base_url:
            problems.append(
                "ClientvLLM needs `base_url`, the vLLM server's OpenAI-compatible URL, such as"
                " 'http://127.0.0.1:8000/v1'"
            )
        else:
            problem = http_url_problem(self.base_url, f"ClientvLLM base_url {self.base_url!r}", "http://127.0.0.1:8000/v1")
            if problem:
                problems.append(problem)
        if not self.model:
            where = f" (`GET {self.base_url.rstrip('/')}/models` lists it)" if self.base_url else ""
            problems.append(
                "ClientvLLM needs `model`, the name the vLLM server serves the model under"
                f"{where}: beam_distil does not ask the server while loading; pass model= (or tokenizer=)"
            )
        return problems

    async def agenerate(  # type: ignore[override]
        self,
        input: FormattedInput,
        num_generations: int = 1,
        max_new_tokens: int = 128,
        logprobs: bool = False,
        top_logprobs: Optional[int] = None,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: Optional[int] = None,
        min_p: Optional[float] = None,
        repetition_penalty: Optional[float] = None,
        logit_bias: Optional[Dict[str, int]] = None,
        stop: Optional[Union[str, List[str]]] = None,
        seed: Optional[int] = None,
        response_format: Optional[Dict[str, Any]] = None,
        extra_body: Optional[Dict[str, Any]] = None,
        structured_output: Optional[Dict[str, Any]] = None,
    ) -> GenerateOutput:
        """OpenAILLM's request plus vLLM's sampling parameters, each sent (as a top-level body field, where vLLM
        reads it) only when given, so the server's defaults apply otherwise."""
        sampling = {"top_k": top_k, "min_p": min_p, "repetition_penalty": repetition_penalty, "logit_bias": logit_bias}
        return await super().agenerate(
            input,
            num_generations=num_generations,
            max_new_tokens=max_new_tokens,
            logprobs=logprobs,
            top_logprobs=top_logprobs,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            response_format=response_format,
            extra_body={**{k: v for k, v in sampling.items() if v is not None}, **(extra_body or {})},
            structured_output=structured_output,
        )
