"""ObjectStore end to end over both KVs, including a 10,000-object list."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import ClassVar

import pytest
from kvbackends import Backend

from kray.actors.store import KeyExistsError, ObjectStore, RevisionConflictError, WatchEvent
from kray.actors.store.etcd import EtcdKV
from kray.crds.meta import KrayModel, ObjectMeta, Resource
from kray.crds.registry import KindInfo, Registry

pytestmark = pytest.mark.etcd


class ThingSpec(KrayModel):
    replicas: int = 1
    image: str = "busybox"


class Thing(Resource):
    GROUP: ClassVar[str] = "contract.kray.io"
    KIND: ClassVar[str] = "Thing"
    PLURAL: ClassVar[str] = "things"
    spec: ThingSpec = ThingSpec()


REG = Registry()
BASE = REG.register(Thing)


def kind_under(prefix: str) -> KindInfo:
    """The Thing kind with a plural unique to this test, so keys stay under a fresh prefix."""
    return dataclasses.replace(BASE, plural="things-" + prefix.strip("/").replace("/", "-"))


def thing(name: str, ns: str = "default", replicas: int = 1) -> Thing:
    return Thing(metadata=ObjectMeta(name=name, namespace=ns, labels={"app": "x"}), spec=ThingSpec(replicas=replicas))


async def _drop(backend: Backend, store: ObjectStore, info: KindInfo) -> None:
    if isinstance(backend.kv, EtcdKV):
        await backend.kv.delete_prefix(store.prefix(info))


async def test_objectstore_crud_and_watch(backend: Backend) -> None:
    store = ObjectStore(backend.kv, REG)
    info = kind_under(backend.prefix)
    try:
        start = await store.current_revision() + 1
        a = await store.create(info, thing("a", "ns1"))
        with pytest.raises(KeyExistsError):
            await store.create(info, thing("a", "ns1"))
        await store.create(info, thing("a", "ns10"))
        b = a.model_copy(deep=True)
        b.spec.replicas = 3  # type: ignore[attr-defined]
        b = await store.update(info, b)
        with pytest.raises(RevisionConflictError):
            await store.update(info, a)
        items, _ = await store.list(info, "ns1")
        assert [(i.namespace, i.spec.replicas) for i in items] == [("ns1", 3)]  # type: ignore[attr-defined]
        gone = await store.delete(info, "ns1", "a")

        events: list[WatchEvent] = []
        watch = store.watch(info, "ns1", start)

        async def read() -> None:
            async for batch in watch:
                events.extend(batch)
                if len(events) >= 3:
                    return

        await asyncio.wait_for(read(), 10)
        await watch.aclose()  # type: ignore[attr-defined]
        assert [(e.type, e.object.metadata.resource_version) for e in events] == [
            ("ADDED", a.metadata.resource_version),
            ("MODIFIED", b.metadata.resource_version),
            ("DELETED", gone.metadata.resource_version),
        ]
        assert events[2].object.spec.replicas == 3  # type: ignore[attr-defined]
    finally:
        await _drop(backend, store, info)


async def test_list_10k(backend: Backend) -> None:
    store = ObjectStore(backend.kv, REG)
    info = kind_under(backend.prefix)
    try:
        sem = asyncio.Semaphore(64)

        async def make(i: int) -> None:
            async with sem:
                await store.create(info, thing(f"t{i:05d}", "big", i))

        await asyncio.gather(*(make(i) for i in range(10_000)))
        t0 = time.perf_counter()
        items, _ = await store.list(info, "big")
        elapsed = time.perf_counter() - t0
        print(f"\n{backend.name}: list of 10k objects in {elapsed * 1000:.0f} ms")
        assert len(items) == 10_000 and items[42].spec.replicas == 42  # type: ignore[attr-defined]
        assert await store.count(info, "big") == 10_000
        assert elapsed < 3.0
    finally:
        await _drop(backend, store, info)
