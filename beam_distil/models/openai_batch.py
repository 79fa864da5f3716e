"""``OpenAIBatchAPI``: OpenAI's Batch API (``/v1/files`` and ``/v1/batches``) for ``OpenAILLM``.

A batch is one JSONL file of requests, uploaded with ``purpose=batch``, then a batch made of it for one endpoint
(``/v1/chat/completions``, or ``/v1/completions`` for raw-text prompts) and a 24 h completion window. Each line is
the body ``OpenAILLM`` would post online (``OpenAILLM.request_body``), and each answer in the batch's output file is
read as an online answer is (``OpenAILLM.output_of_completion``): the same generations, finish reasons (refusals
included), token counts, and ``None`` with the reason for a choice the server did not return::

    llm = OpenAILLM(model="gpt-4o-mini", use_offline_batch_generation=True)
    llm.load()
    api = llm.offline_batch_api()
    line = api.encode_request(BatchRequest("row-0", [{"role": "user", "content": "Hi"}], 2, {"temperature": 0.7}))
    batch_id = await api.submit([line], submission="3f2a9c")     # upload, then create with that metadata
    status = await api.status(batch_id)                           # BatchStatus(state="running", ...)
    answers = await api.answers(batch_id)                         # once final: {"row-0": BatchAnswer(...)}

What OpenAI reports is mapped as follows:

* ``validating``, ``in_progress``, ``finalizing`` and ``cancelling`` are ``running``; ``completed``, ``failed``
  (with the validation errors of the input file), ``expired`` and ``cancelled`` are final.
* An output-file line with status 200 is an answer. A line with another status is that request's error
  (``HTTP 400: <message>``). A line whose ``error`` is ``batch_expired``, ``batch_cancelled`` or
  ``request_timeout`` was never answered: it is left out, so that the engine resends it.
* A line that is not JSON, has no ``custom_id`` or has a 200 body that is not a completion is left out with a
  logged warning: its request counts as unanswered.

The batch carries ``metadata={"beam_distil_submission": submission}``; ``find_batch`` lists recent batches (the
last 48 hours, at most 20 pages of 100) to find it again.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

import aiohttp

from beam_distil.models.offline_batch import BatchAnswer, BatchRequest, BatchState, BatchStatus, OfflineBatchAPI
from beam_distil.models.openai_rest import openai_account_headers
from beam_distil.models.rest import HTTPStatusError, MalformedResponseError, RESTClient, json_object

if TYPE_CHECKING:
    from beam_distil.models.openai import OpenAILLM

logger = logging.getLogger(__name__)

SUBMISSION_KEY = "beam_distil_submission"
"""The batch metadata key holding the submission digest that ``find_batch`` looks for."""

_STATES: Dict[str, BatchState] = {
    "validating": "running",
    "in_progress": "running",
    "finalizing": "running",
    "cancelling": "running",
    "completed": "completed",
    "failed": "failed",
    "expired": "expired",
    "cancelled": "cancelled",
}

# Error codes of a request the batch did not run (it expired or was cancelled first, or the model call timed
# out): no answer of its own, so the engine may send it again.
_NOT_ANSWERED = {"batch_expired", "batch_cancelled", "request_timeout"}

# Most validation errors quoted in a failed batch's status (a bad file may have one per line).
_ERRORS_SHOWN = 5


class OpenAIBatchAPI(OfflineBatchAPI):
    """OpenAI's Files and Batches API for one ``OpenAILLM``, made by ``OpenAILLM.offline_batch_api()``.

    ``base_url`` is the API's (``https://api.openai.com/v1``); ``api_key`` is sent as a Bearer token (none when
    ``None``), with ``headers`` and ``params`` (query parameters) on every call. JSON calls time out after
    ``timeout`` seconds, file uploads and downloads (up to 200 MB) after ``transfer_timeout``.
    """

    provider = "openai"
    max_requests_per_batch = 50_000
    max_bytes_per_batch = 200 * 1024 * 1024

    list_page_size: int = 100
    """Batches asked for per page when ``find_batch`` lists them (OpenAI's most)."""
    find_batch_max_pages: int = 20
    """Pages ``find_batch`` reads at most before giving up."""
    find_batch_max_age: float = 48 * 3600
    """Seconds back ``find_batch`` looks: the engine asks for a batch it has just made, not an old one."""

    def __init__(
        self,
        llm: "OpenAILLM",
        *,
        base_url: str,
        api_key: Optional[str],
        timeout: float,
        transfer_timeout: float = 900.0,
        headers: Optional[Mapping[str, str]] = None,
        params: Optional[Mapping[str, str]] = None,
    ) -> None:
        self._llm = llm
        all_headers: Dict[str, str] = {}
        if api_key:
            all_headers["Authorization"] = f"Bearer {api_key}"
        all_headers.update(openai_account_headers())  # as OpenAILLM online: the organization and project
        all_headers.update(headers or {})
        # Two sessions, because aiohttp's timeout is the session's: a poll should fail in seconds, while a 200 MB
        # upload may take minutes.
        self._client = RESTClient(base_url=base_url, headers=all_headers, timeout=timeout, params=params)
        self._files = RESTClient(
            base_url=base_url, headers=all_headers, timeout=max(timeout, transfer_timeout), params=params
        )

    # ------------------------------------------------------------------ requests

    def encode_request(self, request: BatchRequest) -> bytes:
        """``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": <what OpenAILLM posts>}``."""
        try:
            path, body = self._llm.request_body(request.input, request.num_generations, **request.kwargs)
        except TypeError as error:  # a generation kwarg the API has no field for
            raise ValueError(
                f"request {request.custom_id} for model {self._llm.model!r} cannot be sent to OpenAI's Batch API:"
                f" {error}. Remove that parameter from generation_kwargs."
            ) from error
        line = {"custom_id": request.custom_id, "method": "POST", "url": f"/v1/{path}", "body": body}
        try:
            return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"request {request.custom_id} for model {self._llm.model!r} is not JSON: {error}"
            ) from error

    async def submit(self, lines: List[bytes], submission: str) -> str:
        """Uploads ``lines`` as one JSONL file and creates a batch of it, with the submission in its metadata."""
        if not lines:
            raise ValueError("a batch needs at least one request")
        data = b"\n".join(lines) + b"\n"
        if len(lines) > self.max_requests_per_batch or len(data) > self.max_bytes_per_batch:
            raise ValueError(
                f"{len(lines)} requests of {len(data)} bytes exceed OpenAI's batch limits"
                f" ({self.max_requests_per_batch} requests, {self.max_bytes_per_batch} bytes): split them"
            )
        endpoints = {_url_of(line) for line in lines} - {None}
        if not endpoints:
            raise ValueError("none of the lines is a request encoded by encode_request")
        if len(endpoints) > 1:
            raise ValueError(
                f"a batch has one endpoint, and these requests go to {sorted(endpoints)}: chat messages and raw-text"
                f" prompts of model {self._llm.model!r} must be sent in separate batches"
            )
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", data, filename=f"beam-distil-{submission[:32]}.jsonl", content_type="application/jsonl")
        uploaded = json_object(await self._call(self._files, "POST", "files", form), "OpenAI's files API")
        file_id = _field(uploaded, "id", "the uploaded file")
        created = await self._json(
            "POST",
            "batches",
            {
                "input_file_id": file_id,
                "endpoint": endpoints.pop(),
                "completion_window": "24h",
                "metadata": {SUBMISSION_KEY: submission},
            },
        )
        return _field(created, "id", "the created batch")

    async def find_batch(self, submission: str) -> Optional[str]:
        """The newest batch of the last ``find_batch_max_age`` seconds whose metadata names ``submission``."""
        oldest = time.time() - self.find_batch_max_age
        after: Optional[str] = None
        for _ in range(self.find_batch_max_pages):
            params = {"limit": str(self.list_page_size), **({"after": after} if after else {})}
            page = await self._json("GET", "batches", params=params)
            batches = page.get("data")
            if not isinstance(batches, list):
                raise MalformedResponseError(f"the list of batches has no `data` list: {str(page)[:200]}")
            for batch in batches:  # newest first
                if (batch.get("metadata") or {}).get(SUBMISSION_KEY) == submission:
                    return _field(batch, "id", "a listed batch")
                if (batch.get("created_at") or 0) < oldest:
                    return None
            if not batches or not page.get("has_more"):
                return None
            after = page.get("last_id") or batches[-1].get("id")
        return None

    async def status(self, batch_id: str) -> BatchStatus:
        batch = await self._batch(batch_id)
        provider_status = _field(batch, "status", f"batch {batch_id}")
        state = _STATES.get(provider_status)
        if state is None:  # a state OpenAI added since: not final until it says one of the final ones
            logger.warning("OpenAI batch %s has an unknown status %r; taken as still running", batch_id, provider_status)
            state = "running"
        counts = batch.get("request_counts") or {}
        return BatchStatus(
            state=state,
            provider_status=provider_status,
            total=counts.get("total") or 0,
            completed=counts.get("completed") or 0,
            failed=counts.get("failed") or 0,
            error=_errors_text(batch) if state == "failed" else None,
        )

    async def answers(self, batch_id: str) -> Dict[str, BatchAnswer]:
        batch = await self._batch(batch_id)
        requests = await self._requests_of(batch)
        answers: Dict[str, BatchAnswer] = {}
        # Error file first: should a request be in both, its answer wins.
        for key in ("error_file_id", "output_file_id"):
            file_id = batch.get(key)
            if not file_id:
                continue
            content = await self._call(self._files, "GET", f"files/{file_id}/content")
            for number, raw in enumerate(content.splitlines(), 1):
                if raw.strip():
                    found = self._answer_of_line(raw, requests, f"line {number} of {file_id} (batch {batch_id})")
                    if found is not None:
                        answers[found[0]] = found[1]
        return answers

    async def cancel(self, batch_id: str) -> None:
        await self._json("POST", f"batches/{batch_id}/cancel")

    async def close(self) -> None:
        await self._client.close()
        await self._files.close()

    # ------------------------------------------------------------------ reading answers

    async def _requests_of(self, batch: Dict[str, Any]) -> Dict[str, Tuple[bool, int]]:
        """``custom_id -> (raw-text prompt?, choices asked)`` from the batch's input file: what reading an answer
        needs and the answer does not say. Empty if the input file is gone (answers are then read as they are)."""
        file_id = batch.get("input_file_id")
        try:
            content = await self._call(self._files, "GET", f"files/{file_id}/content")
        except HTTPStatusError as error:
            if error.status != 404:
                raise
            logger.warning(
                "the input file %s of OpenAI batch %s is gone: its answers are read without knowing how many"
                " choices each request asked for", file_id, batch.get("id"),
            )
            return {}
        requests: Dict[str, Tuple[bool, int]] = {}
        for raw in content.splitlines():
            try:
                line = json.loads(raw)
                body = line["body"]
                requests[line["custom_id"]] = (line["url"].endswith("/v1/completions"), int(body.get("n") or 1))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # not a request this API wrote; the batch failed validation on it, if it was sent
        return requests

    def _answer_of_line(
        self, raw: bytes, requests: Dict[str, Tuple[bool, int]], where: str
    ) -> Optional[Tuple[str, BatchAnswer]]:
        """``(custom_id, answer)`` of one output or error file line, or ``None`` for a line that holds no answer
        (not run, unreadable: its request stays unanswered)."""
        try:
            line = json.loads(raw)
        except ValueError:
            self._warn(f"{where} is not JSON and is skipped: {raw[:200]!r}")
            return None
        custom_id = line.get("custom_id") if isinstance(line, dict) else None
        if not isinstance(custom_id, str) or not custom_id:
            self._warn(f"{where} has no custom_id and is skipped: {raw[:200]!r}")
            return None
        response = line.get("response") if isinstance(line.get("response"), dict) else {}
        status = response.get("status_code")
        body = response.get("body")
        if status == 200:
            is_text, n = requests.get(custom_id) or _request_shape(body)
            try:  # the input stands in for the request's: whether it was a raw-text prompt is all that is read
                output = self._llm.output_of_completion(body, "" if is_text else [], n)
            except (KeyError, TypeError, AttributeError) as error:
                self._warn(f"{where} (request {custom_id}) is not a completion ({error!r}) and is skipped")
                return None
            return custom_id, BatchAnswer(output=output)
        error = line.get("error") if isinstance(line.get("error"), dict) else None
        if error is not None and error.get("code") in _NOT_ANSWERED:
            return None
        if isinstance(status, int):
            return custom_id, BatchAnswer(error=self._llm.redact(f"HTTP {status}: {_error_message(body)}"))
        if error is not None:
            return custom_id, BatchAnswer(
                error=self._llm.redact(f"{error.get('code') or 'error'}: {error.get('message') or error}")
            )
        self._warn(f"{where} (request {custom_id}) has neither a response nor an error and is skipped")
        return None

    def _warn(self, message: str) -> None:
        logger.warning("%s", self._llm.redact(message))

    # ------------------------------------------------------------------ HTTP

    async def _batch(self, batch_id: str) -> Dict[str, Any]:
        return await self._json("GET", f"batches/{batch_id}")

    async def _json(
        self, method: str, path: str, body: Any = None, *, params: Optional[Mapping[str, str]] = None
    ) -> Dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        return json_object(await self._call(self._client, method, path, data, params=params), f"OpenAI's {path}")

    async def _call(
        self,
        client: RESTClient,
        method: str,
        path: str,
        data: Any = None,
        *,
        headers: Optional[Mapping[str, str]] = None,
        params: Optional[Mapping[str, str]] = None,
    ) -> bytes:
        try:
            return await client.request_bytes(method, path, data, headers=headers, params=params)
        except Exception as error:  # noqa: BLE001 — re-raised, with the key removed should the server echo it
            self._llm.redact_error(error)
            raise


def _url_of(line: bytes) -> Optional[str]:
    """The ``url`` of an encoded request line; ``None`` for a line that is not one (OpenAI's validation of the
    batch then names it)."""
    try:
        url = json.loads(line).get("url")
    except (ValueError, AttributeError):
        return None
    return url if isinstance(url, str) else None


def _field(obj: Dict[str, Any], name: str, what: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedResponseError(f"{what} has no `{name}`: {str(obj)[:200]}")
    return value


def _request_shape(body: Any) -> Tuple[bool, int]:
    """``(raw-text prompt?, choices)`` read from an answer whose request is not known."""
    is_text = isinstance(body, dict) and body.get("object") == "text_completion"
    choices = body.get("choices") if isinstance(body, dict) else None
    return is_text, max(1, len(choices) if isinstance(choices, list) else 1)


def _error_message(body: Any) -> str:
    """The message of an OpenAI error body (``{"error": {"message": ...}}``), or the body as text."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message") or body["error"])
    return str(body)[:500]


def _errors_text(batch: Dict[str, Any]) -> str:
    """A failed batch's validation errors: ``line 3: This line is not parseable as valid JSON.
    (invalid_json_line); ...``."""
    errors = (batch.get("errors") or {}).get("data") or []
    if not errors:
        return "OpenAI gave no reason"
    parts = []
    for error in errors[:_ERRORS_SHOWN]:
        where = f"line {error['line']}: " if error.get("line") is not None else ""
        code = f" ({error['code']})" if error.get("code") else ""
        parts.append(f"{where}{error.get('message') or 'invalid'}{code}")
    more = f"; and {len(errors) - _ERRORS_SHOWN} more" if len(errors) > _ERRORS_SHOWN else ""
    return "; ".join(parts) + more
