"""ObjectStore over MemoryKV: keys, encoding, CRUD, list, watch typing."""

from __future__ import annotations

import asyncio
import json
import time
from typing import ClassVar

import pytest

from kray.actors.store import (
    CompactedError,
    KeyExistsError,
    KeyNotFoundError,
    MemoryKV,
    ObjectStore,
    RevisionConflictError,
    WatchEvent,
)
from kray.crds.meta import KrayModel, ObjectMeta, Resource
from kray.crds.registry import Registry


class WidgetSpec(KrayModel):
    size: int = 0
    color: str | None = None


class Widget(Resource):
    GROUP: ClassVar[str] = "test.kray.io"
    KIND: ClassVar[str] = "Widget"
    PLURAL: ClassVar[str] = "widgets"
    spec: WidgetSpec = WidgetSpec()


class Gadget(Resource):
    KIND: ClassVar[str] = "Gadget"
    PLURAL: ClassVar[str] = "gadgets"
    NAMESPACED: ClassVar[bool] = False


REG = Registry()
WIDGETS = REG.register(Widget)
GADGETS = REG.register(Gadget)


def widget(name: str, ns: str = "default", size: int = 1) -> Widget:
    return Widget(metadata=ObjectMeta(name=name, namespace=ns), spec=WidgetSpec(size=size))


@pytest.fixture
async def store():
    kv = MemoryKV()
    yield ObjectStore(kv, REG)
    await kv.close()


def test_keys_and_prefixes() -> None:
    assert ObjectStore.key(WIDGETS, "ns1", "a") == "/registry/test.kray.io/widgets/ns1/a"
    assert ObjectStore.key(GADGETS, None, "g") == "/registry/core/gadgets/g"
    assert ObjectStore.prefix(WIDGETS) == "/registry/test.kray.io/widgets/"
    assert ObjectStore.prefix(WIDGETS, "ns1") == "/registry/test.kray.io/widgets/ns1/"
    assert ObjectStore.prefix(GADGETS, "ignored") == "/registry/core/gadgets/"
    with pytest.raises(ValueError):
        ObjectStore.key(WIDGETS, None, "a")


def test_encoding_drops_resource_version() -> None:
    obj = widget("a")
    obj.metadata.resource_version = "42"
    data = json.loads(ObjectStore.encode(obj))
    assert "resourceVersion" not in data["metadata"]
    assert data["apiVersion"] == "test.kray.io/v1" and data["kind"] == "Widget"
    assert b" " not in ObjectStore.encode(obj)  # compact


async def test_crud_roundtrip(store: ObjectStore) -> None:
    created = await store.create(WIDGETS, widget("a", size=3))
    assert isinstance(created, Widget) and created.spec.size == 3
    rv = int(created.metadata.resource_version or 0)
    assert rv > 0
    got = await store.get(WIDGETS, "default", "a")
    assert got == created
    with pytest.raises(KeyExistsError):
        await store.create(WIDGETS, widget("a"))

    got.spec.size = 4
    updated = await store.update(WIDGETS, got)
    assert int(updated.metadata.resource_version or 0) > rv
    with pytest.raises(RevisionConflictError):
        await store.update(WIDGETS, got)  # still carries the old resourceVersion

    with pytest.raises(RevisionConflictError):
        await store.delete(WIDGETS, "default", "a", expected_resource_version=str(rv))
    deleted = await store.delete(WIDGETS, "default", "a", expected_resource_version=updated.metadata.resource_version)
    assert deleted.spec.size == 4  # type: ignore[attr-defined]
    assert int(deleted.metadata.resource_version or 0) == await store.current_revision()
    with pytest.raises(KeyNotFoundError):
        await store.get(WIDGETS, "default", "a")
    with pytest.raises(KeyNotFoundError):
        await store.update(WIDGETS, updated)
    with pytest.raises(KeyNotFoundError):
        await store.delete(WIDGETS, "default", "a")


async def test_unconditional_update(store: ObjectStore) -> None:
    await store.create(WIDGETS, widget("u"))
    blind = widget("u", size=9)  # no resourceVersion
    out = await store.update(WIDGETS, blind)
    assert out.spec.size == 9  # type: ignore[attr-defined]
    with pytest.raises(KeyNotFoundError):
        await store.update(WIDGETS, widget("missing"))


async def test_list_namespaces_do_not_bleed(store: ObjectStore) -> None:
    for ns in ("a", "ab", "b"):
        for i in range(3):
            await store.create(WIDGETS, widget(f"w{i}", ns))
    await store.create(GADGETS, Gadget(metadata=ObjectMeta(name="g")))
    items, rev = await store.list(WIDGETS, "a")
    assert [(o.namespace, o.name) for o in items] == [("a", "w0"), ("a", "w1"), ("a", "w2")]
    assert rev == await store.current_revision()
    all_items, _ = await store.list(WIDGETS)
    assert len(all_items) == 9
    assert await store.count(WIDGETS) == 9 and await store.count(WIDGETS, "ab") == 3
    gadgets, _ = await store.list(GADGETS)
    assert [g.name for g in gadgets] == ["g"] and isinstance(gadgets[0], Gadget)
    assert all(o.metadata.resource_version for o in all_items)


async def test_watch_types_and_revisions(store: ObjectStore) -> None:
    start = await store.current_revision() + 1
    a = await store.create(WIDGETS, widget("a", "ns"))
    await store.create(WIDGETS, widget("other", "ns2"))
    changed = a.model_copy(deep=True)
    changed.spec.size = 7  # type: ignore[attr-defined]
    a2 = await store.update(WIDGETS, changed)
    gone = await store.delete(WIDGETS, "ns", "a")

    events: list[WatchEvent] = []
    watch = store.watch(WIDGETS, "ns", start)
    async for batch in watch:
        events.extend(batch)
        if len(events) >= 3:
            break
    await watch.aclose()  # type: ignore[attr-defined]
    assert [e.type for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[0].object == a and events[1].object == a2
    assert events[2].object == gone
    assert [e.revision for e in events] == [int(o.metadata.resource_version or 0) for o in (a, a2, gone)]


async def test_watch_compacted(store: ObjectStore) -> None:
    await store.create(WIDGETS, widget("c1"))
    rev = (await store.create(WIDGETS, widget("c2"))).metadata.resource_version
    await store.kv.compact(int(rev or 0))
    with pytest.raises(CompactedError):
        async for _ in store.watch(WIDGETS, None, 1):
            pass


async def test_list_10k_is_fast(store: ObjectStore) -> None:
    kv = store.kv
    for i in range(10_000):
        obj = widget(f"w{i:05d}", "big", size=i)
        obj.metadata.labels = {"app": "bench", "idx": str(i)}
        await kv.create(ObjectStore.key(WIDGETS, "big", obj.name), ObjectStore.encode(obj))
    t0 = time.perf_counter()
    items, _ = await store.list(WIDGETS, "big")
    elapsed = time.perf_counter() - t0
    assert len(items) == 10_000 and items[123].spec.size == 123  # type: ignore[attr-defined]
    print(f"list of 10k widgets: {elapsed * 1000:.1f} ms")
    assert elapsed < 2.0  # generous for slow CI; typically tens of ms


async def test_concurrent_watchers_see_the_same_stream(store: ObjectStore) -> None:
    start = await store.current_revision() + 1

    async def consume(n: int) -> list[int]:
        seen: list[int] = []
        async for batch in store.watch(WIDGETS, "cw", start):
            seen.extend(e.revision for e in batch)
            if len(seen) >= n:
                return seen
        return seen

    tasks = [asyncio.create_task(consume(20)) for _ in range(20)]
    for i in range(20):
        await store.create(WIDGETS, widget(f"x{i}", "cw"))
        if i % 5 == 0:
            await asyncio.sleep(0)
    results = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert all(r == results[0] for r in results) and len(results[0]) == 20
    assert results[0] == sorted(results[0])
