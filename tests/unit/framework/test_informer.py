"""Informer over ObjectStore(MemoryKV()): cache + indexes, handlers, dropped watches, compaction, resync."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from kray.actors.framework import FakeClock, FuncHandler, Informer, StoreListWatcher, WatchEvent
from kray.actors.framework.cache import NAMESPACE_INDEX, NODE_NAME_INDEX, OWNER_UID_INDEX
from kray.actors.store import ObjectStore
from kray.crds import REGISTRY, ConfigMap, ObjectMeta, OwnerReference, Pod, Resource
from kray.crds.core import Container, PodSpec
from kray.crds.registry import KindInfo

from .conftest import eventually

CM = REGISTRY.for_model(ConfigMap)
POD = REGISTRY.for_model(Pod)


def cm(name: str, ns: str = "default", **labels: str) -> ConfigMap:
    return ConfigMap(metadata=ObjectMeta(name=name, namespace=ns, labels=labels or None), data={"v": "1"})


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def handler(self) -> FuncHandler:
        return FuncHandler(
            add=lambda o: self.events.append(("add", o.name)),
            update=lambda old, new: self.events.append(("update", new.name)),
            delete=lambda o: self.events.append(("delete", o.name)),
        )


class ControlledLW:
    """A StoreListWatcher a test can cut: ``drop()`` ends the current watch; ``pause()`` also
    holds the next one until ``resume()``; ``fail_next`` raises from the next watch call."""

    def __init__(self, inner: StoreListWatcher) -> None:
        self.inner = inner
        self.watched_from: list[str] = []
        self.fail_next: Exception | None = None
        self._current: asyncio.Queue[object] | None = None
        self._gate = asyncio.Event()
        self._gate.set()

    async def list(self, info: KindInfo, namespace: str | None) -> tuple[list[Resource], str]:
        return await self.inner.list(info, namespace)

    def drop(self) -> None:
        if self._current is not None:
            self._current.put_nowait(None)

    def pause(self) -> None:
        self._gate.clear()
        self.drop()

    def resume(self) -> None:
        self._gate.set()

    async def watch(self, info: KindInfo, namespace: str | None, rv: str) -> AsyncIterator[list[WatchEvent]]:
        await self._gate.wait()
        self.watched_from.append(rv)
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        items: asyncio.Queue[object] = asyncio.Queue()
        self._current = items

        async def pump() -> None:
            try:
                async for batch in self.inner.watch(info, namespace, rv):
                    items.put_nowait(batch)
            except Exception as exc:
                items.put_nowait(exc)

        task = asyncio.ensure_future(pump())
        try:
            while True:
                item = await items.get()
                if item is None:
                    return
                if isinstance(item, Exception):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def informer(lw: StoreListWatcher, clock: FakeClock) -> AsyncIterator[Informer]:
    inf = Informer(lw, CM, clock=clock)
    yield inf
    await inf.stop()


async def test_list_then_watch_feeds_cache_and_handlers(store: ObjectStore, informer: Informer) -> None:
    await store.create(CM, cm("a"))
    rec = Recorder()
    informer.add_handler(rec.handler())
    informer.start()
    assert await informer.wait_for_sync(2)
    assert informer.has_synced()
    assert rec.events == [("add", "a")]

    b = await store.create(CM, cm("b", "other"))
    a = await store.get(CM, "default", "a")
    a.data = {"v": "2"}
    await store.update(CM, a)
    last = await store.delete(CM, "other", "b")
    await informer.wait_for_version(last.metadata.resource_version or "")
    assert rec.events == [("add", "a"), ("add", "b"), ("update", "a"), ("delete", "b")]
    cached = informer.cache.get("default/a")
    assert cached is not None and cached.data == {"v": "2"}  # type: ignore[attr-defined]
    assert "other/b" not in informer.cache
    assert b.metadata.resource_version


async def test_late_handler_hears_adds_for_the_cache(store: ObjectStore, informer: Informer) -> None:
    await store.create(CM, cm("a"))
    informer.start()
    await informer.wait_for_sync(2)
    rec = Recorder()
    informer.add_handler(rec.handler())
    assert rec.events == [("add", "a")]


async def test_indexes_namespace_labels_owner_node_and_custom(store: ObjectStore, lw: StoreListWatcher) -> None:
    owner = OwnerReference(api_version="v1", kind="Namespace", name="x", uid="uid-1", controller=True)
    await store.create(CM, cm("a", "ns1", app="web"))
    await store.create(CM, cm("b", "ns1", app="db"))
    c = cm("c", "ns2", app="web")
    c.metadata.owner_references = [owner]
    await store.create(CM, c)
    inf = Informer(lw, CM, indexers={"by-app": lambda o: [(o.metadata.labels or {}).get("app", "")]})
    inf.start()
    try:
        await inf.wait_for_sync(2)
        names = lambda objs: [o.name for o in objs]  # noqa: E731
        assert names(inf.cache.list("ns1")) == ["a", "b"]
        assert names(inf.cache.list(label_selector="app=web")) == ["a", "c"]
        assert names(inf.cache.list("ns1", label_selector="app in (db)")) == ["b"]
        assert names(inf.cache.by_index(NAMESPACE_INDEX, "ns2")) == ["c"]
        assert names(inf.cache.by_index(OWNER_UID_INDEX, "uid-1")) == ["c"]
        assert names(inf.cache.by_index("by-app", "web")) == ["a", "c"]
        inf.add_index("by-data", lambda o: list(getattr(o, "data", None) or {}))  # after start: backfilled
        assert len(inf.cache.by_index("by-data", "v")) == 3
        # An update moves an object between index values.
        b = await store.get(CM, "ns1", "b")
        b.metadata.labels = {"app": "web"}
        new = await store.update(CM, b)
        await inf.wait_for_version(new.metadata.resource_version or "")
        assert names(inf.cache.by_index("by-app", "web")) == ["a", "b", "c"]
        assert inf.cache.by_index("by-app", "db") == []
    finally:
        await inf.stop()

    pod = Pod(
        metadata=ObjectMeta(name="p", namespace="ns1"),
        spec=PodSpec(containers=[Container(name="c", image="busybox")], node_name="node-1"),
    )
    await store.create(POD, pod)
    pods = Informer(lw, POD)
    pods.start()
    try:
        await pods.wait_for_sync(2)
        assert [p.name for p in pods.cache.by_index(NODE_NAME_INDEX, "node-1")] == ["p"]
    finally:
        await pods.stop()


async def test_dropped_watch_resumes_from_last_version_without_relist(
    store: ObjectStore, lw: StoreListWatcher, clock: FakeClock
) -> None:
    clw = ControlledLW(lw)
    inf = Informer(clw, CM, clock=clock)
    rec = Recorder()
    inf.add_handler(rec.handler())
    inf.start()
    try:
        await inf.wait_for_sync(2)
        first = await store.create(CM, cm("a"))
        await inf.wait_for_version(first.metadata.resource_version or "")
        clw.pause()
        await store.create(CM, cm("b"))  # written while no watch is open
        last = await store.create(CM, cm("c"))
        clw.resume()  # that watch had delivered events, so the next one starts at once
        await inf.wait_for_version(last.metadata.resource_version or "")
        assert rec.events == [("add", "a"), ("add", "b"), ("add", "c")]  # nothing lost or repeated
        assert inf.lists == 1
        assert clw.watched_from[-1] == first.metadata.resource_version

        # A failing watch call backs off on the injected clock, then resumes.
        clw.fail_next = ConnectionError("api server went away")
        clw.drop()
        await eventually(lambda: clock.sleepers == 1)
        again = await store.create(CM, cm("d"))
        await clock.advance_and_settle(inf.retry_initial)
        await inf.wait_for_version(again.metadata.resource_version or "")
        assert rec.events[-1] == ("add", "d")
        assert inf.lists == 1
    finally:
        await inf.stop()


async def test_compaction_forces_relist_with_synthetic_events(
    store: ObjectStore, lw: StoreListWatcher, clock: FakeClock
) -> None:
    clw = ControlledLW(lw)
    await store.create(CM, cm("stays"))
    await store.create(CM, cm("changes"))
    await store.create(CM, cm("vanishes"))
    inf = Informer(clw, CM, clock=clock)
    rec = Recorder()
    inf.add_handler(rec.handler())
    inf.start()
    try:
        await inf.wait_for_sync(2)
        rec.events.clear()
        clw.pause()
        changes = await store.get(CM, "default", "changes")
        changes.data = {"v": "2"}
        await store.update(CM, changes)
        await store.delete(CM, "default", "vanishes")
        await store.create(CM, cm("appears"))
        await store.kv.compact(await store.current_revision())
        clw.resume()
        # A watch that ended without events pauses retry_initial (on the clock) before the next.
        await eventually(lambda: clock.sleepers == 1)
        await clock.advance_and_settle(inf.retry_initial)
        await eventually(lambda: inf.lists == 2)
        assert sorted(rec.events) == [("add", "appears"), ("delete", "vanishes"), ("update", "changes")]
        assert sorted(inf.cache.keys()) == ["default/appears", "default/changes", "default/stays"]
        # And it watches on from the new list.
        later = await store.create(CM, cm("later"))
        await inf.wait_for_version(later.metadata.resource_version or "")
        assert rec.events[-1] == ("add", "later")
    finally:
        await inf.stop()


async def test_periodic_resync_on_the_injected_clock(store: ObjectStore, lw: StoreListWatcher) -> None:
    clock = FakeClock()
    await store.create(CM, cm("a"))
    await store.create(CM, cm("b"))
    inf = Informer(lw, CM, clock=clock, resync_period=30)
    rec = Recorder()
    inf.add_handler(rec.handler())
    inf.start()
    try:
        await inf.wait_for_sync(2)
        rec.events.clear()
        await clock.advance_and_settle(29)
        assert rec.events == []
        await clock.advance_and_settle(1)
        assert rec.events == [("update", "a"), ("update", "b")]
    finally:
        await inf.stop()


async def test_a_failing_handler_does_not_break_the_informer(store: ObjectStore, informer: Informer) -> None:
    def boom(obj: Resource) -> None:
        raise RuntimeError("handler bug")

    rec = Recorder()
    informer.add_handler(FuncHandler(add=boom))
    informer.add_handler(rec.handler())
    informer.start()
    await informer.wait_for_sync(2)
    created = await store.create(CM, cm("a"))
    await informer.wait_for_version(created.metadata.resource_version or "")
    assert rec.events == [("add", "a")]
    assert "default/a" in informer.cache
