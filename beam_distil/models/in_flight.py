"""Counting the requests a caller really has in flight: sent to the server (or running in the model) and not yet
answered. Requests queued behind a client's concurrency cap, its rate limit or a retry's back-off are not counted.

A caller (a Task's DoFn) opens ``counting_requests_into(counter)`` around the coroutines it hands to the event
loop; each backend marks the span of one attempt with ``request_in_flight()``. The counter travels in a
``contextvars.ContextVar``, which asyncio copies into every task a coroutine starts, so one client shared by
several tasks still counts each task's requests apart::

    counter = InFlightCounter()
    async def batch():
        with counting_requests_into(counter):
            await asyncio.gather(*(llm.acall(prompt) for prompt in prompts))
    # meanwhile, from any thread: counter.current, counter.peak
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from typing import Callable, Iterator, Optional


class InFlightCounter:
    """How many requests are in flight now (``current``) and at most so far (``peak``); thread-safe.

    ``on_change(delta)`` is called after each change, from the thread that made it (the event loop's, or a
    model's worker thread), e.g. to forward it to a progress board.
    """

    def __init__(self, on_change: Optional[Callable[[int], None]] = None) -> None:
        self._lock = threading.Lock()
        self._on_change = on_change
        self.current = 0
        self.peak = 0

    def add(self, delta: int) -> None:
        with self._lock:
            self.current += delta
            self.peak = max(self.peak, self.current)
        if self._on_change is not None:
            self._on_change(delta)


_counter: contextvars.ContextVar[Optional[InFlightCounter]] = contextvars.ContextVar(
    "beam_distil_in_flight_counter", default=None
)


@contextlib.contextmanager
def counting_requests_into(counter: Optional[InFlightCounter]) -> Iterator[None]:
    """Requests marked by ``request_in_flight`` in this context (and the tasks it starts) go to ``counter``."""
    token = _counter.set(counter)
    try:
        yield
    finally:
        _counter.reset(token)


@contextlib.contextmanager
def request_in_flight(requests: int = 1) -> Iterator[None]:
    """Marks ``requests`` as in flight for as long as the block runs, on the caller's counter if it has one."""
    counter = _counter.get()
    if counter is not None:
        counter.add(requests)
    try:
        yield
    finally:
        if counter is not None:
            counter.add(-requests)
