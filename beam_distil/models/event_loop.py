"""One asyncio event loop per process, on a daemon thread, shared by every caller and thread of that process.

The async LLM clients own their connections and limits on this loop. Callers run on many threads (a runner's
worker threads, a user's own); a loop and an HTTP client per caller would multiply connections and split the
concurrency caps. Coroutines are handed to this loop from any thread and awaited through
``concurrent.futures.Future``::

    from beam_distil.models.event_loop import run_coroutine, submit

    output = run_coroutine(llm.agenerate([{"role": "user", "content": "Hi"}]))   # wait here
    future = submit(llm.agenerate(prompt))                                         # or later: future.result()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from typing import Any, Coroutine, Optional, TypeVar

_T = TypeVar("_T")

_lock = threading.Lock()
_loop: Optional[asyncio.AbstractEventLoop] = None
_loop_pid: Optional[int] = None


def get_loop() -> asyncio.AbstractEventLoop:
    """The process's background loop, started on first use (and again in a forked child)."""
    global _loop, _loop_pid
    with _lock:
        if _loop is None or _loop_pid != os.getpid() or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="beam-distil-event-loop", daemon=True)
            thread.start()
            _loop, _loop_pid = loop, os.getpid()
        return _loop


def submit(coroutine: Coroutine[Any, Any, _T]) -> "concurrent.futures.Future[_T]":
    """Schedules ``coroutine`` on the background loop; returns a thread-safe future."""
    return asyncio.run_coroutine_threadsafe(coroutine, get_loop())


def run_coroutine(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Runs ``coroutine`` on the background loop and waits for its result."""
    return submit(coroutine).result()


def close_on_loop(client: Any, timeout: float = 10) -> None:
    """Awaits ``client.close()`` on the background loop: an HTTP client's connections belong to the loop that
    opened them, so they are closed there (on an ``LLM.unload``, from whichever thread calls it)."""
    submit(client.close()).result(timeout=timeout)
