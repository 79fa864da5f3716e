"""``AnthropicLLM``: Claude models through Anthropic's Messages API (``POST {base_url}/v1/messages``).

Example::

    from beam_distil.models import AnthropicLLM
    from beam_distil.steps.tasks import TextGeneration

    llm = AnthropicLLM(model="claude-3-5-haiku-latest", generation_kwargs={"max_new_tokens": 512, "temperature": 0.3})
    TextGeneration(llm=llm, system_prompt="Answer in one paragraph.")

    # A private endpoint (an API gateway, a proxy, an Anthropic-compatible server): its root URL, to which
    # /v1/messages is appended; or set ANTHROPIC_BASE_URL where the pipeline is built.
    private = AnthropicLLM(model="claude-3-5-haiku-latest", base_url="https://llm-gateway.internal.example/anthropic")

The key comes from ``api_key`` or, on the worker that makes the client, from ``ANTHROPIC_API_KEY`` (a
``gcp-secret://`` reference works in either); see ``beam_distil.models.api_key``. It is sent as ``x-api-key``
with ``anthropic-version: 2023-06-01``.

Why REST and not the ``anthropic`` SDK (what distilabel uses): the project already posts JSON with aiohttp on
the process's event loop (``models/rest.py``), as ``OpenAILLM`` does for a sixth of its SDK's CPU per request;
the SDK would add a dependency and its own retries, which would have to be turned off so that ``AsyncLLM.acall``
(``Retry-After``, adaptive concurrency) stays the one place that retries.

What the answer becomes: the generation is the text of the answer's ``text`` blocks (or, with
``structured_output``, the JSON of the forced tool call's input); ``finish_reasons`` holds the answer's
``stop_reason`` (``end_turn``, ``max_tokens``, ``stop_sequence``, ``tool_use``, ``refusal``...). A refusal, or an
answer with no text, is a ``None`` generation with that reason, which the task records as a counted failure.

Offline batch generation (``use_offline_batch_generation=True``) sends the same request bodies through Anthropic's
Message Batches API and reads the answers the same way; see ``beam_distil.models.anthropic_batch``.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from typing import Any, ClassVar, Dict, List, Optional, Tuple

from pydantic import Field, PositiveFloat, PrivateAttr, model_validator

from beam_distil.helpers import http_url_problem
from beam_distil.models.api_key import APIKeyLLM
from beam_distil.models.anthropic_batch import AnthropicBatchAPI
from beam_distil.models.base import AsyncLLM, FormattedInput, GenerateOutput, generate_each
from beam_distil.models.event_loop import close_on_loop
from beam_distil.models.offline_batch import DirectOfflineBatchGeneration
from beam_distil.models.rest import HTTPStatusError, MalformedResponseError, RESTClient, classify_http_error
from beam_distil.models.retries import RetryDecision
from beam_distil.runtime_parameters import RuntimeParameter

_BASE_URL_ENV_VAR = "ANTHROPIC_BASE_URL"
_DEFAULT_BASE_URL = "https://api.anthropic.com"
_MESSAGES_PATH = "v1/messages"
API_VERSION = "2023-06-01"
"""The ``anthropic-version`` header: the Messages API's wire format this module speaks."""
STRUCTURED_OUTPUT_TOOL = "structured_output"
"""The name of the tool the model is made to call when the answer must follow a JSON schema."""
_DEFAULT_MAX_TOKENS = 128
_OVERLOADED = 529  # Anthropic's "overloaded_error": the service is at capacity for everyone


class AnthropicLLM(DirectOfflineBatchGeneration, APIKeyLLM):
    """Claude through the Messages API; ``input`` is a list of messages or a single user prompt.

    Parameters as distilabel's ``AnthropicLLM``: ``model``, ``base_url`` (default ``ANTHROPIC_BASE_URL``, else
    ``https://api.anthropic.com``), ``api_key`` (default ``ANTHROPIC_API_KEY`` on the worker), ``timeout`` (seconds
    per attempt) and ``max_retries``, plus ``AsyncLLM``'s limits (``max_concurrency``, ``requests_per_minute``...).
    distilabel's ``http_client`` does not apply: requests go through this project's own aiohttp session, made on
    each worker (proxies come from ``HTTPS_PROXY``/``NO_PROXY``), so passing one is an error.

    Generation kwargs: ``max_new_tokens`` (or distilabel's name ``max_tokens``; default 128), ``temperature``,
    ``top_p``, ``top_k``, ``stop_sequences``; see ``agenerate``.
    """

    api_key_env_var: ClassVar[str] = "ANTHROPIC_API_KEY"
    one_request_per_generation: ClassVar[bool] = True  # the Messages API has no `n`
    supports_offline_batch_generation: ClassVar[bool] = True  # the Message Batches API

    # The Messages API's documented ranges.
    generation_kwarg_ranges: ClassVar[Dict[str, Tuple[Optional[float], Optional[float]]]] = {
        "max_new_tokens": (1, None),
        "max_tokens": (1, None),
        "temperature": (0.0, 1.0),
        "top_p": (0.0, 1.0),
        "top_k": (0, None),
    }

    model: str = Field(description="Claude model name, e.g. `claude-3-5-haiku-latest`.")
    base_url: Optional[RuntimeParameter[str]] = Field(
        default_factory=lambda: os.getenv(_BASE_URL_ENV_VAR, _DEFAULT_BASE_URL),
        description=f"The API's root URL (`/{_MESSAGES_PATH}` is appended); when not given, `{_BASE_URL_ENV_VAR}`,"
        f" else `{_DEFAULT_BASE_URL}`.",
    )
    timeout: RuntimeParameter[PositiveFloat] = Field(
        default=600, description="Seconds before one request attempt times out."
    )

    _aclient: Optional[RESTClient] = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _refuse_http_client(cls, data: Any) -> Any:
        if isinstance(data, dict) and "http_client" in data:
            if data["http_client"] is not None:
                raise ValueError(
                    "AnthropicLLM takes no `http_client`: it makes its own aiohttp session on each worker. Remove"
                    " it; for a proxy set HTTPS_PROXY (and NO_PROXY), for another endpoint pass `base_url`."
                )
            data = {key: value for key, value in data.items() if key != "http_client"}
        return data

    @property
    def model_name(self) -> str:
        return self.model

    def _base_url(self) -> str:
        return self.base_url or _DEFAULT_BASE_URL

    def check_ready(self) -> List[str]:
        problems = []
        base_url = self._base_url()
        url_problem = http_url_problem(
            base_url, f"base_url {base_url!r} of AnthropicLLM model {self.model!r}",
            _DEFAULT_BASE_URL, "http://127.0.0.1:8080",
        )
        if url_problem:
            problems.append(url_problem)
        elif urllib.parse.urlsplit(base_url).path.rstrip("/").endswith(f"/{_MESSAGES_PATH}"):
            root = base_url.rstrip("/")[: -len(f"/{_MESSAGES_PATH}")]
            problems.append(
                f"base_url {base_url!r} of AnthropicLLM model {self.model!r} already ends with /{_MESSAGES_PATH},"
                f" which the client appends itself; give the root, e.g. {root!r}"
            )
        kwargs = self.generation_kwargs or {}
        try:
            _max_tokens(kwargs.get("max_new_tokens"), kwargs.get("max_tokens"))
        except ValueError as error:
            problems.append(str(error))
        return problems + super().check_ready()

    def _new_client(self) -> RESTClient:
        # The key is read here, on the worker: from the environment or Secret Manager, it never travels in the job
        # graph. One attempt per call: the retries are AsyncLLM.acall's (Retry-After, overload, adaptive
        # concurrency) online, and the batch engine's offline.
        return RESTClient(
            base_url=self._base_url(),
            headers={"x-api-key": self._resolved_key or self.resolve_api_key(), "anthropic-version": API_VERSION},
            timeout=self.timeout,
        )

    def load(self) -> None:
        self._resolved_key = None  # read again: a rotated key is picked up by the next load
        self._aclient = self._new_client()

    def offline_batch_api(self) -> AnthropicBatchAPI:
        """The Message Batches API with this LLM's key, ``base_url`` and ``timeout``, reading and writing the
        same request bodies and answers as ``agenerate`` (see ``beam_distil.models.anthropic_batch``)::

            llm = AnthropicLLM(model="claude-3-5-haiku-latest", use_offline_batch_generation=True)
            llm.load()
            api = llm.offline_batch_api()    # closed with `await api.close()`
        """
        if self._aclient is None:
            self.load()
        return AnthropicBatchAPI(self, self._new_client())

    def unload(self) -> None:
        if self._aclient is not None:
            close_on_loop(self._aclient)
        self._aclient = None

    def classify_error(self, error: BaseException) -> RetryDecision:
        if isinstance(error, HTTPStatusError) and error.status == _OVERLOADED:
            # Overloaded is not this client's quota, but sending less helps it pass: adapt concurrency down too.
            return RetryDecision(retryable=True, retry_after=error.retry_after, rate_limited=True)
        return classify_http_error(error)

    @staticmethod
    def _estimated_tokens(input: FormattedInput, kwargs: Dict[str, Any]) -> int:
        limit = kwargs.get("max_tokens") or kwargs.get("max_new_tokens") or _DEFAULT_MAX_TOKENS
        return AsyncLLM._estimated_tokens(input, {"max_new_tokens": limit})

    def request_body(
        self,
        input: FormattedInput,
        max_new_tokens: Optional[int] = None,
        max_tokens: Optional[int] = None,
        stop_sequences: Optional[List[str]] = None,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        top_k: Optional[int] = None,
        structured_output: Optional[Dict[str, Any]] = None,
    ) -> Dict[str, Any]:
        """The Messages API body asking for one answer to ``input`` (the generation kwargs as in ``agenerate``),
        the same online and in a batch::

            llm.request_body("Hi", max_new_tokens=64)
            # {"model": "claude-3-5-haiku-latest", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}

        Raises ``ValueError`` for an input or kwargs the API cannot take (a ``tool`` role, conflicting limits).
        """
        system, messages = _system_and_messages(input)
        body: Dict[str, Any] = {
            "model": self.model,
            "max_tokens": _max_tokens(max_new_tokens, max_tokens),
            "messages": messages,
        }
        optional = {
            "system": system,
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "stop_sequences": stop_sequences,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        if structured_output is not None:
            input_schema, _ = _tool_input_schema(structured_output)
            body["tools"] = [
                {
                    "name": STRUCTURED_OUTPUT_TOOL,
                    "description": "Record the answer, as JSON following the input schema.",
                    "input_schema": input_schema,
                }
            ]
            body["tool_choice"] = {"type": "tool", "name": STRUCTURED_OUTPUT_TOOL}
        return body

    def output_of_message(
        self, message: Any, structured_output: Optional[Dict[str, Any]] = None, *, source: str = "the API"
    ) -> GenerateOutput:
        """One generation from a Messages API answer to a request made with ``structured_output`` (see the module
        docstring), online or in a batch. Raises ``MalformedResponseError``, naming ``source``, for an answer
        that is not a message."""
        if not isinstance(message, dict) or not isinstance(message.get("content"), list):
            raise MalformedResponseError(
                f"the answer from {source} is not a message (no `content` list): {str(message)[:200]}"
            )
        blocks = [block for block in message["content"] if isinstance(block, dict)]
        stop_reason = message.get("stop_reason")
        text: Optional[str] = None
        if structured_output is not None:
            _, wrapped = _tool_input_schema(structured_output)
            calls = [b for b in blocks if b.get("type") == "tool_use" and b.get("name") == STRUCTURED_OUTPUT_TOOL]
            call = calls[0] if calls else None
            if call is not None and isinstance(call.get("input"), dict):
                value = call["input"].get("value") if wrapped else call["input"]
                text = json.dumps(value, ensure_ascii=False)
        else:
            texts = [b["text"] for b in blocks if b.get("type") == "text" and isinstance(b.get("text"), str)]
            text = "".join(texts) if texts else None
        if stop_reason == "refusal":
            # Whatever came before the refusal is not an answer.
            text = None
        usage = message.get("usage") or {}
        # Prompt-cache reads and writes are input the model read too (and what the token limits count).
        input_tokens = sum(
            usage.get(key) or 0 for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        return {
            "generations": [text],
            "statistics": {"input_tokens": [input_tokens], "output_tokens": [usage.get("output_tokens") or 0]},
            "finish_reasons": [stop_reason],
        }

    async def agenerate(  # type: ignore[override]
        self,
        input: FormattedInput,
        num_generations: int = 1,
        max_new_tokens: Optional[int] = None,
        max_tokens: Optional[int] = None,
        stop_sequences: Optional[List[str]] = None,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        top_k: Optional[int] = None,
        structured_output: Optional[Dict[str, Any]] = None,
    ) -> GenerateOutput:
        """``num_generations`` answers to one input, one request each, sent together (one attempt, no retries).

        ``max_new_tokens`` is the API's required ``max_tokens`` (distilabel's name for it is accepted too; the two
        must agree when both are given), 128 when neither is. ``temperature``, ``top_p``, ``top_k`` and
        ``stop_sequences`` are sent only when given: the API's defaults apply otherwise, and recent models refuse
        ``temperature`` together with ``top_p``. ``structured_output`` is a JSON schema the answer must follow: the
        model is made to call a tool whose input has that schema, and the generation is that input as JSON.
        """
        if self._aclient is None:
            self.load()
        body = self.request_body(
            input,
            max_new_tokens=max_new_tokens,
            max_tokens=max_tokens,
            stop_sequences=stop_sequences,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            structured_output=structured_output,
        )
        source = f"{self._base_url()}/{_MESSAGES_PATH}"

        async def one_answer() -> GenerateOutput:
            answer = await self._aclient.post(_MESSAGES_PATH, body)  # type: ignore[union-attr]
            return self.output_of_message(answer, structured_output, source=source)

        if num_generations == 1:
            return await one_answer()
        return await generate_each(one_answer() for _ in range(num_generations))


def _max_tokens(max_new_tokens: Optional[int], max_tokens: Optional[int]) -> int:
    """The request's ``max_tokens`` from the project's name and distilabel's, which must agree when both are set."""
    if max_new_tokens is not None and max_tokens is not None and max_new_tokens != max_tokens:
        raise ValueError(
            f"AnthropicLLM got max_new_tokens={max_new_tokens} and max_tokens={max_tokens}, two names for the same"
            " limit; keep one of them in generation_kwargs"
        )
    for value in (max_tokens, max_new_tokens):
        if value is not None:
            return value
    return _DEFAULT_MAX_TOKENS


def _system_and_messages(input: FormattedInput) -> Tuple[Optional[str], List[Dict[str, Any]]]:
    """(the top-level ``system`` text, the user/assistant ``messages``) from a chat or a single prompt."""
    if isinstance(input, str):
        return None, [{"role": "user", "content": input}]
    system: List[str] = []
    messages: List[Dict[str, Any]] = []
    for message in input:
        role = message.get("role")
        content = message.get("content")
        if role == "system":
            system.append(content if isinstance(content, str) else ("" if content is None else str(content)))
        elif role in ("user", "assistant"):
            # A string or a list of content blocks: both are the API's own forms.
            messages.append({"role": role, "content": content})
        else:
            raise ValueError(
                f"AnthropicLLM got a message with role {role!r}; the Messages API takes system, user and assistant"
            )
    if not messages:
        raise ValueError(
            "AnthropicLLM got a chat with no user or assistant message; the Messages API needs at least one"
        )
    return ("\n\n".join(system) if system else None), messages


def _tool_input_schema(schema: Dict[str, Any]) -> Tuple[Dict[str, Any], bool]:
    """(the forced tool's ``input_schema``, whether the answer is wrapped): a tool's input is always an object,
    so another schema (an array, a union...) becomes the ``value`` property of one, its definitions kept at the
    root where its ``$ref``s point."""
    if schema.get("type") == "object":
        return schema, False
    definitions = {key: schema[key] for key in ("$defs", "definitions") if key in schema}
    inner = {key: value for key, value in schema.items() if key not in definitions}
    return {"type": "object", "properties": {"value": inner}, "required": ["value"], **definitions}, True
