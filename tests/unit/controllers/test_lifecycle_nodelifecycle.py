"""The node lifecycle controller with a FakeClock: lease expiry -> Ready=Unknown + unreachable
taints -> evictions after each pod's toleration; renewed lease -> Ready and no taints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.controllers import nodelifecycle as nlc
from kray.actors.framework import EventRecorder, FakeClock, Manager, StoreListWatcher
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient
from kray.crds import Event, Lease, Node, ObjectMeta, Pod
from kray.crds.core.lease import LeaseSpec
from kray.crds.registry import REGISTRY

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
async def env() -> AsyncIterator[tuple[Manager, AsyncClient, FakeClock]]:
    kv = MemoryKV()
    store = ObjectStore(kv, REGISTRY)
    api = ApiServer(store, REGISTRY, token="t", clock=lambda: NOW)
    await api.start()
    clock = FakeClock(NOW)
    transport = httpx.ASGITransport(app=api.app)
    async with AsyncClient(server="http://kray.test", token="t", transport=transport) as client:
        manager = Manager(StoreListWatcher(store), client, clock=clock)
        nlc.setup(manager, grace_period=40, default_toleration_seconds=300)
        # Events named from a standing-still FakeClock would collide: real clock for them.
        manager.controllers["node-lifecycle"].reconciler.recorder = EventRecorder(client, "node-controller")  # type: ignore[attr-defined]
        assert await manager.start_informers(2)
        yield manager, client, clock
        await manager.stop()
    await kv.close()


async def drive(manager: Manager, cond: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await cond():
        if loop.time() > deadline:
            raise AssertionError("the node lifecycle controller did not converge in time")
        await manager.step()
        await asyncio.sleep(0.005)


async def settle(manager: Manager, rounds: int = 10) -> None:
    for _ in range(rounds):
        await manager.step()
        await asyncio.sleep(0.005)


def pod(name: str, tolerations: list[dict[str, Any]] | None = None) -> Pod:
    spec = {"containers": [{"name": "c", "image": "i"}], "nodeName": "n1", "tolerations": tolerations}
    return Pod.model_validate({"metadata": {"name": name, "namespace": "default"}, "spec": spec})


async def renew(client: AsyncClient, clock: FakeClock) -> None:
    lease = await client.get(Lease, "n1", nlc.LEASE_NAMESPACE)
    lease.spec.renew_time = clock.now()
    await client.update(lease)


async def node(client: AsyncClient) -> Node:
    return await client.get(Node, "n1")


def ready(n: Node) -> str | None:
    c = n.status.condition("Ready") if n.status else None
    return c.status if c else None


def taints(n: Node) -> set[tuple[str, str]]:
    return {(t.key, t.effect) for t in n.spec.taints or []}


async def alive(client: AsyncClient) -> set[str]:
    return {p.name for p in (await client.list(Pod, "default")).items if p.metadata.deletion_timestamp is None}


async def test_lease_expiry_taints_evicts_and_recovers(env: tuple[Manager, AsyncClient, FakeClock]) -> None:
    manager, client, clock = env
    status = {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}
    await client.create(Node.model_validate({"metadata": {"name": "n1"}, "status": status}))
    lease_meta = ObjectMeta(name="n1", namespace=nlc.LEASE_NAMESPACE)
    await client.create(Lease(metadata=lease_meta, spec=LeaseSpec(holder_identity="n1", renew_time=clock.now())))
    await client.create(pod("plain"))
    await client.create(
        pod("short", [{"key": nlc.UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}])
    )
    await client.create(pod("forever", [{"operator": "Exists"}]))
    await settle(manager)

    # Heartbeats within the grace period keep it Ready.
    for _ in range(3):
        await clock.advance_and_settle(30)
        await renew(client, clock)
        await settle(manager)
    assert ready(await node(client)) == "True" and taints(await node(client)) == set()

    # Silence past the grace period: NotReady (Unknown) and the unreachable taints.
    await clock.advance_and_settle(41)

    async def unreachable() -> bool:
        n = await node(client)
        return ready(n) == "Unknown" and taints(n) == {(nlc.UNREACHABLE, "NoSchedule"), (nlc.UNREACHABLE, "NoExecute")}

    await drive(manager, unreachable)
    await settle(manager)
    assert await alive(client) == {"plain", "short", "forever"}  # nobody is evicted at once

    clock.advance(61)  # past "short"'s tolerationSeconds

    async def short_gone() -> bool:
        return await alive(client) == {"plain", "forever"}

    await drive(manager, short_gone)
    clock.advance(300)  # past the default toleration

    async def plain_gone() -> bool:
        return await alive(client) == {"forever"}

    await drive(manager, plain_gone)
    reasons = {(e.reason, e.involved_object.name) for e in (await client.list(Event, "default")).items}
    assert {("NodeNotReady", "n1"), ("TaintManagerEviction", "short"), ("TaintManagerEviction", "plain")} <= reasons

    # The lease resumes: Ready again, taints gone.
    await renew(client, clock)

    async def recovered() -> bool:
        n = await node(client)
        return ready(n) == "True" and taints(n) == set()

    await drive(manager, recovered)


async def test_kubelet_reported_not_ready_gets_not_ready_taint(env: tuple[Manager, AsyncClient, FakeClock]) -> None:
    manager, client, clock = env
    status = {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]}
    await client.create(Node.model_validate({"metadata": {"name": "n1"}, "status": status}))
    lease_meta = ObjectMeta(name="n1", namespace=nlc.LEASE_NAMESPACE)
    await client.create(Lease(metadata=lease_meta, spec=LeaseSpec(renew_time=clock.now())))

    async def tainted() -> bool:
        return taints(await node(client)) == {(nlc.NOT_READY, "NoSchedule"), (nlc.NOT_READY, "NoExecute")}

    await drive(manager, tainted)
    assert ready(await node(client)) == "False"  # the kubelet's verdict is left alone


def bound(name: str, node_name: str) -> Pod:
    spec = {"containers": [{"name": "c", "image": "i"}], "nodeName": node_name}
    return Pod.model_validate({"metadata": {"name": name, "namespace": "default"}, "spec": spec})


async def test_pods_of_a_deleted_node_are_force_deleted(env: tuple[Manager, AsyncClient, FakeClock]) -> None:
    manager, client, _clock = env
    await client.create(Node.model_validate({"metadata": {"name": "n1"}}))
    await client.create(bound("a", "n1"))
    await client.create(bound("b", "n1"))
    await settle(manager)
    await client.delete(Node, "n1")

    async def collected() -> bool:
        return not (await client.list(Pod, "default")).items  # gone outright, not Terminating

    await drive(manager, collected)
    reasons = {(e.reason, e.involved_object.name) for e in (await client.list(Event, "default")).items}
    assert {("PodGCOrphaned", "a"), ("PodGCOrphaned", "b")} <= reasons


async def test_pods_of_a_never_seen_node_wait_out_the_quarantine(
    env: tuple[Manager, AsyncClient, FakeClock],
) -> None:
    """As after a restart that missed the Node's deletion: nothing goes before the quarantine,
    and a Node that turns up meanwhile keeps its pods."""
    manager, client, clock = env
    await client.create(bound("ghost-pod", "ghost"))
    await client.create(bound("late-pod", "late"))
    await settle(manager)
    clock.advance(20)
    await settle(manager)
    await client.create(Node.model_validate({"metadata": {"name": "late"}}))
    await settle(manager)
    clock.advance(19)  # 39 s missing: still quarantined
    await settle(manager)
    assert await alive(client) == {"ghost-pod", "late-pod"}
    clock.advance(2)

    async def ghost_collected() -> bool:
        return {p.name for p in (await client.list(Pod, "default")).items} == {"late-pod"}

    await drive(manager, ghost_collected)
    clock.advance(60)
    await settle(manager)
    assert await alive(client) == {"late-pod"}
