"""A controller: a work queue of Requests and the reconciler that drains it.

``step()`` processes what is queued right now (tests drive it); ``run()`` keeps ``workers``
tasks pulling from the queue forever. Either way one key is never reconciled twice at
once, and every outcome of a reconcile maps to exactly one queue action:

    Result()                   -> forget (back-off reset)
    Result(requeue_after=t)    -> forget, add_after(t)
    Result(requeue=True)       -> add_rate_limited
    Conflict (409)             -> add_rate_limited, logged at debug (stale cache, not a bug)
    TerminalError              -> forget, logged once
    any other exception        -> add_rate_limited, logged
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from .ports import Clock, SystemClock
from .reconciler import Reconciler, Request, Result, TerminalError
from .workqueue import ShutDown, WorkQueue

log = logging.getLogger(__name__)


class Controller:
    def __init__(self, name: str, reconciler: Reconciler, *, workers: int = 1, clock: Clock | None = None) -> None:
        self.name = name
        self.reconciler = reconciler
        self.workers = workers
        self.clock: Clock = clock or SystemClock()
        self.queue: WorkQueue[Request] = WorkQueue(clock=self.clock)
        # Counters for status pages and tests.
        self.reconciles = 0
        self.errors = 0
        self.conflicts = 0
        self._tasks: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        return f"Controller({self.name!r})"

    def enqueue(self, request: Request) -> None:
        self.queue.add(request)

    async def step(self) -> int:
        """Reconcile every key ready now (up to ``workers`` at a time); returns how many."""
        keys = self.queue.drain_ready()
        if not keys:
            return 0
        limit = asyncio.Semaphore(self.workers)

        async def one(key: Request) -> None:
            async with limit:
                await self.process(key)

        await asyncio.gather(*(one(k) for k in keys))
        return len(keys)

    async def process(self, request: Request) -> None:
        """Reconcile one key already taken from the queue, then mark it done."""
        from kray.client.errors import Conflict

        started = time.perf_counter()
        try:
            self.reconciles += 1
            result = await self.reconciler.reconcile(request)
        except Conflict as exc:
            self.conflicts += 1
            log.debug("%s: conflict reconciling %s, requeued: %s", self.name, request, exc)
            self.queue.add_rate_limited(request)
        except TerminalError as exc:
            self.errors += 1
            log.error("%s: terminal error reconciling %s (not retried): %s", self.name, request, exc)
            self.queue.forget(request)
        except asyncio.CancelledError:
            self.queue.add(request)  # interrupted (shutdown, lost leadership): not done
            raise
        except Exception:
            self.errors += 1
            log.exception(
                "%s: reconcile %s failed (attempt %d)",
                self.name,
                request,
                self.queue.num_requeues(request) + 1,
            )
            self.queue.add_rate_limited(request)
        else:
            if not isinstance(result, Result):
                result = Result()
            if result.requeue_after is not None and result.requeue_after > 0:
                self.queue.forget(request)
                self.queue.add_after(request, result.requeue_after)
            elif result.requeue:
                self.queue.add_rate_limited(request)
            else:
                self.queue.forget(request)
        finally:
            self.queue.done(request)
            log.debug("%s: reconciled %s in %.1fms", self.name, request, (time.perf_counter() - started) * 1e3)

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.process(key)
            except asyncio.CancelledError:
                raise
            except Exception:  # process() handles reconcile errors; this is a framework bug
                log.exception("%s: worker error", self.name)

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.ensure_future(self._worker()) for _ in range(self.workers)]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def run(self) -> None:
        """Run the workers until cancelled."""
        self.start()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.stop()
