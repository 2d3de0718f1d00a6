"""The framework's ports: small protocols for what controllers read, write, watch and wait on.

Core classes (informer, work queue, controller, leader elector) are handed these, never a
concrete client, so unit tests drive them with an in-memory store and a ``FakeClock``.

Errors are the client's vocabulary (``kray.client.Conflict``, ``NotFound``...) on the write
side; on the watch side both list-watchers turn "too old" (HTTP 410 Gone, etcd compaction)
into one ``ResourceExpired`` so the informer has a single thing to re-list on.
"""

from __future__ import annotations

import asyncio
import builtins
import heapq
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

from kray.crds.meta import Resource
from kray.crds.registry import KindInfo

if TYPE_CHECKING:
    from kray.actors.store.objects import ObjectStore
    from kray.client.aio import AsyncClient

R = TypeVar("R", bound=Resource)
EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]


class ResourceExpired(Exception):
    """The resourceVersion to watch from is gone (compacted): list again."""


@dataclass(frozen=True)
class WatchEvent:
    type: EventType
    object: Resource | None  # None for BOOKMARK
    resource_version: str


# ---------------------------------------------------------------------------------------------
# protocols


@runtime_checkable
class ListWatcher(Protocol):
    """Where an informer gets its objects: a consistent list, then a watch after it."""

    async def list(self, info: KindInfo, namespace: str | None) -> tuple[list[Resource], str]:
        """All objects of the kind (in ``namespace``, or everywhere) and the list's resourceVersion."""
        ...

    def watch(
        self, info: KindInfo, namespace: str | None, resource_version: str
    ) -> AsyncIterator[builtins.list[WatchEvent]]:
        """Batches of changes strictly after ``resource_version``. Raises ResourceExpired."""
        ...


class Reader(Protocol):
    """Reads, normally from the informer cache (``manager.reader``)."""

    async def get(self, kind: type[R], name: str, namespace: str | None = None) -> R: ...

    async def list(
        self, kind: type[R], namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[R]: ...


class Writer(Protocol):
    """Writes through the API server; ``AsyncClient`` satisfies it as is."""

    async def create(self, obj: R) -> R: ...

    async def update(self, obj: R) -> R: ...

    async def update_status(self, obj: R) -> R: ...

    async def patch(self, kind: Any, name: str, patch: Any, namespace: str | None = None) -> Any: ...

    async def delete(self, kind: Any, name: str, namespace: str | None = None) -> Any: ...

    async def get(self, kind: Any, name: str, namespace: str | None = None) -> Any:
        """A live (uncached) read; leader election and event aggregation need one."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


# ---------------------------------------------------------------------------------------------
# clocks


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that only moves when a test calls ``advance``; sleepers wake in deadline order."""

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2024, 1, 1, tzinfo=timezone.utc)
        self._offset = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._offset)

    def monotonic(self) -> float:
        return self._offset

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._offset + seconds, next(self._seq), fut))
        await fut

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def advance(self, seconds: float) -> None:
        """Move time on and wake every sleeper whose deadline has passed (they run on the next
        loop turns: ``await clock.advance_and_settle(...)`` from a test does both)."""
        self._offset += seconds
        while self._sleepers and self._sleepers[0][0] <= self._offset:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    async def advance_and_settle(self, seconds: float, step: float | None = None, turns: int = 20) -> None:
        """Advance in ``step`` increments, letting woken tasks run after each one."""
        step = step or seconds
        remaining = seconds
        while remaining > 1e-9:
            delta = min(step, remaining)
            self.advance(delta)
            remaining -= delta
            for _ in range(turns):
                await asyncio.sleep(0)


# ---------------------------------------------------------------------------------------------
# list-watchers


class StoreListWatcher:
    """Straight off the store's watch (the etcd key prefix): the event bus without the API server."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def list(self, info: KindInfo, namespace: str | None) -> tuple[list[Resource], str]:
        items, revision = await self.store.list(info, namespace)
        return items, str(revision)

    async def watch(
        self, info: KindInfo, namespace: str | None, resource_version: str
    ) -> AsyncIterator[builtins.list[WatchEvent]]:
        from kray.actors.store.kv import CompactedError

        # The store watch starts *at* a revision; Kubernetes semantics are "after" it.
        start = int(resource_version or 0) + 1
        try:
            async for batch in self.store.watch(info, namespace, start):
                yield [WatchEvent(e.type, e.object, str(e.revision)) for e in batch]
        except CompactedError as exc:
            raise ResourceExpired(str(exc)) from exc


class ClientListWatcher:
    """Through the API server's HTTP list and watch (with bookmarks, so resumes stay cheap)."""

    def __init__(self, client: AsyncClient, *, timeout_seconds: int | None = 300) -> None:
        self.client = client
        # The server ends a watch after this; the informer re-watches from its last version.
        self.timeout_seconds = timeout_seconds

    async def list(self, info: KindInfo, namespace: str | None) -> tuple[list[Resource], str]:
        result: Any = await self.client.list(info, namespace, all_namespaces=namespace is None)
        return list(result.items), result.resource_version

    async def watch(
        self, info: KindInfo, namespace: str | None, resource_version: str
    ) -> AsyncIterator[builtins.list[WatchEvent]]:
        from kray.client.errors import Gone

        events: AsyncIterator[Any] = self.client.watch(
            info,
            namespace,
            all_namespaces=namespace is None,
            resource_version=resource_version,
            timeout_seconds=self.timeout_seconds,
            allow_bookmarks=True,
        )
        try:
            async for ev in events:
                if ev.type == "BOOKMARK":
                    yield [WatchEvent("BOOKMARK", None, ev.resource_version)]
                elif ev.type in ("ADDED", "MODIFIED", "DELETED"):
                    yield [WatchEvent(ev.type, ev.object, ev.resource_version)]  # type: ignore[arg-type]
        except Gone as exc:
            raise ResourceExpired(str(exc)) from exc
