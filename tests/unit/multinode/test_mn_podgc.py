"""Pod GC in the node lifecycle controller: once a Node is deleted, the pods still bound to it
(Terminating ones included: no kubelet will ever confirm their end) are force-deleted; pods of
other nodes are left alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timezone

import httpx
import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.controllers import nodelifecycle as nlc
from kray.actors.framework import FakeClock, Manager, StoreListWatcher
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient
from kray.crds import Node, ObjectMeta, Pod
from kray.crds.registry import REGISTRY

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
async def env() -> AsyncIterator[tuple[Manager, AsyncClient]]:
    kv = MemoryKV()
    store = ObjectStore(kv, REGISTRY)
    api = ApiServer(store, REGISTRY, token="t", clock=lambda: NOW)
    await api.start()
    transport = httpx.ASGITransport(app=api.app)
    async with AsyncClient(server="http://kray.test", token="t", transport=transport) as client:
        manager = Manager(StoreListWatcher(store), client, clock=FakeClock(NOW))
        nlc.setup(manager, grace_period=40, default_toleration_seconds=300)
        assert await manager.start_informers(2)
        yield manager, client
        await manager.stop()
    await kv.close()


def pod(name: str, node: str) -> Pod:
    spec = {"containers": [{"name": "c", "image": "i"}], "nodeName": node}
    return Pod.model_validate({"metadata": {"name": name, "namespace": "default"}, "spec": spec})


async def names(client: AsyncClient) -> set[str]:
    return {p.name for p in (await client.list(Pod, "default")).items}


async def test_pods_of_a_deleted_node_are_force_deleted(env: tuple[Manager, AsyncClient]) -> None:
    manager, client = env
    for name in ("n1", "n2"):
        await client.create(Node(metadata=ObjectMeta(name=name)))
    for name, node in (("a", "n1"), ("b", "n1"), ("c", "n2")):
        await client.create(pod(name, node))
    await client.delete(Pod, "b", "default")  # graceful: Terminating, waiting for a kubelet
    assert (await client.get(Pod, "b", "default")).metadata.deletion_timestamp is not None
    for _ in range(10):
        await manager.step()
        await asyncio.sleep(0.005)
    assert await names(client) == {"a", "b", "c"}  # a Node that exists: nothing collected
    await client.delete(Node, "n1")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while await names(client) != {"c"}:
        assert loop.time() < deadline, await names(client)
        await manager.step()
        await asyncio.sleep(0.005)
