"""A local, deterministic fake of Anthropic's Message Batches API for tests and demos.

It serves, on 127.0.0.1 from a background thread, what ``AnthropicLLM`` and its batch API speak, checking the
``x-api-key`` and ``anthropic-version`` headers as the real API does:

- ``POST /v1/messages/batches``: creates a batch of ``{"custom_id", "params"}`` requests (``params`` a Messages API
  body). The batch's shape is checked at once (``custom_id`` of 1 to 64 ``[a-zA-Z0-9_-]``, unique; ``params`` with
  ``model``, ``max_tokens`` and ``messages``): a 400 ``invalid_request_error`` refuses the whole batch.
- ``GET /v1/messages/batches/{id}``: the ``message_batch`` object. Each GET is a poll, and polls move the batch on:
  ``in_progress`` for ``polls_in_progress`` polls (one by default), then ``ended``, with its ``results_url``.
- ``GET /v1/messages/batches?limit=&after_id=&before_id=``: the batches, newest first, a page at a time.
- ``POST /v1/messages/batches/{id}/cancel``: ``canceling`` for one more poll, then ``ended``, its requests
  ``canceled``.
- ``GET /v1/messages/batches/{id}/results``: JSONL, one line per request, in reverse order of the requests (the
  API promises no order): ``succeeded`` with the message, ``errored`` with the error, ``canceled`` or ``expired``.
- ``POST /v1/messages``: the same answers online, so that online and batch runs can be compared.

An answer is ``"<model>: <last user message>"`` (for a forced tool, a ``tool_use`` block whose input is
``structured_answer(params)``), with the words of the prompt and of the answer as its input and output tokens.
Usage::

    from beam_distil.models import AnthropicLLM
    from beam_distil.testing.anthropic_batch_server import AnthropicBatchServer

    with AnthropicBatchServer() as server:
        llm = AnthropicLLM(model="claude-test", base_url=server.base_url, api_key=server.api_key,
                           use_offline_batch_generation=True, offline_batch_generation_block_until_done=1)
        server.fail_requests(lambda custom_id, params: "forbidden" in str(params["messages"]))  # `errored`
        server.fail_next(2, 529, endpoint="create")  # the next two creates are answered 529 overloaded_error
        ...                                          # run a pipeline with `llm`
        [batch_id] = server.batch_ids
        print(server.requests_of(batch_id), server.received, server.polls[batch_id], server.calls)

The other controls: ``hold()`` keeps new batches in progress until ``release(batch_id)``; ``expire(batch_id,
answered=2)`` ends a batch now, its first two requests answered and the others expired; ``cancel(batch_id,
answered=1)``; ``refuse(predicate)`` and ``answer_without_text(predicate)``; ``corrupt_result(batch_id, custom_id)``.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Optional, Tuple

from aiohttp import web

from beam_distil.testing.local_server import LocalHTTPServer

__all__ = ["AnthropicBatchServer", "RequestPredicate"]

RequestPredicate = Callable[[str, Dict[str, Any]], bool]
"""``predicate(custom_id, params) -> bool``; online requests (``POST /v1/messages``) have the custom_id ``""``."""

CUSTOM_ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
API_VERSIONS = ("2023-01-01", "2023-06-01")
MAX_REQUESTS = 100_000
MAX_BYTES = 256 * 1024 * 1024
BATCH_LIFETIME = timedelta(hours=24)
ENDPOINTS = ("create", "retrieve", "list", "cancel", "results", "messages")
"""The names ``fail_next(endpoint=...)`` takes."""

_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error",
}
_ERROR_MESSAGES = {429: "Number of requests has exceeded your rate limit.", 529: "Overloaded"}


def _error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def _timestamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or the ``text`` of its blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [block.get("text") for block in content if isinstance(block, dict)]
        return " ".join(text for text in texts if isinstance(text, str))
    return ""


def _words(text: str) -> int:
    return len(text.split())


class _RequestError(Exception):
    """An API error answer: status, error type, message."""

    def __init__(self, status: int, message: str, error_type: Optional[str] = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type or _error_type(status)
        self.message = message


@dataclass
class _Fault:
    remaining: int
    status: int
    retry_after: Optional[float]
    endpoint: Optional[str]


@dataclass
class _Batch:
    id: str
    requests: List[Dict[str, Any]]
    created_at: datetime
    processing_status: str = "in_progress"
    polls: int = 0
    held: bool = False
    released: bool = False
    ended_at: Optional[datetime] = None
    cancel_initiated_at: Optional[datetime] = None
    polls_canceling: int = 0
    answered_before_cancel: int = 0
    results: List[Dict[str, Any]] = field(default_factory=list)
    corrupt: set = field(default_factory=set)


class AnthropicBatchServer(LocalHTTPServer):
    """Anthropic's Message Batches API (and ``/v1/messages``) on 127.0.0.1 (see the module docstring).

    ``base_url`` is ``http://127.0.0.1:PORT``: the root URL, to which clients append ``/v1/...`` (``AnthropicLLM``'s
    ``base_url``). Every control and every inspection may be used from any thread while the server runs.
    """

    thread_name = "anthropic-batch-server"
    client_max_size = MAX_BYTES + 1024 * 1024  # above the API's limit: the handler, not aiohttp, refuses with its 413

    def __init__(self, *, api_key: str = "test-anthropic-key", polls_in_progress: int = 1, port: int = 0) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self.polls_in_progress = polls_in_progress
        """Polls a batch answers ``in_progress`` before it ends (when it is not held)."""
        self.structured_answer: Callable[[Dict[str, Any]], Dict[str, Any]] = self._default_structured_answer
        """The input of the tool call a request forcing a tool (``tool_choice``) is answered with."""
        # Reentrant: predicates and structured_answer run under it, and may read the inspection properties.
        self._lock = threading.RLock()
        self._batches: Dict[str, _Batch] = {}
        self._hold_new = False
        self._fail: Optional[Tuple[RequestPredicate, str, str]] = None
        self._refuse: Optional[RequestPredicate] = None
        self._no_text: Optional[RequestPredicate] = None
        self._faults: List[_Fault] = []
        self._received: Dict[str, int] = {}
        self._calls: List[Tuple[str, str, int]] = []
        self._online: List[Dict[str, Any]] = []

    # ------------------------------------------------------------------ serving

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages/batches", self._create)
        app.router.add_get("/v1/messages/batches", self._list)
        app.router.add_get("/v1/messages/batches/{batch_id}", self._retrieve)
        app.router.add_post("/v1/messages/batches/{batch_id}/cancel", self._cancel)
        app.router.add_get("/v1/messages/batches/{batch_id}/results", self._results)
        app.router.add_post("/v1/messages", self._messages)

    # ------------------------------------------------------------------ controls

    def hold(self, batch_id: Optional[str] = None) -> None:
        """Keeps ``batch_id`` in progress whatever the polls, until ``release``; without an id, every batch
        created from now on."""
        with self._lock:
            if batch_id is None:
                self._hold_new = True
            else:
                self._known_batch(batch_id).held = True

    def release(self, batch_id: Optional[str] = None) -> None:
        """Lets ``batch_id`` end at its next poll; without an id, every held batch, and new batches are no longer
        held."""
        with self._lock:
            if batch_id is None:
                self._hold_new = False
                batches = [batch for batch in self._batches.values() if batch.held]
            else:
                batches = [self._known_batch(batch_id)]
            for batch in batches:
                batch.held, batch.released = False, True

    def expire(self, batch_id: str, answered: int = 0) -> None:
        """Ends ``batch_id`` now, as the API does after 24 hours: its first ``answered`` requests (in the order
        they were sent) have their results, the others are ``expired``."""
        with self._lock:
            batch = self._known_batch(batch_id)
            if batch.processing_status != "ended":
                self._end(batch, answered, "expired")

    def cancel(self, batch_id: str, answered: int = 0) -> None:
        """Cancels ``batch_id`` as ``POST .../cancel`` does (``canceling`` for one poll, then ``ended``), its
        first ``answered`` requests having been answered before the cancellation."""
        with self._lock:
            self._start_cancel(self._known_batch(batch_id), answered)

    def fail_requests(
        self, predicate: Optional[RequestPredicate], message: str = "this request was refused by a test",
        error_type: str = "invalid_request_error",
    ) -> None:
        """Requests for which ``predicate(custom_id, params)`` is true get an ``errored`` result (online: the
        error with status 400, or 500 for ``api_error``); ``None`` stops it."""
        with self._lock:
            self._fail = None if predicate is None else (predicate, message, error_type)

    def refuse(self, predicate: Optional[RequestPredicate]) -> None:
        """Requests for which ``predicate`` is true are answered with a refusal (``stop_reason: "refusal"``)."""
        with self._lock:
            self._refuse = predicate

    def answer_without_text(self, predicate: Optional[RequestPredicate]) -> None:
        """Requests for which ``predicate`` is true are answered with no content (``stop_reason: "end_turn"``)."""
        with self._lock:
            self._no_text = predicate

    def fail_next(
        self, count: int, status: int, *, retry_after: Optional[float] = None, endpoint: Optional[str] = None
    ) -> None:
        """The next ``count`` calls (of ``endpoint``, one of ``ENDPOINTS``, or of any) are answered with
        ``status`` (500 ``api_error``, 429 ``rate_limit_error``, 529 ``overloaded_error``...), with a
        ``retry-after`` header when ``retry_after`` is given."""
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; one of {ENDPOINTS}")
        with self._lock:
            self._faults.append(_Fault(count, status, retry_after, endpoint))

    def corrupt_result(self, batch_id: str, custom_id: str) -> None:
        """The results line of ``custom_id`` in ``batch_id`` is cut in half (not JSON)."""
        with self._lock:
            self._known_batch(batch_id).corrupt.add(custom_id)

    # ------------------------------------------------------------------ inspection

    @property
    def batch_ids(self) -> List[str]:
        """The batches created, oldest first."""
        with self._lock:
            return list(self._batches)

    def requests_of(self, batch_id: str) -> List[Dict[str, Any]]:
        """The ``{"custom_id", "params"}`` requests of ``batch_id``, as sent."""
        with self._lock:
            return [dict(request) for request in self._known_batch(batch_id).requests]

    def processing_status(self, batch_id: str) -> str:
        """``batch_id``'s state, without counting a poll."""
        with self._lock:
            return self._known_batch(batch_id).processing_status

    @property
    def received(self) -> Dict[str, int]:
        """How many times each custom_id was sent, across every batch created."""
        with self._lock:
            return dict(self._received)

    @property
    def polls(self) -> Dict[str, int]:
        """The ``GET /v1/messages/batches/{id}`` answered for each batch."""
        with self._lock:
            return {batch_id: batch.polls for batch_id, batch in self._batches.items()}

    @property
    def calls(self) -> List[Tuple[str, str, int]]:
        """Every call received, ``(method, path, status answered)``, oldest first."""
        with self._lock:
            return list(self._calls)

    @property
    def online_requests(self) -> List[Dict[str, Any]]:
        """The bodies posted to ``/v1/messages``."""
        with self._lock:
            return list(self._online)

    # ------------------------------------------------------------------ handlers

    async def _create(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        return self._answer(request, "create", lambda: self._create_batch(raw, request))

    async def _list(self, request: web.Request) -> web.StreamResponse:
        return self._answer(request, "list", lambda: self._list_batches(request))

    async def _retrieve(self, request: web.Request) -> web.StreamResponse:
        return self._answer(request, "retrieve", lambda: self._poll(request.match_info["batch_id"], request))

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        return self._answer(request, "cancel", lambda: self._cancel_batch(request.match_info["batch_id"], request))

    async def _results(self, request: web.Request) -> web.StreamResponse:
        return self._answer(request, "results", lambda: self._results_of(request.match_info["batch_id"]))

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        return self._answer(request, "messages", lambda: self._online_message(raw))

    def _answer(
        self, request: web.Request, endpoint: str, handle: Callable[[], web.StreamResponse]
    ) -> web.StreamResponse:
        """A fault if one is due, else an authentication error, else ``handle()``'s answer, recorded."""
        with self._lock:
            response = self._fault_for(endpoint)
            if response is None:
                try:
                    self._check_headers(request)
                    response = handle()
                except _RequestError as error:
                    response = _error_response(error.status, error.error_type, error.message)
            self._calls.append((request.method, request.path, response.status))
        return response

    def _fault_for(self, endpoint: str) -> Optional[web.StreamResponse]:
        for fault in self._faults:
            if fault.remaining > 0 and fault.endpoint in (None, endpoint):
                fault.remaining -= 1
                headers = {} if fault.retry_after is None else {"retry-after": str(fault.retry_after)}
                message = _ERROR_MESSAGES.get(fault.status, "Internal server error")
                return _error_response(fault.status, _error_type(fault.status), message, headers)
        return None

    def _check_headers(self, request: web.Request) -> None:
        if request.headers.get("x-api-key") != self.api_key:
            raise _RequestError(401, "invalid x-api-key")
        version = request.headers.get("anthropic-version")
        if version is None:
            raise _RequestError(400, "anthropic-version: header is required")
        if version not in API_VERSIONS:
            raise _RequestError(400, f"anthropic-version: {version!r} is not a valid version")

    # The functions below run under self._lock.

    def _batch(self, batch_id: str) -> _Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise _RequestError(404, f"message batch {batch_id!r} not found", "not_found_error")
        return batch

    def _known_batch(self, batch_id: str) -> _Batch:
        """``batch_id``'s batch, for the controls and inspections (a test's mistake is a ``KeyError``)."""
        batch = self._batches.get(batch_id)
        if batch is None:
            raise KeyError(f"no batch {batch_id!r} was created; the batches are {list(self._batches)}")
        return batch

    def _create_batch(self, raw: bytes, request: web.Request) -> web.StreamResponse:
        if len(raw) > MAX_BYTES:
            raise _RequestError(413, f"request body of {len(raw)} bytes exceeds the limit of {MAX_BYTES}")
        try:
            body = json.loads(raw)
        except ValueError as error:
            raise _RequestError(400, f"the request body is not valid JSON: {error}") from None
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not 1 <= len(requests) <= MAX_REQUESTS:
            raise _RequestError(400, f"requests: a list of 1 to {MAX_REQUESTS} requests is required")
        seen = set()
        for index, item in enumerate(requests):
            where = f"requests.{index}"
            if not isinstance(item, dict):
                raise _RequestError(400, f"{where}: an object with custom_id and params is required")
            custom_id = item.get("custom_id")
            if not isinstance(custom_id, str) or not CUSTOM_ID_PATTERN.fullmatch(custom_id):
                raise _RequestError(
                    400, f"{where}.custom_id: {custom_id!r} does not match pattern {CUSTOM_ID_PATTERN.pattern}"
                )
            if custom_id in seen:
                raise _RequestError(400, f"{where}.custom_id: {custom_id!r} is used by another request of the batch")
            seen.add(custom_id)
            params = item.get("params")
            if not isinstance(params, dict):
                raise _RequestError(400, f"{where}.params: an object is required")
            for name, kind in (("model", str), ("max_tokens", int), ("messages", list)):
                if not isinstance(params.get(name), kind):
                    raise _RequestError(400, f"{where}.params.{name}: field required ({kind.__name__})")
        batch_id = f"msgbatch_{len(self._batches) + 1:024d}"
        batch = _Batch(
            batch_id, [{"custom_id": r["custom_id"], "params": r["params"]} for r in requests],
            created_at=datetime.now(timezone.utc), held=self._hold_new,
        )
        self._batches[batch_id] = batch
        for item in requests:
            self._received[item["custom_id"]] = self._received.get(item["custom_id"], 0) + 1
        return web.json_response(self._batch_object(batch, request))

    def _poll(self, batch_id: str, request: web.Request) -> web.StreamResponse:
        batch = self._batch(batch_id)
        batch.polls += 1
        if batch.processing_status == "canceling":
            batch.polls_canceling += 1
            if batch.polls_canceling > 1:
                self._end(batch, batch.answered_before_cancel, "canceled")
        elif batch.processing_status == "in_progress" and not batch.held:
            if batch.released or batch.polls > self.polls_in_progress:
                self._end(batch, len(batch.requests), "expired")
        return web.json_response(self._batch_object(batch, request))

    def _cancel_batch(self, batch_id: str, request: web.Request) -> web.StreamResponse:
        batch = self._batch(batch_id)
        self._start_cancel(batch, 0)
        return web.json_response(self._batch_object(batch, request))

    def _start_cancel(self, batch: _Batch, answered: int) -> None:
        if batch.processing_status == "in_progress":
            batch.processing_status = "canceling"
            batch.cancel_initiated_at = datetime.now(timezone.utc)
            batch.answered_before_cancel = answered

    def _list_batches(self, request: web.Request) -> web.StreamResponse:
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            raise _RequestError(400, "limit: an integer is required") from None
        if not 1 <= limit <= 1000:
            raise _RequestError(400, "limit: must be between 1 and 1000")
        newest_first = list(reversed(self._batches))
        after_id, before_id = request.query.get("after_id"), request.query.get("before_id")
        if after_id is not None:
            start = newest_first.index(self._batch(after_id).id) + 1
            page, has_more = newest_first[start:start + limit], len(newest_first) > start + limit
        elif before_id is not None:
            end = newest_first.index(self._batch(before_id).id)
            page, has_more = newest_first[max(0, end - limit):end], end - limit > 0
        else:
            page, has_more = newest_first[:limit], len(newest_first) > limit
        return web.json_response({
            "data": [self._batch_object(self._batches[batch_id], request) for batch_id in page],
            "has_more": has_more,
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
        })

    def _results_of(self, batch_id: str) -> web.StreamResponse:
        batch = self._batch(batch_id)
        if batch.processing_status != "ended":
            raise _RequestError(400, f"message batch {batch_id!r} has not ended: its results are not available yet")
        lines = []
        for result in reversed(batch.results):
            line = json.dumps(result)
            lines.append(line[: len(line) // 2] if result["custom_id"] in batch.corrupt else line)
        return web.Response(body=("\n".join(lines) + "\n").encode(), content_type="application/x-jsonl")

    def _online_message(self, raw: bytes) -> web.StreamResponse:
        try:
            params = json.loads(raw)
        except ValueError as error:
            raise _RequestError(400, f"the request body is not valid JSON: {error}") from None
        if not isinstance(params, dict):
            raise _RequestError(400, "the request body must be a JSON object")
        self._online.append(params)
        result = self._result("", params)
        if result["type"] == "errored":
            error = result["error"]["error"]
            raise _RequestError(500 if error["type"] == "api_error" else 400, error["message"], error["type"])
        return web.json_response(result["message"])

    def _end(self, batch: _Batch, answered: int, others: str) -> None:
        """Ends ``batch``: its first ``answered`` requests get their results, the others ``others``."""
        batch.results = [
            {
                "custom_id": request["custom_id"],
                "result": (
                    self._result(request["custom_id"], request["params"]) if index < answered else {"type": others}
                ),
            }
            for index, request in enumerate(batch.requests)
        ]
        batch.processing_status = "ended"
        batch.ended_at = datetime.now(timezone.utc)

    def _result(self, custom_id: str, params: Dict[str, Any]) -> Dict[str, Any]:
        """The result of one request: the checks the API makes while processing it, then its answer."""
        messages = params.get("messages") or []
        if not messages or not all(isinstance(m, dict) and m.get("role") in ("user", "assistant") for m in messages):
            return _errored("invalid_request_error", "messages: at least one user or assistant message is required")
        if self._fail is not None and self._fail[0](custom_id, params):
            return _errored(self._fail[2], self._fail[1])
        model = params.get("model")
        last_user = next((_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        text = f"{model}: {last_user}"
        stop_reason = "end_turn"
        tool_choice = params.get("tool_choice") or {}
        if self._refuse is not None and self._refuse(custom_id, params):
            content: List[Dict[str, Any]] = [{"type": "text", "text": "I can't help with that."}]
            stop_reason = "refusal"
        elif self._no_text is not None and self._no_text(custom_id, params):
            content = []
        elif tool_choice.get("type") == "tool":
            tool_input = self.structured_answer(params)
            content = [{"type": "tool_use", "id": "toolu_test", "name": tool_choice.get("name"), "input": tool_input}]
            text, stop_reason = json.dumps(tool_input), "tool_use"
        else:
            content = [{"type": "text", "text": text}]
        prompt = [_text_of(params.get("system"))] + [_text_of(m.get("content")) for m in messages]
        message = {
            "id": f"msg_{custom_id or 'online'}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": sum(_words(p) for p in prompt), "output_tokens": _words(text) if content else 0},
        }
        return {"type": "succeeded", "message": message}

    @staticmethod
    def _default_structured_answer(params: Dict[str, Any]) -> Dict[str, Any]:
        last_user = next(
            (_text_of(m.get("content")) for m in reversed(params["messages"]) if m.get("role") == "user"), ""
        )
        return {"answer": f"{params.get('model')}: {last_user}"}

    def _batch_object(self, batch: _Batch, request: web.Request) -> Dict[str, Any]:
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if batch.processing_status == "ended":
            for result in batch.results:
                counts[result["result"]["type"]] += 1
        else:
            counts["processing"] = len(batch.requests)
        ended = batch.processing_status == "ended"
        # A full URL, as the API gives it, on whichever host the client reached.
        results_url = f"{request.scheme}://{request.host}/v1/messages/batches/{batch.id}/results"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": batch.processing_status,
            "request_counts": counts,
            "ended_at": _timestamp(batch.ended_at) if batch.ended_at else None,
            "created_at": _timestamp(batch.created_at),
            "expires_at": _timestamp(batch.created_at + BATCH_LIFETIME),
            "archived_at": None,
            "cancel_initiated_at": _timestamp(batch.cancel_initiated_at) if batch.cancel_initiated_at else None,
            "results_url": results_url if ended else None,
        }


def _errored(error_type: str, message: str) -> Dict[str, Any]:
    return {"type": "errored", "error": {"type": "error", "error": {"type": error_type, "message": message}}}


def _error_response(
    status: int, error_type: str, message: str, headers: Optional[Dict[str, str]] = None
) -> web.Response:
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return web.json_response(body, status=status, headers=headers)
