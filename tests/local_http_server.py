"""Real HTTP servers on 127.0.0.1 for tests: one aiohttp handler for every path, on its own event loop thread;
and an OpenAI-style server that records each request and answers what the test says."""

from __future__ import annotations

import json
import time
from typing import Any, Awaitable, Callable, Dict, List, Tuple

from aiohttp import web

from beam_distil.testing import local_server

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LocalHTTPServer(local_server.LocalHTTPServer):
    """Serves ``handler`` on a free port until closed; ``with LocalHTTPServer(handler) as server: server.url``."""

    keeps_chosen_port = True

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self._handler = handler

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handler)


class RecordingServer:
    """Records each request and answers with ``reply(path, body)`` -> (status, headers, payload)."""

    def __init__(self, reply) -> None:
        self.reply = reply
        self.seen: List[Dict[str, Any]] = []
        self._server = LocalHTTPServer(self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append({"path": request.path, "url": str(request.url), "headers": dict(request.headers),
                          "body": json.loads(body) if body else None})
        status, headers, payload = self.reply(request.path, self.seen[-1]["body"])
        return web.Response(status=status, headers=headers, body=payload, content_type="application/json")

    def __enter__(self) -> "RecordingServer":
        self._server.start()
        self.port = self._server.port
        self.base_url = f"{self._server.url}/v1"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop()


Reply = Tuple[int, Dict[str, str], Any]
"""``(status, headers, body)``: a body that is not ``bytes`` is sent as JSON."""


class ScriptedServer:
    """A provider's HTTP API on 127.0.0.1: the queued ``failures`` are answered first, in order, then
    ``answer(path, body)``, which a subclass writes in the provider's wire format. Every request is recorded
    (``seen``, ``bodies``) with the time it arrived (``times``)::

        class EchoServer(ScriptedServer):
            def answer(self, path, body):
                return 200, {}, {"text": body["prompt"]}

        with EchoServer() as server:
            server.failures.append((429, {"retry-after": "0.2"}, {"error": "slow down"}))
            ...  # the first request gets the 429, the next ones the echo
    """

    def __init__(self) -> None:
        self.failures: List[Reply] = []
        self.times: List[float] = []
        self.base_url = ""
        self._recording = RecordingServer(self._reply)

    def answer(self, path: str, body: Any) -> Reply:
        raise NotImplementedError

    def _reply(self, path: str, body: Any) -> Tuple[int, Dict[str, str], bytes]:
        self.times.append(time.monotonic())
        status, headers, payload = self.failures.pop(0) if self.failures else self.answer(path, body)
        return status, headers, payload if isinstance(payload, bytes) else json.dumps(payload).encode()

    @property
    def seen(self) -> List[Dict[str, Any]]:
        return self._recording.seen

    @property
    def bodies(self) -> List[Dict[str, Any]]:
        return [request["body"] for request in self.seen]

    def __enter__(self) -> "ScriptedServer":
        self._recording.__enter__()
        self.base_url = f"http://127.0.0.1:{self._recording.port}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._recording.__exit__(*exc_info)
