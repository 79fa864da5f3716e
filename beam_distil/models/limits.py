"""Client-side limits shared by every request of one LLM client in a process.

* ``AdaptiveConcurrencyLimit``: at most ``maximum`` requests in flight; each rate-limit answer (429) halves the
  allowance and every ``allowance`` successes raise it by one again (additive increase, multiplicative
  decrease), so a client backs off from a server that is shedding load and recovers when it stops.
* ``RateLimiter``: token buckets for requests per minute and tokens per minute.

Both live on the event loop of the process (``beam_distil.models.event_loop``). On a runner with several worker
processes (Dataflow, ``multi_processing``) every process has its own: a limit of 600 requests per minute with
W workers lets the job send up to W x 600, so divide the provider's quota by the number of workers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Optional


class AdaptiveConcurrencyLimit:
    """An async semaphore whose size shrinks on rate limiting and grows back with successes.

    A plain ``asyncio.Semaphore`` of the maximum size does the waiting (one waiter woken per release); shrinking
    is a debt of permits, paid by holders that leave without releasing.
    """

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.allowance = maximum
        self._permits = asyncio.Semaphore(maximum)
        self._debt = 0
        self._successes = 0

    async def __aenter__(self) -> "AdaptiveConcurrencyLimit":
        await self._permits.acquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._debt > 0:
            self._debt -= 1
        else:
            self._permits.release()

    async def on_rate_limited(self) -> None:
        smaller = max(1, self.allowance // 2)
        self._debt += self.allowance - smaller
        self.allowance = smaller
        self._successes = 0
        # Permits nobody holds are taken back at once; the rest as their holders leave.
        while self._debt > 0 and not self._permits.locked():
            await self._permits.acquire()
            self._debt -= 1

    async def on_success(self) -> None:
        if self.allowance >= self.maximum:
            return
        self._successes += 1
        if self._successes >= self.allowance:
            self._successes = 0
            self.allowance += 1
            if self._debt > 0:
                self._debt -= 1
            else:
                self._permits.release()


class _TokenBucket:
    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        # At most one second's worth at once: a minute's budget spent in a burst is what providers reject.
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.updated = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def seconds_until(self, amount: float) -> float:
        self._refill()
        # A request larger than the whole bucket waits for a full bucket rather than forever.
        amount = min(amount, self.capacity)
        return 0.0 if self.level >= amount else (amount - self.level) / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount


class RateLimiter:
    """Waits until a request fits both the requests-per-minute and the tokens-per-minute budget."""

    def __init__(self, requests_per_minute: Optional[int], tokens_per_minute: Optional[int]) -> None:
        self._requests = _TokenBucket(requests_per_minute) if requests_per_minute else None
        self._tokens = _TokenBucket(tokens_per_minute) if tokens_per_minute else None
        self._lock = asyncio.Lock()

    async def wait(self, estimated_tokens: int) -> None:
        if self._requests is None and self._tokens is None:
            return
        async with self._lock:  # first come, first served
            while True:
                delay = max(
                    self._requests.seconds_until(1) if self._requests else 0.0,
                    self._tokens.seconds_until(estimated_tokens) if self._tokens else 0.0,
                )
                if delay <= 0:
                    break
                await asyncio.sleep(delay)
            if self._requests:
                self._requests.take(1)
            if self._tokens:
                self._tokens.take(estimated_tokens)

    def correct_tokens(self, estimated: int, actual: int) -> None:
        """Charges the difference once the server has said how many tokens the request really used."""
        if self._tokens is not None:
            self._tokens.take(actual - estimated)
