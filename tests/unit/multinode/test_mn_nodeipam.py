"""The node IPAM controller against a real in-memory API server: one podCIDR per Node, never
twice, rebuilt from the Nodes after a restart, freed on delete, an error when exhausted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone

import httpx
import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.controllers import nodeipam
from kray.actors.controllers.nodeipam import CIDRExhaustedError, CIDRSet
from kray.actors.framework import FakeClock, Manager, StoreListWatcher
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient
from kray.crds import Node, ObjectMeta
from kray.crds.registry import REGISTRY

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
Env = tuple[ObjectStore, AsyncClient, FakeClock]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    kv = MemoryKV()
    store = ObjectStore(kv, REGISTRY)
    api = ApiServer(store, REGISTRY, token="t", clock=lambda: NOW)
    await api.start()
    transport = httpx.ASGITransport(app=api.app)
    async with AsyncClient(server="http://kray.test", token="t", transport=transport) as client:
        yield store, client, FakeClock(NOW)
    await kv.close()


async def start(env: Env, **options: object) -> Manager:
    store, client, clock = env
    manager = Manager(StoreListWatcher(store), client, clock=clock)
    nodeipam.setup(manager, **options)
    assert await manager.start_informers(2)
    return manager


async def drive(manager: Manager, cond: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await cond():
        assert loop.time() < deadline, "the node IPAM controller did not converge"
        await manager.step()
        await asyncio.sleep(0.005)


async def cidrs(client: AsyncClient) -> dict[str, str | None]:
    return {n.name: n.spec.pod_cidr for n in (await client.list(Node)).items}


async def all_assigned(client: AsyncClient) -> bool:
    return all((await cidrs(client)).values())


def test_cidr_set_blocks_and_exhaustion() -> None:
    s = CIDRSet("10.1.0.0/22", 24)
    assert [s.allocate() for _ in range(4)] == ["10.1.0.0/24", "10.1.1.0/24", "10.1.2.0/24", "10.1.3.0/24"]
    with pytest.raises(CIDRExhaustedError):
        s.allocate()
    s.release("10.1.2.0/24")
    assert s.allocate() == "10.1.2.0/24"
    assert not s.occupy("10.2.0.0/24") and not s.occupy("10.1.0.0/25")  # not ours: ignored
    with pytest.raises(ValueError):
        CIDRSet("10.1.0.0/24", 16)
    assert CIDRSet("fd00::/48", 64).allocate() == "fd00::/64"


async def test_assigns_each_node_a_distinct_cidr(env: Env) -> None:
    _, client, _ = env
    manager = await start(env, cluster_cidr="10.250.0.0/16", node_mask=24)
    pre = Node(metadata=ObjectMeta(name="pre"))
    pre.spec.pod_cidr, pre.spec.pod_cidrs = "10.250.0.0/24", ["10.250.0.0/24"]  # set by hand: kept
    await client.create(pre)
    for i in range(5):
        await client.create(Node(metadata=ObjectMeta(name=f"n{i}")))
    await drive(manager, lambda: all_assigned(client))
    got = await cidrs(client)
    assert got["pre"] == "10.250.0.0/24"
    assert len(set(got.values())) == 6
    assert all(c and c.startswith("10.250.") and c.endswith("/24") for c in got.values())
    node = await client.get(Node, "n0")
    assert node.spec.pod_cidrs == [node.spec.pod_cidr]
    # Steady state: more passes change nothing.
    for _ in range(5):
        await manager.step()
    assert await cidrs(client) == got
    await manager.stop()


async def test_restart_rebuilds_used_set_and_delete_releases(env: Env) -> None:
    _, client, _ = env
    manager = await start(env, cluster_cidr="10.251.0.0/23", node_mask=24)  # two blocks only
    await client.create(Node(metadata=ObjectMeta(name="a")))
    await drive(manager, lambda: all_assigned(client))
    await manager.stop()
    # A fresh controller (no memory of its own) must not hand out a's block again.
    manager = await start(env, cluster_cidr="10.251.0.0/23", node_mask=24)
    await client.create(Node(metadata=ObjectMeta(name="b")))
    await drive(manager, lambda: all_assigned(client))
    got = await cidrs(client)
    assert sorted(c or "" for c in got.values()) == ["10.251.0.0/24", "10.251.1.0/24"]
    # Exhausted: c waits (no podCIDR) ...
    await client.create(Node(metadata=ObjectMeta(name="c")))
    for _ in range(5):
        await manager.step()
        await asyncio.sleep(0.005)
    assert (await cidrs(client))["c"] is None
    # ... until a is deleted and its block comes free (c is retried after EXHAUSTED_RETRY).
    a_block = got["a"]
    await client.delete(Node, "a")
    _, _, clock = env

    async def c_assigned() -> bool:
        clock.advance(nodeipam.EXHAUSTED_RETRY)
        return (await cidrs(client)).get("c") == a_block

    await drive(manager, c_assigned)
    await manager.stop()
