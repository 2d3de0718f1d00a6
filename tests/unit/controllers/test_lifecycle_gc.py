"""The garbage collector on the in-memory cluster: background, foreground and orphan deletion
through an owner -> child -> grandchild chain, several owners, and unknown owner kinds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone

import httpx
import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.controllers import garbagecollector
from kray.actors.framework import FakeClock, Manager, StoreListWatcher, owner_reference
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient, NotFound
from kray.crds import ConfigMap, ObjectMeta, OwnerReference, Pod, Secret
from kray.crds.registry import REGISTRY

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
NS = "default"


@pytest.fixture
async def env() -> AsyncIterator[tuple[Manager, AsyncClient]]:
    kv = MemoryKV()
    store = ObjectStore(kv, REGISTRY)
    api = ApiServer(store, REGISTRY, token="t", clock=lambda: NOW)
    await api.start()
    transport = httpx.ASGITransport(app=api.app)
    async with AsyncClient(server="http://kray.test", token="t", transport=transport) as client:
        manager = Manager(StoreListWatcher(store), client, clock=FakeClock(NOW))
        garbagecollector.setup(manager)
        assert await manager.start_informers(2)
        yield manager, client
        await manager.stop()
    await kv.close()


async def drive(manager: Manager, cond: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await cond():
        if loop.time() > deadline:
            raise AssertionError("the garbage collector did not converge in time")
        await manager.step()
        await asyncio.sleep(0.005)


async def settle(manager: Manager, rounds: int = 20) -> None:
    for _ in range(rounds):
        await manager.step()
        await asyncio.sleep(0.005)


async def cm(client: AsyncClient, name: str, *owners: ConfigMap | Secret) -> ConfigMap:
    refs = [owner_reference(o) for o in owners] or None
    return await client.create(ConfigMap(metadata=ObjectMeta(name=name, namespace=NS, owner_references=refs)))


async def get(client: AsyncClient, name: str) -> ConfigMap | None:
    try:
        return await client.get(ConfigMap, name, NS)
    except NotFound:
        return None


async def chain(client: AsyncClient) -> tuple[ConfigMap, ConfigMap, ConfigMap]:
    root = await cm(client, "root")
    child = await cm(client, "child", root)
    grandchild = await cm(client, "grandchild", child)
    return root, child, grandchild


async def test_background_deletes_the_whole_chain(env: tuple[Manager, AsyncClient]) -> None:
    manager, client = env
    await chain(client)
    # A pod owned by the root too: dependents of any kind go.
    root = await client.get(ConfigMap, "root", NS)
    pod = Pod.model_validate(
        {"metadata": {"name": "p", "namespace": NS}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    )
    pod.metadata.owner_references = [owner_reference(root)]
    await client.create(pod)
    await settle(manager)
    assert await get(client, "grandchild") is not None  # live owners: nothing is touched
    await client.delete(ConfigMap, "root", NS)

    async def all_gone() -> bool:
        pods = (await client.list(Pod, NS)).items
        return await get(client, "child") is None and await get(client, "grandchild") is None and not pods

    await drive(manager, all_gone)


async def test_foreground_waits_for_dependents(env: tuple[Manager, AsyncClient]) -> None:
    manager, client = env
    await chain(client)
    # A finalizer on the grandchild holds the chain so the intermediate state can be seen.
    await client.patch(ConfigMap, "grandchild", {"metadata": {"finalizers": ["test/hold"]}}, NS)
    await client.delete(ConfigMap, "root", NS, propagation_policy="Foreground")

    async def holding() -> bool:
        root, child, grand = await get(client, "root"), await get(client, "child"), await get(client, "grandchild")
        return (
            root is not None
            and child is not None
            and child.metadata.deletion_timestamp is not None
            and "foregroundDeletion" in (child.metadata.finalizers or [])
            and grand is not None
            and grand.metadata.deletion_timestamp is not None
        )

    await drive(manager, holding)
    await settle(manager)
    root = await get(client, "root")
    assert root is not None and root.metadata.finalizers == ["foregroundDeletion"]
    await client.patch(ConfigMap, "grandchild", {"metadata": {"finalizers": None}}, NS)

    async def all_gone() -> bool:
        return all([await get(client, n) is None for n in ("root", "child", "grandchild")])

    await drive(manager, all_gone)


async def test_orphan_keeps_dependents(env: tuple[Manager, AsyncClient]) -> None:
    manager, client = env
    _, child, _ = await chain(client)
    await client.delete(ConfigMap, "root", NS, propagation_policy="Orphan")

    async def orphaned() -> bool:
        c = await get(client, "child")
        return await get(client, "root") is None and c is not None and not c.metadata.owner_references

    await drive(manager, orphaned)
    await settle(manager)
    grand = await get(client, "grandchild")
    assert grand is not None and [r.uid for r in grand.metadata.owner_references or []] == [child.metadata.uid]


async def test_several_owners_and_unknown_kinds(env: tuple[Manager, AsyncClient]) -> None:
    manager, client = env
    a = await cm(client, "a")
    b = await client.create(Secret(metadata=ObjectMeta(name="b", namespace=NS)))
    shared = await cm(client, "shared", a, b)
    # An owner of a kind nobody registered: the collector cannot tell, so it leaves it alone.
    unknown = OwnerReference(api_version="example.com/v1", kind="Widget", name="w", uid="u-1")
    await client.create(ConfigMap(metadata=ObjectMeta(name="mystery", namespace=NS, owner_references=[unknown])))
    # An owner that was replaced by a same-named object: the one it referenced is gone.
    stale = OwnerReference(api_version="v1", kind="ConfigMap", name="a", uid="not-a-current-uid")
    await client.create(ConfigMap(metadata=ObjectMeta(name="stale", namespace=NS, owner_references=[stale])))
    await client.delete(ConfigMap, "a", NS)

    async def converged() -> bool:
        s = await get(client, "shared")
        refs = [r.uid for r in (s.metadata.owner_references or [])] if s else None
        return refs == [b.metadata.uid] and await get(client, "stale") is None

    await drive(manager, converged)
    await settle(manager)
    assert await get(client, "mystery") is not None
    assert shared.metadata.uid == (await client.get(ConfigMap, "shared", NS)).metadata.uid
