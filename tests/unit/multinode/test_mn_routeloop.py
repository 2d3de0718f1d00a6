"""The proxy's route loop on the in-memory route table: follows Node events, routes only to the
node agent's Nodes (never to hand-made ones), and removes its routes on stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import kray.crds  # noqa: F401
from kray.actors.framework import StoreListWatcher
from kray.actors.proxy.routeloop import NETWORK_NODE_LABEL, RouteLoop
from kray.actors.store import MemoryKV, ObjectStore
from kray.crds import Node, ObjectMeta
from kray.crds.core.node import NodeAddress, NodeStatus
from kray.crds.registry import REGISTRY
from kray.runtime.routes import FakeRouteTable

NODE = REGISTRY.for_model(Node)


def node(name: str, cidr: str, ip: str, ours: bool = True) -> Node:
    labels = {NETWORK_NODE_LABEL: f"id-{name}"} if ours else None
    n = Node(metadata=ObjectMeta(name=name, labels=labels))
    n.spec.pod_cidr, n.spec.pod_cidrs = cidr, [cidr]
    n.status = NodeStatus(addresses=[NodeAddress(type="InternalIP", address=ip)])
    return n


async def until(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "no sync in time"
        await asyncio.sleep(0.01)


async def test_routes_follow_nodes_and_go_on_stop() -> None:
    kv = MemoryKV()
    store = ObjectStore(kv, REGISTRY)
    table = FakeRouteTable(connected=["192.168.1.0/24"])
    await store.create(NODE, node("a", "10.244.0.0/24", "192.168.1.1"))
    await store.create(NODE, node("b", "10.244.1.0/24", "192.168.1.2"))
    await store.create(NODE, node("hollow", "10.244.9.0/24", "192.168.1.9", ours=False))
    loop = RouteLoop(StoreListWatcher(store), table, "a", min_sync_interval=0.01)
    try:
        assert await loop.start(2)
        await until(lambda: table.list() == {"10.244.1.0/24": "192.168.1.2"})
        await store.create(NODE, node("c", "10.244.2.0/24", "192.168.1.3"))
        await until(lambda: "10.244.2.0/24" in table.list())
        await store.delete(NODE, None, "b")
        await until(lambda: table.list() == {"10.244.2.0/24": "192.168.1.3"})
    finally:
        await loop.stop()
    assert table.list() == {}
    await kv.close()
