"""``CohereLLM``: Cohere's Chat API v2 (``POST {base_url}/v2/chat``), posted as JSON with aiohttp.

Example::

    from beam_distil.models import CohereLLM

    llm = CohereLLM(model="command-r-08-2024", generation_kwargs={"temperature": 0.3, "max_tokens": 512})
    private = CohereLLM(model="command-r-08-2024", base_url="https://cohere.internal.example", api_key="...")

Why REST rather than the ``cohere`` SDK (what distilabel 1.5 uses): the request and answer are small JSON
documents, the SDK would be one more dependency on every worker, and its own retries and timeouts would sit
under ours. ``RESTClient`` gives one aiohttp session per client on the process's event loop, and
``AsyncLLM.acall`` retries (``Retry-After`` on 429, backoff on 5xx, timeouts and resets; other 4xx are final).

Configuration, as distilabel's ``CohereLLM`` names it:

- ``base_url``: the API's root, from the argument, else ``COHERE_BASE_URL``, else ``https://api.cohere.com``.
  A trailing ``/v1`` or ``/v2`` is dropped, so distilabel's old default ``https://api.cohere.ai/v1`` still
  reaches ``/v2/chat``.
- ``api_key``: the argument, else ``COHERE_API_KEY`` on the worker (``APIKeyLLM``: a ``SecretStr`` that never
  reaches a repr, a saved pipeline or an error message; a ``gcp-secret://`` reference is read on the worker).
  Sent as ``Authorization: Bearer <key>``.
- ``client_name``: sent as the ``X-Client-Name`` header, as the SDK does.

Generation kwargs carry distilabel's (and Cohere's) names: ``max_tokens``, ``temperature``, ``p``, ``k``,
``seed``, ``stop_sequences``, ``frequency_penalty``, ``presence_penalty``, plus ``safety_mode`` from API v2.
Unset ones are not sent, so Cohere's defaults apply (``max_tokens`` unset is the model's own output limit).
distilabel's ``raw_prompting`` belongs to API v1 and is not accepted.

Cohere's chat has no ``n``: ``num_generations`` > 1 sends that many requests at once, and generation ``i`` gets
``seed + i`` when a seed is given (the same seed would give the same answer ``n`` times). A failure of any of them
fails the call, which is retried whole.

The answer is the ``text`` items of ``message.content``; the output's ``finish_reasons`` holds Cohere's
``finish_reason`` (``COMPLETE``, ``STOP_SEQUENCE``, ``MAX_TOKENS``, ``ERROR``, ``TIMEOUT``...). An answer that
ended in an error (``ERROR``, ``TIMEOUT``, or API v1's ``ERROR_TOXIC``/``ERROR_LIMIT``) is ``None`` with that
reason, even when partial text came with it. Token counts are ``usage.tokens`` (else ``usage.billed_units``).
"""

from __future__ import annotations

import os
import re
from typing import Any, ClassVar, Dict, List, Literal, Optional, Tuple

from pydantic import Field, PositiveFloat, PrivateAttr

from beam_distil.helpers import http_url_problem
from beam_distil.models.api_key import APIKeyLLM
from beam_distil.models.base import FormattedInput, GenerateOutput, generate_each, single_output
from beam_distil.models.event_loop import close_on_loop
from beam_distil.models.rest import MalformedResponseError, RESTClient, classify_http_error
from beam_distil.models.retries import RetryDecision
from beam_distil.runtime_parameters import RuntimeParameter

_BASE_URL_ENV_VAR = "COHERE_BASE_URL"
_DEFAULT_BASE_URL = "https://api.cohere.com"
_MAX_STOP_SEQUENCES = 5
_ROLES = ("system", "user", "assistant")

# Finish reasons meaning the generation went wrong: whatever text came with it is not an answer.
_FAILED_FINISH_REASONS = frozenset({"ERROR", "TIMEOUT", "ERROR_TOXIC", "ERROR_LIMIT", "USER_CANCEL"})


class CohereLLM(APIKeyLLM):
    """Cohere chat (API v2); ``input`` is a list of messages, or a string sent as one user message."""

    api_key_env_var: ClassVar[str] = "COHERE_API_KEY"

    # Cohere's documented ranges for the Chat API v2.
    generation_kwarg_ranges: ClassVar[Dict[str, Tuple[Optional[float], Optional[float]]]] = {
        "max_tokens": (1, None),
        "temperature": (0.0, None),
        "p": (0.01, 0.99),
        "k": (0, 500),
        "seed": (0, None),
        "frequency_penalty": (0.0, 1.0),
        "presence_penalty": (0.0, 1.0),
    }

    model: str = Field(description="Cohere model name, e.g. `command-r-08-2024`, or a fine-tuned model's id.")
    base_url: Optional[RuntimeParameter[str]] = Field(
        default_factory=lambda: os.getenv(_BASE_URL_ENV_VAR, _DEFAULT_BASE_URL),
        description=f"The API's root URL; when not given, `{_BASE_URL_ENV_VAR}`, else `{_DEFAULT_BASE_URL}`.",
    )
    timeout: RuntimeParameter[PositiveFloat] = Field(default=120, description="Seconds before one request attempt times out.")
    client_name: RuntimeParameter[str] = Field(
        default="beam-distil", description="Sent as the `X-Client-Name` header (Cohere's name for the calling project)."
    )

    _aclient: Optional[RESTClient] = PrivateAttr(default=None)

    @property
    def model_name(self) -> str:
        return self.model

    def api_root(self) -> str:
        """``base_url`` without a trailing slash or API version: requests go to ``{api_root}/v2/chat``."""
        return re.sub(r"/v[12]$", "", (self.base_url or "").rstrip("/"))

    def check_ready(self) -> List[str]:
        problems = []
        url_problem = http_url_problem(
            self.base_url, f"base_url {self.base_url!r} of model {self.model!r}",
            _DEFAULT_BASE_URL, "http://127.0.0.1:8080",
        )
        if url_problem:
            problems.append(url_problem)
        return problems + super().check_ready()

    def check_generation_kwarg(self, name: str, value: Any) -> Optional[str]:
        problem = super().check_generation_kwarg(name, value)
        if problem is None and name == "stop_sequences" and value is not None and len(value) > _MAX_STOP_SEQUENCES:
            return f"got {len(value)} sequences: CohereLLM takes at most {_MAX_STOP_SEQUENCES} stop_sequences"
        return problem

    def cache_identity(self) -> Dict[str, Any]:
        # The client's name labels requests; it does not change what the model answers.
        identity = super().cache_identity()
        identity.pop("client_name", None)
        return identity

    def classify_error(self, error: BaseException) -> RetryDecision:
        return classify_http_error(error)

    @staticmethod
    def _estimated_tokens(input: FormattedInput, kwargs: Dict[str, Any]) -> int:
        # For tokens_per_minute: Cohere names the answer's budget `max_tokens`.
        return APIKeyLLM._estimated_tokens(input, {"max_new_tokens": kwargs.get("max_tokens") or 128})

    def load(self) -> None:
        problems = self.check_ready()
        if problems:
            raise ValueError(problems[0])
        headers = {"Authorization": f"Bearer {self.resolve_api_key()}"}
        if self.client_name:
            headers["X-Client-Name"] = self.client_name
        # One attempt per post: retries are AsyncLLM.acall's.
        self._aclient = RESTClient(base_url=self.api_root(), headers=headers, timeout=self.timeout)

    def unload(self) -> None:
        if self._aclient is not None:
            close_on_loop(self._aclient)
        self._aclient = None

    @staticmethod
    def _messages(input: FormattedInput) -> List[Dict[str, Any]]:
        """The chat as API v2 takes it: the same ``role``/``content`` messages, a string as one user message."""
        if isinstance(input, str):
            return [{"role": "user", "content": input}]
        messages = []
        for message in input:
            role = message.get("role")
            if role not in _ROLES:
                raise ValueError(f"CohereLLM takes messages with role {', '.join(_ROLES)}; got role {role!r}")
            messages.append({"role": role, "content": message.get("content")})
        return messages

    async def agenerate(  # type: ignore[override]
        self,
        input: FormattedInput,
        num_generations: int = 1,
        max_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        p: Optional[float] = None,
        k: Optional[int] = None,
        seed: Optional[int] = None,
        stop_sequences: Optional[List[str]] = None,
        frequency_penalty: Optional[float] = None,
        presence_penalty: Optional[float] = None,
        safety_mode: Optional[Literal["CONTEXTUAL", "STRICT", "OFF"]] = None,
        structured_output: Optional[Dict[str, Any]] = None,
    ) -> GenerateOutput:
        """``num_generations`` chat requests (Cohere has no ``n``), sent together.

        ``p`` is nucleus sampling (top-p), ``k`` top-k; ``structured_output`` is a JSON schema the answer must
        follow (sent as ``response_format: {"type": "json_object", "json_schema": ...}``).
        """
        if self._aclient is None:
            self.load()
        body: Dict[str, Any] = {"model": self.model, "messages": self._messages(input), "stream": False}
        optional = {
            "max_tokens": max_tokens,
            "temperature": temperature,
            "p": p,
            "k": k,
            "stop_sequences": stop_sequences,
            "frequency_penalty": frequency_penalty,
            "presence_penalty": presence_penalty,
            "safety_mode": safety_mode,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        if structured_output is not None:
            body["response_format"] = {"type": "json_object", "json_schema": structured_output}

        async def one(index: int) -> GenerateOutput:
            request = body if seed is None else {**body, "seed": seed + index}
            answer = await self._aclient.post("v2/chat", request)  # type: ignore[union-attr]
            return single_output(*_read_answer(answer, self._aclient.base_url))  # type: ignore[union-attr]

        return await generate_each(one(index) for index in range(num_generations))


def _read_answer(answer: Any, url: str) -> Tuple[Optional[str], Optional[str], int, int]:
    """``(text, finish_reason, input_tokens, output_tokens)`` of one ``/v2/chat`` answer."""
    message = answer.get("message") if isinstance(answer, dict) else None
    if not isinstance(message, dict):
        raise MalformedResponseError(f"the answer from {url}/v2/chat has no `message` object: {str(answer)[:200]!r}")
    reason = answer.get("finish_reason")
    texts = [
        item["text"]
        for item in message.get("content") or []
        if isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str)
    ]
    text = "".join(texts) if texts and reason not in _FAILED_FINISH_REASONS else None
    usage = answer.get("usage") or {}
    counts = usage.get("tokens") or usage.get("billed_units") or {}
    return text, reason, int(counts.get("input_tokens") or 0), int(counts.get("output_tokens") or 0)
