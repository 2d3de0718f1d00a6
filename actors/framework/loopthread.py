"""Run an actor's async core on an event loop of its own thread.

Ray actors that host a long-running core (scheduler shards, proxy, DNS) need their methods
(``ready``, ``status``, ``stop``) to answer while the core runs, and the core must not share
Ray's own loop. One place for that instead of a copy in every actor.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class LoopThread:
    """Starts ``serve()`` on a new thread's loop; waits (up to ``start_timeout``) until it runs."""

    def __init__(self, serve: Callable[[], Coroutine[Any, Any, None]], name: str, start_timeout: float = 30.0) -> None:
        self.name = name
        self.error: str | None = None  # repr of what ended the core, if it failed
        self.loop: asyncio.AbstractEventLoop | None = None
        self.main: asyncio.Task[None] | None = None
        self._serve = serve
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._started.wait(start_timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        try:
            self.main = loop.create_task(self._serve())
            loop.call_soon(self._started.set)
            loop.run_until_complete(self.main)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self.error = repr(exc)
                log.exception("%s failed", self.name)
        finally:
            self._started.set()
            loop.close()

    @property
    def running(self) -> bool:
        return self.main is not None and not self.main.done()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the core's loop from another thread and wait for its result."""
        if self.loop is None or not self.running:
            coro.close()
            raise RuntimeError(f"{self.name} is not running")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        loop, main = self.loop, self.main
        if loop is not None and main is not None and not main.done():
            loop.call_soon_threadsafe(main.cancel)
        self._thread.join(timeout)
