"""Scheduler shards against the real API server (a subprocess) on real etcd, with hollow nodes."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from kray.actors.apiserver.binding import Allocation, allocation_key, node_allocatable, pod_requests
from kray.actors.framework.ports import StoreListWatcher
from kray.actors.hollow import HollowNodes, NodeTemplate
from kray.actors.hollow.cluster import LocalControlPlane
from kray.actors.scheduler.binder import ApiBinder
from kray.actors.scheduler.reporter import ApiStatusReporter
from kray.actors.scheduler.shard import ShardCore
from kray.actors.scheduler.sharding import shard_of
from kray.actors.store.etcd import EtcdKV
from kray.actors.store.objects import ObjectStore
from kray.client import AsyncClient
from kray.crds import Pod
from kray.crds.core.event import Event
from kray.crds.scheduling import POD_GROUP_LABEL, PodGroup

pytestmark = [pytest.mark.etcd, pytest.mark.slow]


@pytest.fixture
def plane() -> Iterator[LocalControlPlane]:
    with LocalControlPlane() as cp:
        yield cp


class Env:
    def __init__(self, plane: LocalControlPlane) -> None:
        self.plane = plane
        self.kv = EtcdKV(plane.etcd_endpoint)
        self.store = ObjectStore(self.kv)
        self.client = AsyncClient(server=plane.url, token=plane.token)
        self.shards: list[ShardCore] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.hollow: HollowNodes | None = None

    async def start(self, shards: int, nodes: int, template: NodeTemplate, prefix: str = "hollow") -> None:
        lw = StoreListWatcher(self.store)
        self.hollow = HollowNodes(self.client, lw, count=nodes, prefix=prefix, template=template, heartbeat_interval=5)
        await self.hollow.start()
        self.shards = [
            ShardCore(i, shards, pods=lw, nodes=lw, pod_groups=lw, binder=ApiBinder(self.client),
                      reporter=ApiStatusReporter(self.client), seed=i)
            for i in range(shards)
        ]  # fmt: skip
        self.tasks = [asyncio.ensure_future(s.run()) for s in self.shards]

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.hollow is not None:
            await self.hollow.stop()
        await self.client.aclose()
        await self.kv.close()

    async def pods(self, ns: str) -> list[Pod]:
        return list((await self.client.list(Pod, ns)).items)

    def busy(self) -> bool:
        return any(s.scheduler.queue.active or s.scheduler.queue.backoff or s._inflight for s in self.shards)


@pytest.fixture
async def env(plane: LocalControlPlane) -> AsyncIterator[Env]:
    e = Env(plane)
    try:
        yield e
    finally:
        await e.close()


async def until(cond: Any, timeout: float = 60.0, every: float = 0.05) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(every)


async def create_all(client: AsyncClient, bodies: list[dict[str, Any]], concurrency: int = 32) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(body: dict[str, Any]) -> None:
        async with sem:
            await client.create_raw(body, PodGroup if body["kind"] == "PodGroup" else Pod)

    await asyncio.gather(*(one(b) for b in bodies))


def pod(name: str, ns: str, requests: dict[str, str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {"containers": [{"name": "c", "image": "train:1", "resources": {"requests": requests}}]},
    }


async def test_four_shards_never_overcommit_and_place_all_that_fit(env: Env) -> None:
    await env.client.create_raw({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "race"}}, None)
    await env.start(shards=4, nodes=50, template=NodeTemplate(cpu="4", memory="16Gi", pods=60))
    rng = random.Random(7)
    cpus = ["50m", "100m", "150m", "200m"]  # ~250 cpu asked of 200: the cluster ends full
    bodies = [
        pod(f"p{i}", "race", {"cpu": rng.choice(cpus), "memory": rng.choice(["64Mi", "128Mi"])}) for i in range(2000)
    ]
    await create_all(env.client, bodies)

    stable = 0
    last = -1

    async def settled() -> bool:
        nonlocal stable, last
        bound = sum(s.bound for s in env.shards)
        stable = stable + 1 if (bound == last and not env.busy()) else 0
        last = bound
        return stable >= 6

    await until(settled, timeout=90, every=0.25)
    pods = await env.pods("race")
    nodes = {
        n: node_allocatable({"status": {"allocatable": NodeTemplate(cpu="4", memory="16Gi", pods=60).capacity()}})
        for n in env.hollow.names
    }  # type: ignore[union-attr]
    used: dict[str, dict[str, int]] = {n: {} for n in nodes}
    count = dict.fromkeys(nodes, 0)
    for p in pods:
        if p.spec.node_name:
            count[p.spec.node_name] += 1
            for r, v in pod_requests(p.to_dict()).items():
                used[p.spec.node_name][r] = used[p.spec.node_name].get(r, 0) + v
    for n, (alloc, max_pods) in nodes.items():
        assert count[n] <= max_pods
        for r, v in used[n].items():
            assert v <= alloc.get(r, 0), f"node {n} overcommitted on {r}: {v} > {alloc.get(r, 0)}"
        # The allocation record agrees with the pods.
        rec = Allocation.load(n, await env.kv.get(allocation_key(n)))
        assert rec.requested == used[n] and len(rec.pods) == count[n]
    unbound = [p for p in pods if not p.spec.node_name]
    for p in unbound:
        req = pod_requests(p.to_dict())
        for n, (alloc, max_pods) in nodes.items():
            fits = count[n] < max_pods and all(v <= alloc.get(r, 0) - used[n].get(r, 0) for r, v in req.items())
            assert not fits, f"{p.metadata.name} fits on {n} but was left pending"
    assert len(pods) - len(unbound) > 1500
    assert {shard_of(p, 4) for p in pods} == {0, 1, 2, 3}


async def test_gangs_all_or_nothing_and_unschedulable_message(env: Env) -> None:
    ns = "gangs"
    await env.client.create_raw({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, None)
    # 5 nodes: 3 with 2 GPUs (6 in all), 2 more tainted gpu=bad that no pod tolerates.
    env.hollow = None
    plain = HollowNodes(
        env.client, None, count=3, prefix="gpu", template=NodeTemplate(cpu="16", gpus=2), heartbeat_interval=0
    )
    bad = NodeTemplate(cpu="16", gpus=8, taints=[{"key": "gpu", "value": "bad", "effect": "NoSchedule"}])
    tainted = HollowNodes(env.client, None, count=2, prefix="bad", template=bad, heartbeat_interval=0)
    await plain.register()
    await tainted.register()
    await env.start(shards=2, nodes=0, template=NodeTemplate())

    await env.client.create_raw(pod("greedy", ns, {"cpu": "1", "nvidia.com/gpu": "4"}), Pod)
    want = "0/5 nodes are available: 3 Insufficient nvidia.com/gpu, 2 node(s) had untolerated taint {gpu: bad}."

    async def reported() -> bool:
        p = await env.client.get(Pod, "greedy", ns)
        c = p.status.condition("PodScheduled") if p.status else None
        return c is not None and c.status == "False" and c.message == want

    await until(reported, timeout=20)
    events = (await env.client.list(Event, ns)).items
    assert any(
        e.reason == "FailedScheduling" and e.message == want and e.involved_object.name == "greedy" for e in events
    )
    await env.client.delete(Pod, "greedy", ns)

    winners = []
    for r in range(20):
        names = [f"a{r}", f"b{r}"]
        bodies: list[dict[str, Any]] = [
            {"apiVersion": f"{PodGroup.GROUP}/{PodGroup.VERSION}", "kind": "PodGroup",
             "metadata": {"name": g, "namespace": ns},
             "spec": {"minMember": 4, "scheduleTimeoutSeconds": 30}}
            for g in names
        ]  # fmt: skip
        await create_all(env.client, bodies)
        members = [
            pod(f"{g}-{i}", ns, {"cpu": "1", "nvidia.com/gpu": "1"}, {POD_GROUP_LABEL: g})
            for g in names
            for i in range(4)
        ]
        await create_all(env.client, members)

        async def one_gang_whole() -> bool:
            bound = [p for p in await env.pods(ns) if p.spec.node_name]
            return len(bound) >= 4

        await until(one_gang_whole, timeout=20)
        await asyncio.sleep(0.3)  # would a second gang (or part of it) sneak in?
        by_group: dict[str, int] = {g: 0 for g in names}
        for p in await env.pods(ns):
            if p.spec.node_name:
                by_group[(p.metadata.labels or {})[POD_GROUP_LABEL]] += 1
        assert sorted(by_group.values()) == [0, 4], f"round {r}: {by_group}"
        winners.append(max(by_group, key=lambda g: by_group[g])[0])
        for p in await env.pods(ns):
            await env.client.delete(Pod, p.metadata.name, ns, grace_period_seconds=0)
        for g in names:
            await env.client.delete(PodGroup, g, ns)

        async def released() -> bool:
            for n in plain.names:
                if Allocation.load(n, await env.kv.get(allocation_key(n))).pods:
                    return False
            return all(not ni.pods for s in env.shards for ni in s.scheduler.cache.nodes.values())  # type: ignore[attr-defined]

        await until(released, timeout=20)
    assert len(winners) == 20
