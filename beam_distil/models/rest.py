"""A small asynchronous JSON-over-HTTP client for the backends that talk to their provider's REST API directly
(Anthropic, Cohere, Ollama...), and how their errors are sorted into retryable and final.

Like ``OpenAIRESTClient`` (which keeps the openai SDK's exception classes for ``OpenAILLM``), it posts with
aiohttp from the process's event loop: one session per client, no connection cap of its own (the LLM's
``max_concurrency`` bounds what is in flight), the ``HTTP(S)_PROXY``/``NO_PROXY`` proxy resolved once::

    client = RESTClient(base_url="https://api.anthropic.com", headers={"x-api-key": key}, timeout=120)
    answer = await client.post("v1/messages", {"model": "claude-3-5-haiku-latest", "max_tokens": 64, ...})
    await client.close()

Errors: ``HTTPStatusError`` (the server answered with a status >= 400; ``status``, ``body``, ``retry_after``),
``HTTPTransportError`` (refused, reset, timed out) and ``MalformedResponseError`` (an answer that is not JSON).
``classify_http_error`` turns them into a ``RetryDecision``: 429 is rate limiting (retried after
``Retry-After``), 408, 409 and 5xx are retried, other 4xx are final, transport and malformed answers are retried.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any, Dict, Mapping, Optional
from urllib.parse import urlsplit

import aiohttp

from beam_distil import __version__
from beam_distil.models.retries import RetryDecision


class HTTPStatusError(Exception):
    """The server answered with an error status; ``body`` is its decoded answer (or text)."""

    def __init__(self, message: str, *, status: int, body: Any, retry_after: Optional[float], url: str) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body
        self.retry_after = retry_after
        self.url = url


class HTTPTransportError(Exception):
    """The request did not get an answer: refused, reset, or timed out."""


class MalformedResponseError(Exception):
    """The server answered 2xx with something that is not JSON."""


class RESTClient:
    """Posts JSON to ``{base_url}/{path}`` and returns the decoded answer; raises this module's errors."""

    def __init__(
        self,
        *,
        base_url: str,
        headers: Optional[Mapping[str, str]] = None,
        timeout: float,
        params: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._params = dict(params or {})
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"beam-distil/{__version__}",
            **dict(headers or {}),
        }
        self._proxy = proxy_for(self.base_url)
        self._session: Optional[aiohttp.ClientSession] = None

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers=self._headers,
            )
        return self._session

    async def post(self, path: str, body: Any, *, headers: Optional[Mapping[str, str]] = None) -> Any:
        """The decoded JSON answer to ``body`` posted at ``{base_url}/{path}``."""
        return await self.request("POST", path, body, headers=headers)

    async def request(
        self, method: str, path: str, body: Any = None, *, headers: Optional[Mapping[str, str]] = None
    ) -> Any:
        """The decoded JSON answer (``None`` for an empty one) to ``method`` on ``{base_url}/{path}``."""
        data = json.dumps(body).encode() if body is not None else None
        raw = await self.request_bytes(method, path, data, headers=headers)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as error:
            url = f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url
            raise MalformedResponseError(f"the answer from {url} is not JSON ({error}): {raw[:200]!r}") from error

    async def request_bytes(
        self,
        method: str,
        path: str,
        data: Any = None,
        *,
        headers: Optional[Mapping[str, str]] = None,
        params: Optional[Mapping[str, str]] = None,
    ) -> bytes:
        """The raw answer to ``method`` on ``{base_url}/{path}`` (or on ``path`` itself when it is a full URL), for
        what is not one JSON document: a JSONL results file, a multipart upload (``data`` an
        ``aiohttp.FormData``, or bytes). Raises this module's errors, as ``request`` does."""
        url = path if "://" in path else (f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url)
        query = {**self._params, **params} if params else self._params
        if isinstance(data, aiohttp.FormData):
            # The session's JSON Content-Type would replace the multipart one (with its boundary).
            data = data()
            headers = {**dict(headers or {}), "Content-Type": data.content_type}
        try:
            async with self._open_session().request(
                method, url, data=data, params=query or None, headers=headers, proxy=self._proxy
            ) as response:
                raw = await response.read()
                status, response_headers = response.status, response.headers
        except asyncio.TimeoutError as error:
            raise HTTPTransportError(f"{method} {url} timed out after {self.timeout} s") from error
        except aiohttp.ClientError as error:
            raise HTTPTransportError(f"{method} {url} failed: {type(error).__name__}: {error}") from error
        if status >= 400:
            raise status_error(url, status, response_headers, raw)
        return raw

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def json_object(raw: bytes, source: str) -> Dict[str, Any]:
    """``raw`` decoded as one JSON object; ``MalformedResponseError`` (worth a retry) naming ``source`` (the URL,
    or what answered) when it is not one."""
    try:
        decoded = json.loads(raw)
    except ValueError as error:
        raise MalformedResponseError(f"the answer from {source} is not JSON ({error}): {raw[:200]!r}") from error
    if not isinstance(decoded, dict):
        raise MalformedResponseError(f"the answer from {source} is not a JSON object: {raw[:200]!r}")
    return decoded


def proxy_for(url: str) -> Optional[str]:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``/``HTTP_PROXY``, minus ``NO_PROXY``), if any."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def retry_after_seconds(headers: Mapping[str, str]) -> Optional[float]:
    """Seconds the server asked to wait (``retry-after-ms``, or ``Retry-After`` in seconds), if it did."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return float(value) * scale
            except ValueError:  # an HTTP date: not worth parsing, the backoff applies
                return None
    return None


def status_error(url: str, status: int, headers: Mapping[str, str], raw: bytes) -> HTTPStatusError:
    """``HTTPStatusError`` for an error answer, with the server's message and its ``Retry-After``."""
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return HTTPStatusError(
        f"HTTP {status} from {url}: {body}", status=status, body=body, retry_after=retry_after_seconds(headers), url=url
    )


def classify_http_error(error: BaseException) -> RetryDecision:
    """Whether a ``RESTClient`` error is worth a retry, after how long, and whether it was rate limiting."""
    if isinstance(error, HTTPStatusError):
        if error.status == 429:
            return RetryDecision(retryable=True, retry_after=error.retry_after, rate_limited=True)
        retryable = error.status in (408, 409) or error.status >= 500
        return RetryDecision(retryable=retryable, retry_after=error.retry_after if retryable else None)
    return RetryDecision(retryable=isinstance(error, (HTTPTransportError, MalformedResponseError, asyncio.TimeoutError)))
