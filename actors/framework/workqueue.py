"""A work queue with client-go's guarantees, for asyncio.

- A dirty set and a processing set: adding a key that is already queued is a no-op.
- A key added while it is being processed is queued again when ``done(key)`` is called,
  so no key is ever handed to two workers at once and no change is lost.
- ``add_after`` delays on an injectable clock; ``add_rate_limited`` delays by a per-key
  exponential back-off that ``forget`` resets (called on success).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

from .ports import Clock, SystemClock

K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):
    """The queue was shut down; workers should exit."""


class ExponentialBackoff(Generic[K]):
    """Per-key back-off: base * 2**failures, capped (client-go's ItemExponentialFailureRateLimiter)."""

    def __init__(self, base: float = 0.005, cap: float = 300.0) -> None:
        self.base = base
        self.cap = cap
        self._failures: dict[K, int] = {}

    def when(self, key: K) -> float:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        return min(self.base * (2**n), self.cap)

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        return self._failures.get(key, 0)


class WorkQueue(Generic[K]):
    def __init__(self, *, clock: Clock | None = None, rate_limiter: ExponentialBackoff[K] | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self.rate_limiter: ExponentialBackoff[K] = rate_limiter or ExponentialBackoff()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._waiting: list[tuple[float, int, K]] = []  # (ready at, seq, key): a heap
        self._ready_at: dict[K, float] = {}  # earliest time per waiting key (dedupe)
        self._seq = itertools.count()
        self._changed = asyncio.Event()
        self._shutting_down = False

    # ---- adding ----

    def add(self, key: K) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # queued again by done()
        self._queue.append(key)
        self._changed.set()

    def add_after(self, key: K, delay: float) -> None:
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        ready = self.clock.monotonic() + delay
        # A key waiting already keeps its earlier time (client-go's delaying queue does too).
        if key in self._ready_at and self._ready_at[key] <= ready:
            return
        self._ready_at[key] = ready
        heapq.heappush(self._waiting, (ready, next(self._seq), key))
        self._changed.set()

    def add_rate_limited(self, key: K) -> None:
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: K) -> None:
        self.rate_limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self.rate_limiter.num_requeues(key)

    # ---- taking ----

    def _promote(self) -> None:
        now = self.clock.monotonic()
        while self._waiting and self._waiting[0][0] <= now:
            ready, _, key = heapq.heappop(self._waiting)
            if self._ready_at.get(key) == ready:
                del self._ready_at[key]
                self.add(key)

    def _take(self) -> K:
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def get_nowait(self) -> K | None:
        """The next ready key (now marked processing), or None."""
        if self._shutting_down:
            raise ShutDown()
        self._promote()
        return self._take() if self._queue else None

    def drain_ready(self) -> list[K]:
        """Every key ready now, each marked processing (one ``done`` per key)."""
        out: list[K] = []
        while (key := self.get_nowait()) is not None:
            out.append(key)
        return out

    async def get(self) -> K:
        """Wait for the next key; raises ShutDown once shut down."""
        while True:
            key = self.get_nowait()
            if key is not None:
                return key
            self._changed.clear()
            waits: list[asyncio.Future[object]] = [asyncio.ensure_future(self._changed.wait())]
            if self._waiting:
                delay = self._waiting[0][0] - self.clock.monotonic()
                waits.append(asyncio.ensure_future(self.clock.sleep(delay)))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await w

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._changed.set()

    # ---- state ----

    def shutdown(self) -> None:
        self._shutting_down = True
        self._changed.set()

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def __len__(self) -> int:
        return len(self._queue)

    def waiting(self) -> int:
        return len(self._ready_at)

    def is_processing(self, key: K) -> bool:
        return key in self._processing
