"""The informer: list, then watch from the listed version, into an indexed local cache.

Like client-go's shared informer: handlers hear add/update/delete; a dropped watch resumes
from the last version seen (no events lost or repeated); a "too old" version re-lists and
emits synthetic events for what changed meanwhile (deletes for objects that vanished);
a periodic resync re-announces every cached object as an update so level-based
controllers converge even after a missed or mishandled event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from kray.crds.meta import Resource
from kray.crds.registry import KindInfo

from .cache import Indexer, IndexFunc, key_of
from .ports import Clock, ListWatcher, ResourceExpired, SystemClock, WatchEvent

log = logging.getLogger(__name__)


class EventHandler(Protocol):
    def on_add(self, obj: Resource) -> None: ...

    def on_update(self, old: Resource, new: Resource) -> None: ...

    def on_delete(self, obj: Resource) -> None: ...


@dataclass
class FuncHandler:
    """An EventHandler from plain functions; missing ones are no-ops."""

    add: Callable[[Resource], None] | None = None
    update: Callable[[Resource, Resource], None] | None = None
    delete: Callable[[Resource], None] | None = None

    def on_add(self, obj: Resource) -> None:
        if self.add:
            self.add(obj)

    def on_update(self, old: Resource, new: Resource) -> None:
        if self.update:
            self.update(old, new)

    def on_delete(self, obj: Resource) -> None:
        if self.delete:
            self.delete(obj)


class Informer:
    def __init__(
        self,
        list_watcher: ListWatcher,
        info: KindInfo,
        namespace: str | None = None,
        *,
        clock: Clock | None = None,
        resync_period: float | None = None,
        indexers: dict[str, IndexFunc] | None = None,
        retry_initial: float = 0.2,
        retry_max: float = 30.0,
    ) -> None:
        self.lw = list_watcher
        self.info = info
        self.namespace = namespace if info.namespaced else None
        self.clock: Clock = clock or SystemClock()
        self.resync_period = resync_period
        self.cache = Indexer(indexers)
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.resource_version = ""  # last version seen (list or event); where a watch resumes
        self.lists = 0  # how many times it listed (1 + re-lists): visible to tests and metrics
        self._handlers: list[EventHandler] = []
        self._synced = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._progress = asyncio.Condition()

    def __repr__(self) -> str:
        return f"Informer({self.info.kind}, namespace={self.namespace!r})"

    # ---- configuration ----

    def add_handler(self, handler: EventHandler) -> None:
        """Register a handler; if already synced it hears an add for every cached object."""
        self._handlers.append(handler)
        if self.has_synced():
            for obj in self.cache.list():
                self._call(handler.on_add, obj)

    def add_index(self, name: str, func: IndexFunc) -> None:
        self.cache.add_index(name, func)

    # ---- lifecycle ----

    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def wait_for_version(self, resource_version: str, timeout: float = 5.0) -> None:
        """Wait until the cache reflects ``resource_version`` (tests; read-your-writes)."""

        def caught_up() -> bool:
            return bool(self.resource_version) and int(self.resource_version) >= int(resource_version)

        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(caught_up), timeout)

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks.append(asyncio.ensure_future(self.run()))
        if self.resync_period:
            self._tasks.append(asyncio.ensure_future(self._resync_loop(self.resync_period)))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def run(self) -> None:
        """List and watch until cancelled; never raises anything but cancellation."""
        delay = self.retry_initial
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list_and_replace()
                    need_list = False
                delay = self.retry_initial
                if await self._watch():
                    # A watch that ended normally (server timeout, dropped stream): resume at once.
                    continue
                # One that ended without delivering anything: pause, rather than spin on it.
            except ResourceExpired as exc:
                log.info("%r: watch from %s expired (%s); re-listing", self, self.resource_version, exc)
                need_list = True
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the connection or the server: back off, resume
                log.warning("%r: list/watch failed (%s); retrying in %.1fs", self, exc, delay)
            await self.clock.sleep(delay)
            delay = min(delay * 2, self.retry_max)

    # ---- internals ----

    async def _list_and_replace(self) -> None:
        items, rv = await self.lw.list(self.info, self.namespace)
        self.lists += 1
        fresh = {key_of(o): o for o in items}
        # Vanished objects first, then adds/updates: handlers see the diff as events.
        for key in self.cache.keys():  # noqa: SIM118  (a copy: we remove while iterating)
            if key not in fresh:
                old = self.cache.remove(key)
                if old is not None:
                    self._dispatch_delete(old)
        for obj in items:
            old = self.cache.upsert(obj)
            if old is None:
                self._dispatch_add(obj)
            elif old.metadata.resource_version != obj.metadata.resource_version:
                self._dispatch_update(old, obj)
        await self._advance(rv)
        self._synced.set()

    async def _watch(self) -> int:
        batches = 0
        async for batch in self.lw.watch(self.info, self.namespace, self.resource_version):
            batches += 1
            for event in batch:
                self._apply(event)
            await self._advance(batch[-1].resource_version if batch else self.resource_version)
        return batches

    def _apply(self, event: WatchEvent) -> None:
        obj = event.object
        if event.type == "BOOKMARK" or obj is None:
            return
        if event.type == "DELETED":
            old = self.cache.remove(key_of(obj))
            self._dispatch_delete(old or obj)
            return
        old = self.cache.upsert(obj)
        if old is None:
            self._dispatch_add(obj)
        else:
            self._dispatch_update(old, obj)

    async def _advance(self, rv: str) -> None:
        if rv:
            self.resource_version = rv
        async with self._progress:
            self._progress.notify_all()

    async def _resync_loop(self, period: float) -> None:
        while True:
            await self.clock.sleep(period)
            self.resync()

    def resync(self) -> None:
        """Announce every cached object again as an update (old == new)."""
        for obj in self.cache.list():
            self._dispatch_update(obj, obj)

    def _dispatch_add(self, obj: Resource) -> None:
        for h in self._handlers:
            self._call(h.on_add, obj)

    def _dispatch_update(self, old: Resource, new: Resource) -> None:
        for h in self._handlers:
            self._call(h.on_update, old, new)

    def _dispatch_delete(self, obj: Resource) -> None:
        for h in self._handlers:
            self._call(h.on_delete, obj)

    def _call(self, fn: Callable[..., None], *args: Resource) -> None:
        # One faulty handler must not stop the cache from being kept or others from hearing.
        try:
            fn(*args)
        except Exception:
            log.exception("%r: event handler %r failed", self, fn)
