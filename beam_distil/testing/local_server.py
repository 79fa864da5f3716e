"""The life of a local HTTP server for tests, benchmarks and demos: an aiohttp application on 127.0.0.1, served
by its own event loop on a daemon thread, so that a test (or any synchronous caller) can start it, talk to it
over real HTTP and stop it.

A server subclasses ``LocalHTTPServer`` and adds its routes; the rest (binding, the loop thread, a clean stop,
the context manager, ``base_url``) is here::

    from aiohttp import web
    from beam_distil.testing.local_server import LocalHTTPServer

    class HelloServer(LocalHTTPServer):
        url_path = "/v1"

        def add_routes(self, app: web.Application) -> None:
            app.router.add_get("/v1/hello", self._hello)

        async def _hello(self, request: web.Request) -> web.Response:
            return web.json_response({"hello": "world"})

    with HelloServer() as server:
        print(server.base_url)  # http://127.0.0.1:PORT/v1
"""

from __future__ import annotations

import abc
import asyncio
import socket
import threading
from typing import Optional, TypeVar

from aiohttp import web

__all__ = ["LocalHTTPServer"]

_Server = TypeVar("_Server", bound="LocalHTTPServer")


class LocalHTTPServer(abc.ABC):
    """An aiohttp application served on ``host:port`` from a background thread; ``port=0`` picks a free port.

    A subclass writes ``add_routes`` and may set the class attributes below, and ``on_stop`` to end work that
    would otherwise hold the stop. ``start`` returns the server, ``stop`` may be called twice, and ``with`` does
    both.

    Args:
        host: the address to bind.
        port: the port to bind, ``0`` for any free one (``bound_port`` tells which).
        backlog: connections the socket queues before they are accepted (a benchmark's bursts want more).
        shutdown_timeout: seconds ``stop`` leaves requests in progress to finish before closing them.
    """

    url_path: str = ""
    """What ``base_url`` adds after ``http://host:port``: the prefix clients put before the API's paths."""
    thread_name: str = "local-http-server"
    """The name of the serving thread (the bound port is appended), to tell servers apart in a thread dump."""
    client_max_size: int = 1024**2
    """The largest request body accepted, in bytes (aiohttp's default)."""
    handler_cancellation: bool = False
    """Whether a handler is cancelled when its client disconnects (aiohttp's ``handler_cancellation``)."""
    keeps_chosen_port: bool = False
    """Whether ``start`` writes the port it bound back to ``port``: a restart then serves on the same address, and
    a URL built from ``port`` still names the server once it is stopped (to test a client against one that is
    down)."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, backlog: int = 128, shutdown_timeout: float = 60.0
    ) -> None:
        self.host = host
        self.port = port
        self.backlog = backlog
        self.shutdown_timeout = shutdown_timeout
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._runner: Optional[web.AppRunner] = None
        self._bound_port: Optional[int] = None

    @abc.abstractmethod
    def add_routes(self, app: web.Application) -> None:
        """Adds the server's handlers to ``app``; called once per ``start``, on the server's loop."""

    async def on_stop(self) -> None:
        """Runs on the server's loop when ``stop`` begins, before connections are closed; does nothing here."""

    def start(self: _Server) -> _Server:
        """Binds the socket and serves on a daemon thread; returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        # Bound here, not by aiohttp, so that the port chosen for port=0 is known before any client needs base_url,
        # and a port already taken fails in the caller's thread, before any thread is started.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(self.backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._bound_port = sock.getsockname()[1]

        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=self._run_loop, args=(loop,), name=f"{self.thread_name}-{self._bound_port}", daemon=True
        )
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self._serve(sock), loop).result(timeout=30)
        except BaseException:
            sock.close()
            self.stop()
            raise
        if self.keeps_chosen_port:
            self.port = self._bound_port
        return self

    def stop(self) -> None:
        """Stops serving and joins the background thread. Safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if self._runner is not None and loop.is_running():
                # Cleanup may wait shutdown_timeout for requests in progress; the margin is for the rest of it.
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=self.shutdown_timeout + 30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            if not thread.is_alive():  # closing a loop that still runs would raise over the real error
                loop.close()
            self._loop = self._thread = self._runner = None
            self._bound_port = None

    def __enter__(self: _Server) -> _Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def is_running(self) -> bool:
        return self._thread is not None

    @property
    def bound_port(self) -> int:
        """The port served on (the one chosen when ``port`` is 0)."""
        if self._bound_port is None:
            raise RuntimeError("server is not running")
        return self._bound_port

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` followed by ``url_path``: the value to give a client as its base URL."""
        return f"http://{self.host}:{self.bound_port}{self.url_path}"

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    async def _serve(self, sock: socket.socket) -> None:
        app = web.Application(client_max_size=self.client_max_size)
        self.add_routes(app)
        # access_log=None: logging every request costs throughput and floods test output.
        runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=self.handler_cancellation,
            shutdown_timeout=self.shutdown_timeout,
        )
        await runner.setup()
        await web.SockSite(runner, sock, backlog=self.backlog).start()
        self._runner = runner

    async def _shutdown(self) -> None:
        await self.on_stop()
        assert self._runner is not None
        await self._runner.cleanup()
