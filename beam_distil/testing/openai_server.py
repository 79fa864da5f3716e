"""A local, deterministic OpenAI-compatible HTTP server for tests, benchmarks and demos.

The server speaks enough of the OpenAI REST API (``POST /v1/chat/completions``,
``POST /v1/completions``, ``GET /v1/models``) for the official ``openai`` client to
parse its answers, and can inject faults (latency, HTTP 500/429, hangs, malformed
bodies, failing models) reproducibly from a seed.

Usage::

    import openai
    from beam_distil.testing.openai_server import OpenAICompatibleServer

    with OpenAICompatibleServer(latency=0.05, error_rate_500=0.1, seed=0) as server:
        client = openai.OpenAI(api_key="test", base_url=server.base_url)
        reply = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hello"}]
        )
        assert reply.choices[0].message.content == "tiny: hello"
        print(server.request_count, server.status_counts)

From a shell (runs until Ctrl+C)::

    python -m beam_distil.testing.openai_server --port 8000 --latency 0.2
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Optional, Union

from aiohttp import web

from beam_distil.testing.local_server import LocalHTTPServer

__all__ = ["OpenAICompatibleServer", "Responder", "Answer", "main"]

Responder = Callable[[str, list[dict[str, Any]]], str]
"""``responder(model, messages) -> answer text``."""

Answer = Union[str, Callable[[list[dict[str, Any]]], str]]
"""A fixed answer, or ``callable(messages) -> answer text``."""

MAX_RECORDED_REQUESTS = 100_000

# Fault kinds returned by ``_choose_fault``.
_OK = "ok"
_E500 = "500"
_E429 = "429"
_TIMEOUT = "timeout"
_MALFORMED = "malformed"

_RATE_FIELDS = ("error_rate_500", "error_rate_429", "timeout_rate", "malformed_rate")
_CONFIG_FIELDS = frozenset(
    _RATE_FIELDS
    + (
        "latency",
        "retry_after",
        "hang_seconds",
        "fail_models",
        "fail_first_n",
        "fail_first_n_429",
        "responder",
        "answers",
    )
)


def _count_words(text: str) -> int:
    return len(text.split())


def _content_text(content: Any) -> str:
    """Flatten an OpenAI message ``content`` (a string or a list of parts) to text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return " ".join(texts)
    return str(content)


def _last_user_content(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _format_seconds(seconds: float) -> str:
    # Retry-After is specified as integer seconds; only fall back to a decimal
    # (which the openai client also accepts) when a sub-second value is asked for.
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


class _BadRequest(Exception):
    """Raised while parsing a request body; becomes an OpenAI-shaped HTTP 400."""


class OpenAICompatibleServer(LocalHTTPServer):
    """An in-process OpenAI-compatible server running on a background thread.

    All fault settings are plain attributes and may be changed while the server
    runs (or atomically, several at once, with :meth:`configure`). Random faults
    are drawn from ``random.Random(seed)``: exactly one draw per valid POST, in
    arrival order, so the same seed and the same request sequence give the same
    faults whatever the configuration of the deterministic faults.

    Fault precedence for each valid POST: ``fail_first_n`` (500), then
    ``fail_first_n_429`` (429), then ``fail_models`` (500), then the random
    faults, checked in the order 500, 429, timeout, malformed against one uniform
    draw (so their rates should sum to at most 1). ``latency`` applies to every
    POST, including the ones that fail.

    Answer precedence: ``answers[model]``, then ``responder``, then the default
    ``f"{model}: {last user message}"`` (with `` #{i}`` appended to choice ``i``
    when ``n > 1``). Custom answers are computed once per choice. A completion
    request's prompt is presented to them as ``[{"role": "user", "content": prompt}]``.
    """

    url_path = "/v1"
    thread_name = "openai-server"
    client_max_size = 64 * 1024**2
    # A client that gives up on a hanging request must free its slot (in_flight)
    # instead of leaving the handler asleep for hang_seconds.
    handler_cancellation = True

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        responder: Responder | None = None,
        answers: Mapping[str, Answer] | None = None,
        models: Iterable[str] = ("test-model",),
        latency: float = 0.0,
        error_rate_500: float = 0.0,
        error_rate_429: float = 0.0,
        retry_after: float = 1.0,
        timeout_rate: float = 0.0,
        hang_seconds: float = 30.0,
        malformed_rate: float = 0.0,
        fail_models: Iterable[str] = (),
        fail_first_n: int = 0,
        fail_first_n_429: int = 0,
        seed: int | None = 0,
        backlog: int = 4096,
        shutdown_timeout: float = 1.0,
    ) -> None:
        super().__init__(host=host, port=port, backlog=backlog, shutdown_timeout=shutdown_timeout)
        self.models: list[str] = list(models)

        self.responder: Responder | None = responder
        self.answers: dict[str, Answer] = dict(answers or {})
        self.latency = latency
        self.error_rate_500 = error_rate_500
        self.error_rate_429 = error_rate_429
        self.retry_after = retry_after
        self.timeout_rate = timeout_rate
        self.hang_seconds = hang_seconds
        self.malformed_rate = malformed_rate
        self.fail_models: set[str] = set(fail_models)
        self.fail_first_n = fail_first_n
        self.fail_first_n_429 = fail_first_n_429
        self._validate()

        # One lock for the RNG and every counter: handlers run on the server's
        # loop thread while tests read and reset from theirs.
        self._lock = threading.Lock()
        self._seed = seed
        self._rng = random.Random(seed)
        self._init_counters()
        self._seq = 0

        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ serving

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._handle_chat)
        app.router.add_post("/v1/completions", self._handle_completions)
        app.router.add_get("/v1/models", self._handle_models)
        # Counters for a client in another process (the benchmark harness runs the server apart, so that
        # the server's CPU is not counted as the pipeline's).
        app.router.add_get("/stats", self._handle_stats)
        app.router.add_delete("/stats", self._handle_reset_stats)

    async def on_stop(self) -> None:
        # Hanging handlers would otherwise hold shutdown for shutdown_timeout.
        for task in list(self._tasks):
            task.cancel()

    # ------------------------------------------------------------- configuration

    def configure(self, **settings: Any) -> None:
        """Change several settings atomically, e.g. ``configure(latency=0.1, error_rate_500=0)``.

        Accepted keys: the constructor's fault and answer arguments
        (``latency``, ``error_rate_500``, ``error_rate_429``, ``retry_after``,
        ``timeout_rate``, ``hang_seconds``, ``malformed_rate``, ``fail_models``,
        ``fail_first_n``, ``fail_first_n_429``, ``responder``, ``answers``).
        """
        unknown = set(settings) - _CONFIG_FIELDS
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        with self._lock:
            previous = {name: getattr(self, name) for name in settings}
            for name, value in settings.items():
                if name == "fail_models":
                    value = set(value)
                elif name == "answers":
                    value = dict(value)
                setattr(self, name, value)
            try:
                self._validate()
            except ValueError:
                for name, value in previous.items():
                    setattr(self, name, value)
                raise

    def set_responder(self, responder: Responder | None) -> None:
        """Replace the fallback answer function (``None`` restores the default)."""
        self.responder = responder

    def set_answer(self, model: str, answer: Answer | None) -> None:
        """Set (or with ``None`` remove) the canned answer for one model."""
        with self._lock:
            if answer is None:
                self.answers.pop(model, None)
            else:
                self.answers[model] = answer

    def reseed(self, seed: int | None) -> None:
        """Restart the fault RNG so the next requests replay a seed's fault sequence."""
        with self._lock:
            self._seed = seed
            self._rng = random.Random(seed)

    @property
    def seed(self) -> int | None:
        return self._seed

    def _validate(self) -> None:
        for name in _RATE_FIELDS:
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {rate!r}")
        for name in ("latency", "retry_after", "hang_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("fail_first_n", "fail_first_n_429"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")

    # ----------------------------------------------------------------- counters

    def _init_counters(self) -> None:
        self._request_count = 0
        self._requests_by_model: dict[str, int] = {}
        self._status_counts: dict[int, int] = {}
        self._in_flight = getattr(self, "_in_flight", 0)
        self._max_in_flight = self._in_flight
        self._requests: list[dict[str, Any]] = []
        self._answered: list[dict[str, Any]] = []
        self._failed_first_500 = 0
        self._failed_first_429 = 0
        self._first_request_at: Optional[float] = None
        self._last_response_at: Optional[float] = None

    def reset_counters(self) -> None:
        """Zero every counter and forget recorded requests.

        Also restarts the ``fail_first_n``/``fail_first_n_429`` budgets. Leaves the
        fault RNG alone (see :meth:`reseed`); ``max_in_flight`` restarts from the
        current ``in_flight``.
        """
        with self._lock:
            self._init_counters()

    @property
    def request_count(self) -> int:
        """POSTs received, valid or not (GET /v1/models is not counted)."""
        with self._lock:
            return self._request_count

    @property
    def requests_by_model(self) -> dict[str, int]:
        with self._lock:
            return dict(self._requests_by_model)

    @property
    def status_counts(self) -> dict[int, int]:
        """HTTP status -> number of POST responses sent (malformed bodies count as 200;
        requests abandoned by their client before answering are not counted)."""
        with self._lock:
            return dict(self._status_counts)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    @property
    def answered_requests(self) -> list[dict[str, Any]]:
        """A copy of the JSON bodies of the requests answered with a well-formed completion, in the order the
        answers were sent (unlike :attr:`requests`, which follows arrival); same recording limit."""
        with self._lock:
            return list(self._answered)

    @property
    def serving_seconds(self) -> float:
        """Seconds from the first POST received to the last answer sent (0 before any answer): the window in
        which a client kept the server busy, so ``request_count / serving_seconds`` is its sustained rate,
        without the client's own start-up and shutdown."""
        with self._lock:
            if self._first_request_at is None or self._last_response_at is None:
                return 0.0
            return max(0.0, self._last_response_at - self._first_request_at)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A copy of the JSON bodies received, oldest first; recording stops after
        ``MAX_RECORDED_REQUESTS`` entries."""
        with self._lock:
            return list(self._requests)

    # ------------------------------------------------------------------ handlers

    async def _handle_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._handle_post(request, chat=True)

    async def _handle_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._handle_post(request, chat=False)

    async def _handle_models(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            names = set(self.models) | set(self.answers) | set(self._requests_by_model)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "beam_distil"}
            for name in sorted(names)
        ]
        return web.json_response({"object": "list", "data": data})

    async def _handle_stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "request_count": self.request_count,
                "max_in_flight": self.max_in_flight,
                "in_flight": self.in_flight,
                "serving_seconds": self.serving_seconds,
                # time.monotonic() of the first request and the last answer (None before), comparable with the
                # clock of any process on this machine: a client can tell its start-up and wind-down apart.
                "first_request_at": self._first_request_at,
                "last_response_at": self._last_response_at,
                "status_counts": {str(k): v for k, v in self.status_counts.items()},
                "requests_by_model": self.requests_by_model,
            }
        )

    async def _handle_reset_stats(self, request: web.Request) -> web.StreamResponse:
        self.reset_counters()
        return web.json_response({"reset": True})

    async def _handle_post(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        with self._lock:
            if self._first_request_at is None:
                self._first_request_at = time.monotonic()
            self._request_count += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            response = await self._process(request, chat=chat)
            with self._lock:
                self._status_counts[response.status] = self._status_counts.get(response.status, 0) + 1
            return response
        finally:
            with self._lock:
                self._in_flight -= 1
                self._last_response_at = time.monotonic()
            if task is not None:
                self._tasks.discard(task)

    async def _process(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        try:
            body = await self._read_body(request)
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise _BadRequest("'model' is required and must be a non-empty string")
        except _BadRequest as exc:
            return _error_response(400, str(exc), "invalid_request_error")

        with self._lock:
            if len(self._requests) < MAX_RECORDED_REQUESTS:
                self._requests.append(body)
            self._requests_by_model[model] = self._requests_by_model.get(model, 0) + 1

        try:
            n, conversations = self._parse_generation_request(body, chat=chat)
        except _BadRequest as exc:
            return _error_response(400, str(exc), "invalid_request_error")

        fault = self._choose_fault(model)
        if self.latency > 0:
            await asyncio.sleep(self.latency)

        if fault == _E500:
            return _error_response(500, "Injected internal server error.", "server_error")
        if fault == _E429:
            retry_after = self.retry_after
            return _error_response(
                429,
                "Injected rate limit, retry later.",
                "requests",
                code="rate_limit_exceeded",
                headers={
                    "Retry-After": _format_seconds(retry_after),
                    "retry-after-ms": str(int(round(retry_after * 1000))),
                },
            )
        if fault == _TIMEOUT:
            # A client with a shorter timeout gives up; a patient one still gets
            # a normal answer afterwards.
            await asyncio.sleep(self.hang_seconds)

        try:
            payload = await self._build_payload(model, n, conversations, chat=chat)
        except Exception as exc:  # the responder is user code: report, don't crash
            return _error_response(
                500, f"responder failed: {type(exc).__name__}: {exc}", "server_error"
            )

        if fault == _MALFORMED:
            text = json.dumps(payload)
            return web.Response(
                status=200, text=text[: len(text) // 2], content_type="application/json"
            )
        response = web.json_response(payload)
        with self._lock:
            if len(self._answered) < MAX_RECORDED_REQUESTS:
                self._answered.append(body)
        return response

    async def _read_body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _BadRequest(f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise _BadRequest("request body must be a JSON object")
        return body

    def _parse_generation_request(
        self, body: dict[str, Any], *, chat: bool
    ) -> tuple[int, list[list[dict[str, Any]]]]:
        """Return ``n`` and one message list per prompt (chat requests have one)."""
        if body.get("stream"):
            raise _BadRequest("stream=true is not supported by this test server")
        n = body.get("n", 1)
        if n is None:
            n = 1
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise _BadRequest("'n' must be a positive integer")
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise _BadRequest("'messages' must be a non-empty list")
            return n, [messages]
        prompt = body.get("prompt", "")
        if isinstance(prompt, str):
            prompts = [prompt]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            prompts = list(prompt)
        else:
            raise _BadRequest("'prompt' must be a string or a non-empty list of strings")
        return n, [[{"role": "user", "content": p}] for p in prompts]

    def _choose_fault(self, model: str) -> str:
        with self._lock:
            # Draw unconditionally so the random fault sequence depends only on
            # the seed and the number of requests, not on which faults apply.
            draw = self._rng.random()
            if self._failed_first_500 < self.fail_first_n:
                self._failed_first_500 += 1
                return _E500
            if self._failed_first_429 < self.fail_first_n_429:
                self._failed_first_429 += 1
                return _E429
            if model in self.fail_models:
                return _E500
            threshold = 0.0
            for rate, fault in (
                (self.error_rate_500, _E500),
                (self.error_rate_429, _E429),
                (self.timeout_rate, _TIMEOUT),
                (self.malformed_rate, _MALFORMED),
            ):
                threshold += rate
                if draw < threshold:
                    return fault
            return _OK

    async def _answer(self, model: str, messages: list[dict[str, Any]], index: int, n: int) -> str:
        canned = self.answers.get(model)
        if canned is not None:
            result: Any = canned if isinstance(canned, str) else canned(messages)
        elif self.responder is not None:
            result = self.responder(model, messages)
        else:
            result = f"{model}: {_last_user_content(messages)}"
            if n > 1:
                result += f" #{index}"
        # Accept async callables too, so responders can await other services.
        if inspect.isawaitable(result):
            result = await result
        return str(result)

    async def _build_payload(
        self,
        model: str,
        n: int,
        conversations: list[list[dict[str, Any]]],
        *,
        chat: bool,
    ) -> dict[str, Any]:
        prompt_tokens = sum(
            _count_words(_content_text(m.get("content")))
            for messages in conversations
            for m in messages
            if isinstance(m, dict)
        )
        choices: list[dict[str, Any]] = []
        completion_tokens = 0
        for p_index, messages in enumerate(conversations):
            for i in range(n):
                text = await self._answer(model, messages, i, n)
                completion_tokens += _count_words(text)
                index = p_index * n + i
                choices.append(completion_choice(index, text, "stop", chat=chat))
        with self._lock:
            self._seq += 1
            seq = self._seq
        return completion_body(
            chat=chat, seq=seq, model=model, choices=choices, prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )


def completion_choice(
    index: int, text: Optional[str], finish_reason: str, *, chat: bool, refusal: Optional[str] = None
) -> dict[str, Any]:
    """One choice of a ``chat.completion`` (a message) or of a ``text_completion`` (its text), as OpenAI writes it."""
    if chat:
        message = {"role": "assistant", "content": text, "refusal": refusal}
        return {"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason}
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}


def completion_body(
    *, chat: bool, seq: int, model: str, choices: list[dict[str, Any]], prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """A ``chat.completion`` (or ``text_completion``) answer around ``choices``, with its usage, as OpenAI writes
    it online and in a batch's output file; ``seq`` makes its id."""
    return {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{seq:012d}",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": None,
    }


def _error_response(
    status: int,
    message: str,
    error_type: str,
    *,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=dict(headers or {}))


def main(argv: list[str] | None = None) -> None:
    """Run the server in the foreground until Ctrl+C."""
    parser = argparse.ArgumentParser(description="Local OpenAI-compatible test server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--error-rate-500", type=float, default=0.0)
    parser.add_argument("--error-rate-429", type=float, default=0.0)
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument("--timeout-rate", type=float, default=0.0)
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument("--malformed-rate", type=float, default=0.0)
    parser.add_argument(
        "--fail-models", default="", help="comma-separated models that always answer 500"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    server = OpenAICompatibleServer(
        host=args.host,
        port=args.port,
        latency=args.latency,
        error_rate_500=args.error_rate_500,
        error_rate_429=args.error_rate_429,
        retry_after=args.retry_after,
        timeout_rate=args.timeout_rate,
        hang_seconds=args.hang_seconds,
        malformed_rate=args.malformed_rate,
        fail_models=[m for m in args.fail_models.split(",") if m],
        seed=args.seed,
    )
    server.start()
    print(server.base_url, flush=True)
    stop = threading.Event()
    try:
        # Short waits keep the main thread responsive to Ctrl+C everywhere.
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print(f"stopped; {server.request_count} requests, statuses {server.status_counts}")


if __name__ == "__main__":
    main()
