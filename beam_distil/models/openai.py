"""``OpenAILLM``: any OpenAI-compatible chat/completions server.

Requests go out through :class:`~beam_distil.models.openai_rest.OpenAIRESTClient`, which speaks the same REST API as
``openai.AsyncOpenAI`` for a sixth of its CPU per request, and raises the SDK's exception classes.

Example::

    from beam_distil.models import OpenAILLM

    llm = OpenAILLM(model="gpt-4o-mini", generation_kwargs={"temperature": 0.7}, max_concurrency=128)
    local = OpenAILLM(model="my-model", base_url="http://127.0.0.1:8000/v1", api_key="unused")

The API key comes from ``api_key`` or, on the worker that makes the client, from ``OPENAI_API_KEY``; it is a
``SecretStr``, so it never appears in a repr, a saved pipeline or a log line.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar, Dict, List, Optional, Tuple, Union

from pydantic import Field, PositiveFloat, PrivateAttr, SecretStr

from beam_distil.helpers import http_url_problem, secret_digest
from beam_distil.models.base import AsyncLLM, FormattedInput, GenerateOutput
from beam_distil.models.event_loop import close_on_loop
from beam_distil.models.offline_batch import DirectOfflineBatchGeneration
from beam_distil.models.retries import RetryDecision
from beam_distil.runtime_parameters import RuntimeParameter

if TYPE_CHECKING:
    from beam_distil.models.offline_batch import OfflineBatchAPI

_API_KEY_ENV_VAR = "OPENAI_API_KEY"
_BASE_URL_ENV_VAR = "OPENAI_BASE_URL"


class OpenAILLM(DirectOfflineBatchGeneration, AsyncLLM):
    """Chat completions (``input`` is a list of messages) or text completions (``input`` is a string)."""

    completes_raw_text: ClassVar[bool] = True  # a string goes to /completions
    supports_offline_batch_generation: ClassVar[bool] = True  # OpenAI's Batch API (models/openai_batch.py)

    # OpenAI's documented ranges (servers that speak its API take the same).
    generation_kwarg_ranges: ClassVar[Dict[str, Tuple[Optional[float], Optional[float]]]] = {
        "max_new_tokens": (1, None),
        "temperature": (0.0, 2.0),
        "top_p": (0.0, 1.0),
        "frequency_penalty": (-2.0, 2.0),
        "presence_penalty": (-2.0, 2.0),
        "top_logprobs": (0, 20),
    }

    api_key_env_var: ClassVar[str] = _API_KEY_ENV_VAR
    """The environment variable the key is read from when ``api_key`` is not given ("" for none); services that
    speak OpenAI's API with keys of their own override it."""

    model: str = Field(description="Model name as the server knows it.")
    base_url: Optional[RuntimeParameter[str]] = Field(
        default_factory=lambda: os.getenv(_BASE_URL_ENV_VAR, "https://api.openai.com/v1"),
        description="The server's base URL (any OpenAI-compatible server).",
    )
    api_key: Optional[RuntimeParameter[SecretStr]] = Field(
        default=None, description=f"The API key; when not given, `{_API_KEY_ENV_VAR}` on the worker."
    )
    timeout: RuntimeParameter[PositiveFloat] = Field(default=120, description="Seconds before one request attempt times out.")

    _aclient: Any = PrivateAttr(default=None)
    _resolved_key: Optional[str] = PrivateAttr(default=None)

    @property
    def model_name(self) -> str:
        return self.model

    def _api_key_setting(self) -> Optional[str]:
        """The key as configured: the argument, else the environment; possibly a ``gcp-secret://`` reference."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        return os.getenv(self.api_key_env_var) if self.api_key_env_var else None

    def check_ready(self) -> List[str]:
        problems = []
        url_problem = http_url_problem(
            self.base_url, f"base_url {self.base_url!r} of model {self.model!r}",
            "https://api.openai.com/v1", "http://127.0.0.1:8000/v1",
        )
        if url_problem:
            problems.append(url_problem)
        if not self._api_key_setting():
            problems.append(
                f"no API key for model {self.model!r}: pass `api_key=` or set the `{self.api_key_env_var}` environment variable"
            )
        return problems

    def client_fingerprint(self) -> str:
        # Different keys must not share a client; the digest keeps the key itself out of the fingerprint.
        return f"{super().client_fingerprint()}:{secret_digest(self._api_key_setting() or '')}"

    def classify_error(self, error: BaseException) -> RetryDecision:
        import openai

        if isinstance(error, openai.RateLimitError):
            return RetryDecision(retryable=True, retry_after=_retry_after(error.response), rate_limited=True)
        if isinstance(error, openai.APIStatusError):
            retryable = error.status_code in (408, 409) or error.status_code >= 500
            return RetryDecision(retryable=retryable, retry_after=_retry_after(error.response) if retryable else None)
        # Timeouts, resets, and bodies that are not a completion (truncated, not JSON, no choices).
        retryable = isinstance(error, (openai.APIConnectionError, openai.APIResponseValidationError))
        return RetryDecision(retryable=retryable)

    def redact(self, text: str) -> str:
        # A placeholder key such as "x" for a local server is no secret, and replacing it would garble the text.
        for secret in (self._api_key_setting(), self._resolved_key):
            if secret and len(secret) >= 8:
                text = text.replace(secret, "**********")
        return text

    def load(self) -> None:
        from beam_distil.models.openai_rest import OpenAIRESTClient
        from beam_distil.secrets import resolve_secret

        setting = self._api_key_setting()
        if not setting:
            raise ValueError(self.check_ready()[0])
        # Resolved here, on the worker: a Secret Manager reference is read with the worker's own identity.
        api_key = self._resolved_key = resolve_secret(setting)
        # One attempt per post: retries are AsyncLLM.acall's (Retry-After, malformed bodies, adaptive concurrency).
        self._aclient = OpenAIRESTClient(timeout=self.timeout, **self.client_options(api_key))

    def prompts_go_to(self) -> Optional[str]:
        try:  # the URL the client is made with (a service may build it from other settings)
            return self.client_options("")["base_url"]
        except Exception:  # noqa: BLE001 — settings that do not make a URL yet: validation names them
            return self.base_url

    def client_options(self, api_key: str) -> Dict[str, Any]:
        """How the REST client reaches the server: ``base_url``, ``api_key`` (sent as a Bearer token), and
        optional ``headers`` and ``params``. Services with another URL scheme or authentication override it."""
        return {"base_url": self.base_url, "api_key": api_key}

    def offline_batch_api(self) -> "OfflineBatchAPI":
        """OpenAI's Batch API, reached as this LLM reaches the server online: same base URL, key, headers, query
        parameters and timeout (see ``beam_distil.models.openai_batch``)."""
        from beam_distil.models.openai_batch import OpenAIBatchAPI

        if self._aclient is None:
            self.load()
        options = self.client_options(self._resolved_key)  # type: ignore[arg-type]
        return OpenAIBatchAPI(
            self,
            base_url=options["base_url"],
            api_key=options.get("api_key"),
            headers=options.get("headers"),
            params=options.get("params"),
            timeout=self.timeout,
        )

    def unload(self) -> None:
        if self._aclient is not None:
            close_on_loop(self._aclient)
        self._aclient = None

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
        stop: Optional[Union[str, List[str]]] = None,
        seed: Optional[int] = None,
        response_format: Optional[Dict[str, Any]] = None,
        extra_body: Optional[Dict[str, Any]] = None,
        structured_output: Optional[Dict[str, Any]] = None,
    ) -> GenerateOutput:
        """One request returning ``num_generations`` choices (``n``).

        ``structured_output`` is a JSON schema the answer must follow (sent as a ``json_schema`` response format).
        """
        if self._aclient is None:
            self.load()
        path, body = self.request_body(
            input,
            num_generations,
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
            extra_body=extra_body,
            structured_output=structured_output,
        )
        completion = await self._aclient.post(path, body)
        return self.output_of_completion(completion, input, num_generations)

    def request_body(
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
        stop: Optional[Union[str, List[str]]] = None,
        seed: Optional[int] = None,
        response_format: Optional[Dict[str, Any]] = None,
        extra_body: Optional[Dict[str, Any]] = None,
        structured_output: Optional[Dict[str, Any]] = None,
    ) -> Tuple[str, Dict[str, Any]]:
        """``(path, body)`` of the request ``agenerate`` posts for these arguments: ``"chat/completions"`` for chat
        messages, ``"completions"`` for a string. The batch API sends the same body, so an answer is the same
        whichever way it was asked::

            path, body = llm.request_body([{"role": "user", "content": "Hi"}], 2, temperature=0.7)
            # ("chat/completions", {"model": ..., "messages": [...], "n": 2, "temperature": 0.7, ...})
        """
        common: Dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_new_tokens,
            "n": num_generations,
            "frequency_penalty": frequency_penalty,
            "presence_penalty": presence_penalty,
            "temperature": temperature,
            "top_p": top_p,
        }
        optional = {"stop": stop, "seed": seed}
        common.update({key: value for key, value in optional.items() if value is not None})
        if isinstance(input, str):
            body = {"prompt": input, **common}
        else:
            body = {"messages": input, **common}
            if logprobs:
                body["logprobs"] = True
                if top_logprobs is not None:
                    body["top_logprobs"] = top_logprobs
            if structured_output is not None:
                response_format = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": structured_output},
                }
            if response_format is not None:
                body["response_format"] = response_format
        # Like the SDK's extra_body: extra fields for servers that take more than OpenAI's API (vLLM, TGI...).
        body.update(extra_body or {})
        return ("completions" if isinstance(input, str) else "chat/completions"), body

    @staticmethod
    def output_of_completion(completion: Dict[str, Any], input: FormattedInput, num_generations: int) -> GenerateOutput:
        """The ``GenerateOutput`` of a ``chat.completion`` (or ``text_completion``, for a string ``input``) answer
        asked for ``num_generations`` choices, online or in a batch's output file."""
        choices = completion["choices"][:num_generations]
        generations: List[Optional[str]] = []
        finish_reasons: List[Optional[str]] = []
        for choice in choices:
            message = {} if isinstance(input, str) else (choice.get("message") or {})
            generations.append(choice.get("text") if isinstance(input, str) else message.get("content"))
            # A refusal comes as `refusal` text with no content: it is the reason there is no answer.
            refusal = message.get("refusal")
            finish_reasons.append(f"refusal: {refusal}" if refusal else choice.get("finish_reason"))
        # A server may return fewer choices than asked (none at all, say, when a filter drops them): the missing
        # ones are None with the reason, rather than absent.
        missing = num_generations - len(generations)
        generations += [None] * missing
        finish_reasons += [f"the server returned {len(choices)} of {num_generations} choices"] * missing
        usage = completion.get("usage") or {}
        return {
            "generations": generations,
            "statistics": {
                "input_tokens": [usage.get("prompt_tokens") or 0],
                "output_tokens": [usage.get("completion_tokens") or 0],
            },
            "finish_reasons": finish_reasons,
        }


def _retry_after(response: Any) -> Optional[float]:
    """Seconds the server asked to wait (``retry-after-ms`` or ``Retry-After`` in seconds), if it did."""
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return float(value) * scale
            except ValueError:  # an HTTP date: not worth parsing, the backoff applies
                return None
    return None
