"""``OllamaLLM``: a model served by Ollama, through its native API (``POST {host}/api/chat``, ``/api/generate``).

Example::

    from beam_distil.models import OllamaLLM

    llm = OllamaLLM(model="llama3.2", generation_kwargs={"temperature": 0.7, "max_new_tokens": 256})
    remote = OllamaLLM(model="qwen2.5:7b", host="https://ollama.internal.example", timeout=600)

Why REST rather than the ``ollama`` package (what distilabel 1.5 uses): the API is two small JSON endpoints, and
``RESTClient`` gives one aiohttp session per client on the process's event loop with our retries
(``AsyncLLM.acall``: 5xx such as a full queue's 503, timeouts and resets are retried; a 404 for a model that is
not pulled is final). No API key: Ollama has none.

``host``, as distilabel's ``OllamaLLM`` names it: the argument, else ``OLLAMA_HOST`` on the worker, else
``http://localhost:11434``. Like the ``ollama`` package, a host without a scheme is ``http://`` and, without a
port, port 11434 (``OLLAMA_HOST=0.0.0.0:11434`` works as it does there); a path is kept, for a reverse proxy.

Inputs:

- a list of messages goes to ``/api/chat`` as it is;
- a string is a **raw completion**: ``/api/generate`` with ``prompt`` and ``raw: true``, so Ollama applies no
  chat template and the model continues the text as given (what Magpie's pre-query prompts need, and what a
  string means for ``OpenAILLM`` and ``LlamaCppLLM``). To send one user message, pass
  ``[{"role": "user", "content": text}]``.

Generation kwargs: distilabel's ``options`` (any of Ollama's model options), ``format`` (``"json"``) and
``keep_alive``, plus the common options by name, which are put into ``options``: ``max_new_tokens`` (as
``num_predict``), ``temperature``, ``top_p``, ``top_k``, ``min_p``, ``repeat_penalty``, ``presence_penalty``,
``frequency_penalty``, ``seed``, ``stop``. An option given by name wins over the same one in ``options``; unset
ones are not sent, so the model's own defaults apply. ``structured_output`` (a JSON schema) is sent as ``format``.

Ollama has no ``n``: ``num_generations`` > 1 sends that many requests at once, and generation ``i`` gets
``seed + i`` when a seed is given. The answer is ``message.content`` (``response`` for a raw completion); the
output's ``finish_reasons`` holds ``done_reason`` (``stop``, ``length``...), and token counts are
``prompt_eval_count`` and ``eval_count``.
"""

from __future__ import annotations

import os
import re
from typing import Any, ClassVar, Dict, List, Literal, Optional, Tuple, Union

from pydantic import Field, PositiveFloat, PrivateAttr, field_validator

from beam_distil.helpers import http_url_problem
from beam_distil.models.base import AsyncLLM, FormattedInput, GenerateOutput, generate_each, single_output
from beam_distil.models.event_loop import close_on_loop
from beam_distil.models.rest import MalformedResponseError, RESTClient, classify_http_error
from beam_distil.models.retries import RetryDecision
from beam_distil.runtime_parameters import RuntimeParameter

_HOST_ENV_VAR = "OLLAMA_HOST"
_DEFAULT_HOST = "http://localhost:11434"
_DEFAULT_PORT = 11434


def ollama_url(host: str) -> str:
    """``host`` as a URL, read as the ``ollama`` package reads it: ``http://`` and port 11434 when not given."""
    host = host.strip().rstrip("/")
    if "://" in host:
        return host
    address, slash, path = host.partition("/")
    if address.startswith(":"):
        address = f"localhost{address}"
    if not re.search(r":\d+$", address):
        address = f"{address or 'localhost'}:{_DEFAULT_PORT}"
    return f"http://{address}{slash}{path}"


class OllamaLLM(AsyncLLM):
    """An Ollama model; ``input`` is a list of messages (chat) or a string (raw completion)."""

    completes_raw_text: ClassVar[bool] = True  # a string goes to /api/generate with raw: true

    # llama.cpp's sampler bounds, which Ollama passes its options to.
    generation_kwarg_ranges: ClassVar[Dict[str, Tuple[Optional[float], Optional[float]]]] = {
        "max_new_tokens": (1, None),
        "temperature": (0.0, None),
        "top_p": (0.0, 1.0),
        "top_k": (0, None),
        "min_p": (0.0, 1.0),
        "repeat_penalty": (0.0, None),
    }

    model: str = Field(description="The model as Ollama names it, e.g. `llama3.2` or `qwen2.5:7b`.")
    host: Optional[RuntimeParameter[str]] = Field(
        default=None,
        description=f"The Ollama server; when not given, `{_HOST_ENV_VAR}` on the worker, else `{_DEFAULT_HOST}`.",
    )
    timeout: RuntimeParameter[PositiveFloat] = Field(default=120, description="Seconds before one request attempt times out.")
    follow_redirects: bool = Field(
        default=True, description="Follow HTTP redirects (only `True` is supported; kept for distilabel's configs)."
    )

    _aclient: Optional[RESTClient] = PrivateAttr(default=None)

    @field_validator("follow_redirects")
    @classmethod
    def _redirects_are_followed(cls, value: bool) -> bool:
        if not value:
            raise ValueError(
                "OllamaLLM always follows redirects (its HTTP client does); follow_redirects=False is not supported."
                " Remove it, or point `host` at the address that answers."
            )
        return value

    @property
    def model_name(self) -> str:
        return self.model

    def _host_setting(self) -> Tuple[str, str]:
        """The host as configured and where it came from (for messages)."""
        if self.host:
            return self.host, "host"
        if os.getenv(_HOST_ENV_VAR):
            return os.environ[_HOST_ENV_VAR], f"host (from {_HOST_ENV_VAR})"
        return _DEFAULT_HOST, "host"

    def server_url(self) -> str:
        """The server's URL, from ``host``, ``OLLAMA_HOST`` or the default."""
        return ollama_url(self._host_setting()[0])

    def check_ready(self) -> List[str]:
        setting, source = self._host_setting()
        problem = http_url_problem(
            ollama_url(setting), f"{source} {setting!r} of model {self.model!r}",
            _DEFAULT_HOST, "https://ollama.example.com",
        )
        return [problem] if problem else []

    def classify_error(self, error: BaseException) -> RetryDecision:
        return classify_http_error(error)

    @staticmethod
    def _estimated_tokens(input: FormattedInput, kwargs: Dict[str, Any]) -> int:
        # For tokens_per_minute: max_new_tokens may be None here (unset: the model's default budget).
        return AsyncLLM._estimated_tokens(input, {"max_new_tokens": kwargs.get("max_new_tokens") or 128})

    def load(self) -> None:
        problems = self.check_ready()
        if problems:
            raise ValueError(problems[0])
        # One attempt per post: retries are AsyncLLM.acall's.
        self._aclient = RESTClient(base_url=self.server_url(), timeout=self.timeout)

    def unload(self) -> None:
        if self._aclient is not None:
            close_on_loop(self._aclient)
        self._aclient = None

    async def agenerate(  # type: ignore[override]
        self,
        input: FormattedInput,
        num_generations: int = 1,
        max_new_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        top_k: Optional[int] = None,
        min_p: Optional[float] = None,
        repeat_penalty: Optional[float] = None,
        presence_penalty: Optional[float] = None,
        frequency_penalty: Optional[float] = None,
        seed: Optional[int] = None,
        stop: Optional[Union[str, List[str]]] = None,
        options: Optional[Dict[str, Any]] = None,
        format: Literal["", "json"] = "",
        keep_alive: Optional[Union[str, float]] = None,
        structured_output: Optional[Dict[str, Any]] = None,
    ) -> GenerateOutput:
        """``num_generations`` requests (Ollama has no ``n``), sent together.

        ``options`` holds any of Ollama's model options (``num_ctx``, ``mirostat``...); the named kwargs go into it
        and win over the same option there. ``format="json"`` asks for any JSON; ``structured_output`` is a JSON
        schema the answer must follow (sent as ``format``). ``keep_alive`` is how long the model stays loaded
        (``"5m"``, or seconds).
        """
        if self._aclient is None:
            self.load()
        named = {
            "num_predict": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "min_p": min_p,
            "repeat_penalty": repeat_penalty,
            "presence_penalty": presence_penalty,
            "frequency_penalty": frequency_penalty,
            "seed": seed,
            "stop": [stop] if isinstance(stop, str) else stop,
        }
        merged = {**(options or {}), **{key: value for key, value in named.items() if value is not None}}
        raw = isinstance(input, str)
        body: Dict[str, Any] = {"model": self.model, "stream": False}
        body.update({"prompt": input, "raw": True} if raw else {"messages": input})
        if structured_output is not None:
            body["format"] = structured_output
        elif format:
            body["format"] = format
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        path = "api/generate" if raw else "api/chat"

        async def one(index: int) -> GenerateOutput:
            generation_options = dict(merged)
            if generation_options.get("seed") is not None:
                generation_options["seed"] += index
            request = {**body, "options": generation_options} if generation_options else body
            answer = await self._aclient.post(path, request)  # type: ignore[union-attr]
            return single_output(*_read_answer(answer, raw, f"{self._aclient.base_url}/{path}"))  # type: ignore[union-attr]

        return await generate_each(one(index) for index in range(num_generations))


def _read_answer(answer: Any, raw: bool, url: str) -> Tuple[Optional[str], Optional[str], int, int]:
    """``(text, done_reason, prompt tokens, generated tokens)`` of one ``/api/chat`` or ``/api/generate`` answer."""
    if raw:
        text = answer.get("response") if isinstance(answer, dict) else None
        shape = "`response` string"
    else:
        message = answer.get("message") if isinstance(answer, dict) else None
        text = message.get("content") if isinstance(message, dict) else None
        shape = "`message.content` string"
    if not isinstance(text, str):
        raise MalformedResponseError(f"the answer from {url} has no {shape}: {str(answer)[:200]!r}")
    return text, answer.get("done_reason"), int(answer.get("prompt_eval_count") or 0), int(answer.get("eval_count") or 0)
