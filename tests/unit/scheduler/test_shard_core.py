"""ShardCore end to end on the in-memory cluster: informers in, bindings through the API server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from kray.actors.apiserver.binding import read_allocation
from kray.actors.framework.ports import StoreListWatcher
from kray.actors.scheduler.binder import ApiBinder
from kray.actors.scheduler.reporter import ApiStatusReporter
from kray.actors.scheduler.shard import ShardCore
from kray.actors.scheduler.sharding import shard_of
from kray.crds import Node, Pod
from kray.crds.core.event import Event

from .test_shard_helpers import Cluster, memory_cluster, node_body, pod_body


@pytest.fixture
async def cluster():  # type: ignore[no-untyped-def]
    async with memory_cluster() as c:
        yield c


def make_shards(c: Cluster, n: int) -> list[ShardCore]:
    lw = StoreListWatcher(c.store)
    return [
        ShardCore(
            i,
            n,
            pods=lw,
            nodes=lw,
            pod_groups=lw,
            binder=ApiBinder(c.client),
            reporter=ApiStatusReporter(c.client),
            seed=i,
        )
        for i in range(n)
    ]


async def until(cond: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_shards_place_every_pod_without_overcommit(cluster: Cluster) -> None:
    for i in range(4):
        await cluster.client.create_raw(node_body(f"n{i}", cpu="4", memory="64Gi"), Node)
    shards = make_shards(cluster, 3)
    tasks = [asyncio.ensure_future(s.run()) for s in shards]
    try:
        for i in range(20):  # 16 fit (4 nodes x 4 cpu), 4 do not
            await cluster.client.create_raw(pod_body(f"p{i}", cpu="1", memory="1Gi"), Pod)

        async def placed() -> bool:
            pods = (await cluster.client.list(Pod, "default")).items
            return sum(1 for p in pods if p.spec.node_name) == 16

        await until(placed)
        await asyncio.sleep(0.2)
        pods = (await cluster.client.list(Pod, "default")).items
        assert sum(1 for p in pods if p.spec.node_name) == 16
        for i in range(4):
            assert len((await read_allocation(cluster.store, f"n{i}")).pods) == 4
        assert sum(s.bound for s in shards) == 16

        async def reported() -> bool:
            pending = [p for p in (await cluster.client.list(Pod, "default")).items if not p.spec.node_name]
            conds = [p.status.condition("PodScheduled") if p.status else None for p in pending]
            return len(pending) == 4 and all(c is not None and c.reason == "Unschedulable" for c in conds)

        await until(reported)
        pending = [p for p in (await cluster.client.list(Pod, "default")).items if not p.spec.node_name]
        cond = pending[0].status.condition("PodScheduled")  # type: ignore[union-attr]
        assert cond is not None and cond.message == "0/4 nodes are available: 4 Insufficient cpu."
        assert cond.reason == "Unschedulable"
        events = (await cluster.client.list(Event, "default")).items
        assert any(e.reason == "FailedScheduling" and e.message == cond.message for e in events)

        # Freeing room lets a waiting pod in (the delete releases the allocation too).
        victim = next(p for p in pods if p.spec.node_name)
        await cluster.client.delete(Pod, victim.metadata.name, "default", grace_period_seconds=0)

        async def refilled() -> bool:
            pods = (await cluster.client.list(Pod, "default")).items
            return sum(1 for p in pods if p.spec.node_name) == 16

        await until(refilled)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_stale_caches_race_but_the_transaction_holds(cluster: Cluster) -> None:
    """Two shards with identical views each want the one free slot: only one bind lands."""
    await cluster.client.create_raw(node_body("solo", cpu="1", memory="8Gi"), Node)
    shards = make_shards(cluster, 2)
    for s in shards:
        await s.start()
    a = b = None
    for i in range(50):  # find one pod per shard
        body = pod_body(f"r{i}", cpu="1")
        pod = Pod.model_validate(body)
        if shard_of(pod, 2) == 0 and a is None:
            a = body
        elif shard_of(pod, 2) == 1 and b is None:
            b = body
    assert a is not None and b is not None
    await cluster.client.create_raw(a, Pod)
    await cluster.client.create_raw(b, Pod)
    await asyncio.sleep(0.05)  # both informers see both pods; neither has bound anything yet
    b0, b1 = shards[0].scheduler.schedule_one(), shards[1].scheduler.schedule_one()
    assert len(b0) == 1 and len(b1) == 1  # both think the node is free
    results = await asyncio.gather(shards[0].scheduler.bind(b0[0]), shards[1].scheduler.bind(b1[0]))
    assert sorted(r.ok for r in results) == [False, True]
    assert len((await read_allocation(cluster.store, "solo")).pods) == 1
    for s in shards:
        await s.stop()


async def test_crash_restart_rebuilds_from_list_and_watch(cluster: Cluster) -> None:
    await cluster.client.create_raw(node_body("n0", cpu="8"), Node)
    shard = make_shards(cluster, 1)[0]
    shard.restart_delay = 0.01
    task = asyncio.ensure_future(shard.run())
    try:
        await cluster.client.create_raw(pod_body("before"), Pod)

        async def bound(name: str) -> bool:
            return bool((await cluster.client.get(Pod, name, "default")).spec.node_name)

        await until(lambda: bound("before"))
        # Break the loop from the inside: the next cycle raises, run() rebuilds.
        real = shard.scheduler.schedule_one

        def boom() -> list:
            shard.scheduler.schedule_one = real  # type: ignore[method-assign]
            raise RuntimeError("injected")

        shard.scheduler.schedule_one = boom  # type: ignore[method-assign]
        await cluster.client.create_raw(pod_body("after"), Pod)
        await until(lambda: bound("after"))
        assert shard.restarts >= 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_reshard_hands_pending_pods_to_the_new_owner(cluster: Cluster) -> None:
    shard = make_shards(cluster, 1)[0]
    await shard.start()
    for i in range(12):
        await cluster.client.create_raw(pod_body(f"q{i}"), Pod)
    await asyncio.sleep(0.05)
    assert len(shard.scheduler.queue) == 12
    shard.reshard(3)
    owned = sum(1 for i in range(12) if shard_of(Pod.model_validate(pod_body(f"q{i}")), 3) == 0)
    assert len(shard.scheduler.queue) == owned
    await shard.stop()
