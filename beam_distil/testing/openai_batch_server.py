"""A local, deterministic fake of OpenAI's Files and Batches API for tests, benchmarks and demos.

It speaks enough of the API for ``OpenAIBatchAPI`` and for the official ``openai`` client: upload a JSONL file
(``POST /v1/files``), create a batch of its requests (``POST /v1/batches``), poll it (``GET /v1/batches/{id}``),
list batches (``GET /v1/batches``), cancel one, and download its output and error files
(``GET /v1/files/{id}/content``). Answers are ``"<model>: <last user message>"`` (with `` #i`` on choice ``i``
when ``n`` > 1), as ``OpenAICompatibleServer`` gives online.

Time is the test's: each status poll moves a batch one state on (validating, in_progress, finalizing,
completed), so a poll loop sees every state; ``hold=True`` keeps batches in progress until ``release``;
``complete``, ``expire`` and ``cancel`` end a batch at once. Requests can be made to fail, to refuse, to come
back without text or with garbled output lines, and the API's own endpoints can answer 500 or 429 for the
next calls::

    import json
    from beam_distil.models import OpenAILLM
    from beam_distil.testing.openai_batch_server import OpenAIBatchServer

    with OpenAIBatchServer(fail_when=lambda line: "FAIL" in json.dumps(line)) as server:
        api = OpenAILLM(model="m", base_url=server.base_url, api_key="test").offline_batch_api()
        ...                                         # submit, poll until completed, read the answers
        server.fail_next("get_batch", times=2, status=429, retry_after=1)
        assert server.answered_by_custom_id == {"row-0": 1, ...}     # each request answered once

From a shell (runs until Ctrl+C)::

    python -m beam_distil.testing.openai_batch_server --port 8001
"""

from __future__ import annotations

import argparse
import collections
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from aiohttp import web

from beam_distil.testing.local_server import LocalHTTPServer
from beam_distil.testing.openai_server import (
    _content_text, _count_words, _last_user_content, completion_body, completion_choice,
)

__all__ = ["OpenAIBatchServer", "ENDPOINTS", "main"]

ENDPOINTS = (
    "upload_file",
    "get_file",
    "file_content",
    "create_batch",
    "get_batch",
    "list_batches",
    "cancel_batch",
)
"""The API's endpoints by the names ``fail_next`` and ``calls`` use."""

BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/completions")
MAX_REQUESTS = 50_000
MAX_FILE_BYTES = 200 * 1024 * 1024
REFUSAL = "I can't help with that."

LinePredicate = Callable[[Dict[str, Any]], bool]
"""``predicate(line) -> bool`` on one request line of a batch's input (``custom_id``, ``method``, ``url``,
``body``), parsed."""

# A request the batch never got to: OpenAI writes it to the error file with one of these codes.
_NOT_RUN = {
    "expired": ("batch_expired", "This request could not be executed before the completion window expired."),
    "cancelled": ("batch_cancelled", "This request could not be executed before the batch was cancelled."),
}


@dataclass
class _Batch:
    """One batch: the object the API shows, its parsed request lines, and what validating it found."""

    obj: Dict[str, Any]
    lines: List[Dict[str, Any]]
    problems: List[Dict[str, Any]]
    held: bool
    polls: int = 0


@dataclass
class _File:
    obj: Dict[str, Any]
    content: bytes


@dataclass
class _Fault:
    status: int
    retry_after: Optional[float]


class _APIError(Exception):
    """An OpenAI-shaped error answer."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: Optional[str] = None,
        code: Optional[str] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.retry_after = retry_after


@dataclass
class _Counters:
    calls: Dict[str, int] = field(default_factory=lambda: dict.fromkeys(ENDPOINTS, 0))
    submitted: Dict[str, int] = field(default_factory=dict)
    answered: Dict[str, int] = field(default_factory=dict)


class OpenAIBatchServer(LocalHTTPServer):
    """OpenAI's Files and Batches API on ``127.0.0.1``, on a background thread (a context manager).

    Settings (attributes, which may be changed while it runs):

    * ``hold``: new batches stay ``in_progress`` until ``release(batch_id)``.
    * ``fail_when(line)``: that request gets an error line (HTTP 400 and an error body) instead of an answer.
    * ``refuse_when(line)``: that request's choices are refusals (no content, ``refusal`` text).
    * ``no_text_when(line)``: that request's choices have no content (``finish_reason`` ``content_filter``).
    * ``garble_when(line)``: that request's output line is cut in half (not JSON).
    * ``max_choices``: at most this many choices per answer, whatever ``n`` asked.
    * ``responder(model, messages) -> str``: the answer text, instead of the default.

    Output files list their lines in the reverse of the input's order, as a reminder that only ``custom_id``
    ties an answer to its request. Every method is safe to call from any thread while clients call the API.
    """

    url_path = "/v1"
    thread_name = "openai-batch-server"
    client_max_size = MAX_FILE_BYTES + 1024 * 1024  # an upload of the largest batch file, with its form around it

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        hold: bool = False,
        fail_when: Optional[LinePredicate] = None,
        refuse_when: Optional[LinePredicate] = None,
        no_text_when: Optional[LinePredicate] = None,
        garble_when: Optional[LinePredicate] = None,
        max_choices: Optional[int] = None,
        responder: Optional[Callable[[str, List[Dict[str, Any]]], str]] = None,
    ) -> None:
        super().__init__(host=host, port=port, backlog=1024)
        self.hold = hold
        self.fail_when = fail_when
        self.refuse_when = refuse_when
        self.no_text_when = no_text_when
        self.garble_when = garble_when
        self.max_choices = max_choices
        self.responder = responder

        # One lock for all state: handlers run on the server's loop thread, tests call from theirs.
        # Reentrant: a responder or predicate (user code, run under the lock) may read the server's counters.
        self._lock = threading.RLock()
        self._seq = 0
        self._files: Dict[str, _File] = {}
        self._batches: Dict[str, _Batch] = {}  # in creation order
        self._faults: Dict[str, Deque[_Fault]] = {name: collections.deque() for name in ENDPOINTS}
        self._counters = _Counters()
        self._last_headers: Dict[str, str] = {}

    # ------------------------------------------------------------------ serving

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/files", self._upload_file)
        app.router.add_get("/v1/files/{file_id}", self._get_file)
        app.router.add_get("/v1/files/{file_id}/content", self._file_content)
        app.router.add_post("/v1/batches", self._create_batch)
        app.router.add_get("/v1/batches", self._list_batches)
        app.router.add_get("/v1/batches/{batch_id}", self._get_batch)
        app.router.add_post("/v1/batches/{batch_id}/cancel", self._cancel_batch)
        # Counters for a client in another process (a benchmark running the server apart).
        app.router.add_get("/stats", self._stats)

    # ------------------------------------------------------------- test controls

    def fail_next(self, endpoint: str, times: int = 1, status: int = 500, retry_after: Optional[float] = None) -> None:
        """The next ``times`` calls of ``endpoint`` (one of ``ENDPOINTS``) answer ``status`` with an OpenAI error
        body, and a ``Retry-After`` header when ``retry_after`` is given (usually with 429)."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; one of {', '.join(ENDPOINTS)}")
        with self._lock:
            self._faults[endpoint].extend(_Fault(status, retry_after) for _ in range(times))

    def release(self, batch_id: Optional[str] = None) -> None:
        """Lets a held batch (every held batch when ``batch_id`` is None) go on at its next poll."""
        with self._lock:
            for batch in self._chosen(batch_id):
                batch.held = False

    def complete(self, batch_id: Optional[str] = None) -> None:
        """Ends a batch (every batch not yet final when ``batch_id`` is None) now, as its polls would: failed if
        its input was invalid, else completed with every request answered."""
        with self._lock:
            for batch in self._chosen(batch_id):
                while batch.obj["status"] not in ("completed", "failed", "expired", "cancelled"):
                    batch.held = False
                    self._advance(batch)

    def expire(self, batch_id: str, answered: int = 0) -> None:
        """Expires a batch now: its first ``answered`` requests are answered (or fail, as ``fail_when`` says),
        the rest are written to the error file as ``batch_expired``."""
        with self._lock:
            self._end_early(self._batch(batch_id), "expired", answered)

    def cancel(self, batch_id: str, answered: int = 0) -> None:
        """Cancels a batch now: its first ``answered`` requests are answered, the rest ``batch_cancelled``."""
        with self._lock:
            self._end_early(self._batch(batch_id), "cancelled", answered)

    def backdate(self, batch_id: str, seconds: float) -> None:
        """Moves a batch's ``created_at`` ``seconds`` into the past (for searches bounded by age)."""
        with self._lock:
            self._batch(batch_id).obj["created_at"] -= int(seconds)

    # --------------------------------------------------------------- inspection

    @property
    def batch_ids(self) -> List[str]:
        """Ids of the batches created, oldest first."""
        with self._lock:
            return list(self._batches)

    @property
    def batch_count(self) -> int:
        with self._lock:
            return len(self._batches)

    def batch(self, batch_id: str) -> Dict[str, Any]:
        """The batch object, as ``GET /v1/batches/{id}`` would show it (without counting as a poll)."""
        with self._lock:
            return json.loads(json.dumps(self._batch(batch_id).obj))

    def batch_requests(self, batch_id: str) -> List[Dict[str, Any]]:
        """The request lines of a batch's input file (those that are JSON objects), in order."""
        with self._lock:
            return json.loads(json.dumps(self._batch(batch_id).lines))

    def polls(self, batch_id: str) -> int:
        """How many times ``GET /v1/batches/{id}`` was answered for this batch."""
        with self._lock:
            return self._batch(batch_id).polls

    @property
    def poll_count(self) -> int:
        """Status polls answered, all batches together."""
        with self._lock:
            return sum(batch.polls for batch in self._batches.values())

    @property
    def calls(self) -> Dict[str, int]:
        """Calls received per endpoint (``ENDPOINTS``), the failed ones included."""
        with self._lock:
            return dict(self._counters.calls)

    @property
    def submitted_by_custom_id(self) -> Dict[str, int]:
        """How many batches each ``custom_id`` was sent in (invalid batches included)."""
        with self._lock:
            return dict(self._counters.submitted)

    @property
    def answered_by_custom_id(self) -> Dict[str, int]:
        """How many times each ``custom_id`` was answered (a 200 line in an output file), all batches together:
        what was paid for."""
        with self._lock:
            return dict(self._counters.answered)

    @property
    def uploaded_file_ids(self) -> List[str]:
        """Ids of the files clients uploaded, oldest first (output and error files are not uploads)."""
        with self._lock:
            return [file_id for file_id, file in self._files.items() if file.obj["purpose"] == "batch"]

    def file_content(self, file_id: str) -> bytes:
        with self._lock:
            return self._file(file_id).content

    def append_to_file(self, file_id: str, raw: bytes) -> None:
        """Adds ``raw`` to a file as it is (a line a client must cope with: not JSON, no ``custom_id``...)."""
        with self._lock:
            file = self._file(file_id)
            file.content += raw
            file.obj["bytes"] = len(file.content)

    @property
    def headers_of_last_call(self) -> Dict[str, str]:
        """The HTTP headers of the last API call received (``Authorization`` included)."""
        with self._lock:
            return dict(self._last_headers)

    # ------------------------------------------------------------------ handlers

    def _enter(self, endpoint: str, request: web.Request) -> None:
        """Counts a call and raises the fault queued for it, if any."""
        with self._lock:
            self._counters.calls[endpoint] += 1
            self._last_headers = dict(request.headers)
            fault = self._faults[endpoint].popleft() if self._faults[endpoint] else None
        if fault is not None:
            raise _APIError(
                fault.status,
                f"Injected error {fault.status} on {endpoint}.",
                code="rate_limit_exceeded" if fault.status == 429 else None,
                retry_after=fault.retry_after,
            )

    async def _upload_file(self, request: web.Request) -> web.StreamResponse:
        async def handle() -> Dict[str, Any]:
            self._enter("upload_file", request)
            form = await request.post()
            purpose, upload = form.get("purpose"), form.get("file")
            if purpose != "batch":
                raise _APIError(400, f"this server takes files with purpose 'batch', got {purpose!r}", param="purpose")
            if not isinstance(upload, web.FileField):
                raise _APIError(400, "the 'file' field is missing or is not a file", param="file")
            if not upload.filename.endswith(".jsonl"):
                raise _APIError(400, "Invalid file format for Batch API. Must be .jsonl", param="file")
            content = upload.file.read()
            if len(content) > MAX_FILE_BYTES:
                raise _APIError(400, f"a batch file may hold at most {MAX_FILE_BYTES} bytes", param="file")
            with self._lock:
                return dict(self._new_file(content, upload.filename, "batch").obj)

        return await _answer(handle)

    async def _get_file(self, request: web.Request) -> web.StreamResponse:
        async def handle() -> Dict[str, Any]:
            self._enter("get_file", request)
            with self._lock:
                return dict(self._file(request.match_info["file_id"]).obj)

        return await _answer(handle)

    async def _file_content(self, request: web.Request) -> web.StreamResponse:
        try:
            self._enter("file_content", request)
            with self._lock:
                content = self._file(request.match_info["file_id"]).content
        except _APIError as error:
            return _error_response(error)
        return web.Response(body=content, content_type="application/octet-stream")

    async def _create_batch(self, request: web.Request) -> web.StreamResponse:
        async def handle() -> Dict[str, Any]:
            self._enter("create_batch", request)
            try:
                body = json.loads(await request.read())
            except ValueError:
                raise _APIError(400, "the request body is not JSON") from None
            if not isinstance(body, dict):
                raise _APIError(400, "the request body must be a JSON object")
            endpoint, window = body.get("endpoint"), body.get("completion_window")
            if endpoint not in BATCH_ENDPOINTS:
                raise _APIError(400, f"endpoint must be one of {', '.join(BATCH_ENDPOINTS)}, got {endpoint!r}",
                                param="endpoint")
            if window != "24h":
                raise _APIError(400, f"completion_window must be '24h', got {window!r}", param="completion_window")
            metadata = body.get("metadata")
            if metadata is not None and not (
                isinstance(metadata, dict) and len(metadata) <= 16
                and all(isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
                        for k, v in metadata.items())
            ):
                raise _APIError(400, "metadata takes at most 16 string pairs (keys <= 64, values <= 512 characters)",
                                param="metadata")
            with self._lock:
                input_file = self._file(str(body.get("input_file_id")))
                lines, problems = _read_requests(input_file.content, endpoint)
                self._seq += 1
                now = int(time.time())
                batch_id = f"batch_{self._seq:012d}"
                obj = {
                    "id": batch_id,
                    "object": "batch",
                    "endpoint": endpoint,
                    "errors": None,
                    "input_file_id": input_file.obj["id"],
                    "completion_window": "24h",
                    "status": "validating",
                    "output_file_id": None,
                    "error_file_id": None,
                    "created_at": now,
                    "in_progress_at": None,
                    "expires_at": now + 24 * 3600,
                    "finalizing_at": None,
                    "completed_at": None,
                    "failed_at": None,
                    "expired_at": None,
                    "cancelling_at": None,
                    "cancelled_at": None,
                    "request_counts": {"total": 0, "completed": 0, "failed": 0},
                    "metadata": metadata,
                }
                self._batches[batch_id] = _Batch(obj=obj, lines=lines, problems=problems, held=self.hold)
                for line in lines:
                    custom_id = line.get("custom_id")
                    if isinstance(custom_id, str):
                        self._counters.submitted[custom_id] = self._counters.submitted.get(custom_id, 0) + 1
                return dict(obj)

        return await _answer(handle)

    async def _get_batch(self, request: web.Request) -> web.StreamResponse:
        async def handle() -> Dict[str, Any]:
            self._enter("get_batch", request)
            with self._lock:
                batch = self._batch(request.match_info["batch_id"])
                batch.polls += 1
                # The poll shows the state the batch is in, then the batch moves one state on.
                shown = json.loads(json.dumps(batch.obj))
                self._advance(batch)
                return shown

        return await _answer(handle)

    async def _list_batches(self, request: web.Request) -> web.StreamResponse:
        async def handle() -> Dict[str, Any]:
            self._enter("list_batches", request)
            try:
                limit = int(request.query.get("limit", "20"))
            except ValueError:
                raise _APIError(400, "limit must be an integer", param="limit") from None
            if not 1 <= limit <= 100:
                raise _APIError(400, "limit must be between 1 and 100", param="limit")
            after = request.query.get("after")
            with self._lock:
                newest_first = list(reversed(self._batches))
                if after is not None and after not in newest_first:
                    raise _APIError(400, f"no batch {after!r} to list after", param="after")
                start = newest_first.index(after) + 1 if after is not None else 0
                page = [json.loads(json.dumps(self._batches[i].obj)) for i in newest_first[start:start + limit]]
                return {
                    "object": "list",
                    "data": page,
                    "first_id": page[0]["id"] if page else None,
                    "last_id": page[-1]["id"] if page else None,
                    "has_more": start + limit < len(newest_first),
                }

        return await _answer(handle)

    async def _cancel_batch(self, request: web.Request) -> web.StreamResponse:
        async def handle() -> Dict[str, Any]:
            self._enter("cancel_batch", request)
            with self._lock:
                batch = self._batch(request.match_info["batch_id"])
                status = batch.obj["status"]
                if status in ("completed", "failed", "expired", "cancelled"):
                    raise _APIError(400, f"Cannot cancel a batch with status '{status}'.")
                if status != "cancelling":
                    batch.obj["status"] = "cancelling"
                    batch.obj["cancelling_at"] = int(time.time())
                return json.loads(json.dumps(batch.obj))

        return await _answer(handle)

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "batches": self.batch_count,
                "polls": self.poll_count,
                "calls": self.calls,
                "uploaded_files": len(self.uploaded_file_ids),
                "submitted_requests": sum(self.submitted_by_custom_id.values()),
                "answered_requests": sum(self.answered_by_custom_id.values()),
            }
        )

    # --------------------------------------------------------- the state machine (under the lock)

    def _batch(self, batch_id: str) -> _Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise _APIError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
        return batch

    def _file(self, file_id: str) -> _File:
        file = self._files.get(file_id)
        if file is None:
            raise _APIError(404, f"No such File object: {file_id}", param="id")
        return file

    def _chosen(self, batch_id: Optional[str]) -> List[_Batch]:
        return list(self._batches.values()) if batch_id is None else [self._batch(batch_id)]

    def _new_file(self, content: bytes, filename: str, purpose: str) -> _File:
        self._seq += 1
        file_id = f"file-{self._seq:012d}"
        obj = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "expires_at": None,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
        }
        file = self._files[file_id] = _File(obj=obj, content=content)
        return file

    def _advance(self, batch: _Batch) -> None:
        """Moves a batch one state on: validating -> in_progress (or failed), in_progress -> finalizing (unless
        held), finalizing -> completed (its files written), cancelling -> cancelled."""
        obj, now = batch.obj, int(time.time())
        status = obj["status"]
        if status == "validating":
            if batch.problems:
                obj.update(status="failed", failed_at=now, errors={"object": "list", "data": batch.problems})
            else:
                obj.update(status="in_progress", in_progress_at=now)
                obj["request_counts"]["total"] = len(batch.lines)
        elif status == "in_progress" and not batch.held:
            obj.update(status="finalizing", finalizing_at=now)
        elif status == "finalizing":
            self._write_results(batch, answered=len(batch.lines), ending="completed")
            obj.update(status="completed", completed_at=now)
        elif status == "cancelling":
            self._write_results(batch, answered=0, ending="cancelled")
            obj.update(status="cancelled", cancelled_at=now)

    def _end_early(self, batch: _Batch, ending: str, answered: int) -> None:
        status = batch.obj["status"]
        if status in ("completed", "failed", "expired", "cancelled"):
            raise ValueError(f"batch {batch.obj['id']} is already {status}")
        now = int(time.time())
        if batch.problems:  # an invalid input never runs: nothing to answer
            batch.obj.update(status="failed", failed_at=now, errors={"object": "list", "data": batch.problems})
            return
        batch.obj["request_counts"]["total"] = len(batch.lines)
        batch.obj["in_progress_at"] = batch.obj["in_progress_at"] or now
        self._write_results(batch, answered=answered, ending=ending)
        batch.obj.update({"status": ending, f"{ending}_at": now})

    def _write_results(self, batch: _Batch, *, answered: int, ending: str) -> None:
        """Answers the first ``answered`` requests and writes the output and error files (each only if it has a
        line); the other requests go to the error file as not run."""
        outputs: List[bytes] = []
        errors: List[bytes] = []
        for index, line in enumerate(batch.lines):
            custom_id = line["custom_id"]
            self._seq += 1
            line_id, request_id = f"batch_req_{self._seq:012d}", f"req_{self._seq:012d}"
            if index >= answered:
                code, message = _NOT_RUN[ending]
                errors.append(_jsonl({"id": line_id, "custom_id": custom_id, "response": None,
                                      "error": {"code": code, "message": message}}))
            elif (refused := _request_problem(line)) or (self.fail_when is not None and self.fail_when(line)):
                message = refused or f"Injected failure of request {custom_id}."
                body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
                errors.append(_jsonl({"id": line_id, "custom_id": custom_id, "error": None,
                                      "response": {"status_code": 400, "request_id": request_id, "body": body}}))
            else:
                completion = self._completion(line)
                text = _jsonl({"id": line_id, "custom_id": custom_id, "error": None,
                               "response": {"status_code": 200, "request_id": request_id, "body": completion}})
                if self.garble_when is not None and self.garble_when(line):
                    text = text[: len(text) // 2]
                outputs.append(text)
                self._counters.answered[custom_id] = self._counters.answered.get(custom_id, 0) + 1
        counts = batch.obj["request_counts"]
        counts.update(total=len(batch.lines), completed=len(outputs), failed=len(errors))
        batch_id = batch.obj["id"]
        if outputs:
            batch.obj["output_file_id"] = self._new_file(
                b"\n".join(reversed(outputs)) + b"\n", f"{batch_id}_output.jsonl", "batch_output"
            ).obj["id"]
        if errors:
            batch.obj["error_file_id"] = self._new_file(
                b"\n".join(reversed(errors)) + b"\n", f"{batch_id}_error.jsonl", "batch_output"
            ).obj["id"]

    def _completion(self, line: Dict[str, Any]) -> Dict[str, Any]:
        """The ``chat.completion`` (or ``text_completion``) the request in ``line`` gets."""
        body = line["body"]
        chat = line["url"] == "/v1/chat/completions"
        model = body["model"]
        messages = body.get("messages") if chat else [{"role": "user", "content": body.get("prompt", "")}]
        n = body.get("n") or 1
        shown = n if self.max_choices is None else min(n, self.max_choices)
        refuse = self.refuse_when is not None and self.refuse_when(line)
        no_text = self.no_text_when is not None and self.no_text_when(line)
        choices: List[Dict[str, Any]] = []
        completion_tokens = 0
        for index in range(shown):
            if self.responder is not None:
                text: Optional[str] = str(self.responder(model, messages))
            else:
                text = f"{model}: {_last_user_content(messages)}" + (f" #{index}" if n > 1 else "")
            finish_reason = "stop"
            if refuse or no_text:
                text, finish_reason = None, ("stop" if refuse else "content_filter")
            completion_tokens += _count_words(text or "")
            choices.append(
                completion_choice(index, text, finish_reason, chat=chat, refusal=REFUSAL if refuse else None)
            )
        prompt_tokens = sum(_count_words(_content_text(m.get("content"))) for m in messages if isinstance(m, dict))
        self._seq += 1
        return completion_body(
            chat=chat, seq=self._seq, model=model, choices=choices, prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )


def _read_requests(content: bytes, endpoint: str) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """The request lines of an input file, and what is wrong with it, as OpenAI's batch ``errors.data`` entries
    (``code``, ``line`` counted from 1, ``message``, ``param``)."""
    lines: List[Dict[str, Any]] = []
    problems: List[Dict[str, Any]] = []
    seen: set = set()
    models: Dict[str, int] = {}

    def problem(code: str, number: Optional[int], message: str, param: Optional[str] = None) -> None:
        problems.append({"code": code, "line": number, "message": message, "param": param})

    raw_lines = [raw for raw in content.split(b"\n") if raw.strip()]
    if not raw_lines:
        problem("empty_file", None, "The input file is empty.")
    if len(raw_lines) > MAX_REQUESTS:
        problem("too_many_tasks", None, f"The input file has {len(raw_lines)} requests; the limit is {MAX_REQUESTS}.")
    for number, raw in enumerate(raw_lines, 1):
        try:
            line = json.loads(raw)
        except ValueError:
            problem("invalid_json_line", number, "This line is not parseable as valid JSON.")
            continue
        if not isinstance(line, dict):
            problem("invalid_json_line", number, "This line is not a JSON object.")
            continue
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            problem("missing_required_parameter", number, "Missing required parameter: 'custom_id'.", "custom_id")
            continue
        if custom_id in seen:
            problem("duplicate_custom_id", number, f"The custom_id '{custom_id}' is used by more than one request.",
                    "custom_id")
            continue
        seen.add(custom_id)
        if line.get("method") != "POST":
            problem("invalid_request", number, "The method must be 'POST'.", "method")
        if line.get("url") != endpoint:
            problem("url_mismatch", number, f"The url '{line.get('url')}' does not match the batch's endpoint"
                    f" '{endpoint}'.", "url")
        body = line.get("body")
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str) or not model:
            problem("missing_required_parameter", number, "Missing required parameter: 'body.model'.", "body.model")
            continue
        if models and model not in models:
            first = next(iter(models))
            problem("model_mismatch", number, f"The model '{model}' does not match the model '{first}' of line"
                    f" {models[first]}: a batch takes one model.", "body.model")
        models.setdefault(model, number)
        lines.append(line)
    return lines, problems


def _request_problem(line: Dict[str, Any]) -> Optional[str]:
    """Why the request body itself is refused (HTTP 400 in the error file), or None."""
    body = line["body"]
    if line["url"] == "/v1/chat/completions":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "'messages' must be a non-empty list."
    elif not isinstance(body.get("prompt"), str):
        return "'prompt' must be a string."
    n = body.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        return "'n' must be a positive integer."
    return None


def _jsonl(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


async def _answer(handle: Callable[[], Any]) -> web.StreamResponse:
    """``handle()``'s JSON answer, or its ``_APIError`` as an OpenAI error answer."""
    try:
        return web.json_response(await handle())
    except _APIError as error:
        return _error_response(error)


def _error_response(error: _APIError) -> web.Response:
    kind = "server_error" if error.status >= 500 else ("requests" if error.status == 429 else "invalid_request_error")
    headers = {}
    retry_after = error.retry_after
    if retry_after is not None:
        headers["Retry-After"] = str(int(retry_after)) if float(retry_after).is_integer() else repr(float(retry_after))
    body = {"error": {"message": error.message, "type": kind, "param": error.param, "code": error.code}}
    return web.json_response(body, status=error.status, headers=headers)


def main(argv: Optional[List[str]] = None) -> None:
    """Runs the server in the foreground until Ctrl+C."""
    parser = argparse.ArgumentParser(description="Local fake of OpenAI's Files and Batches API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    server = OpenAIBatchServer(host=args.host, port=args.port)
    server.start()
    print(server.base_url, flush=True)
    try:
        while True:  # short waits keep the main thread responsive to Ctrl+C
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print(f"stopped; {server.batch_count} batches, {server.poll_count} polls")


if __name__ == "__main__":
    main()
