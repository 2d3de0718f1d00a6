"""The scheduler's "Scheduled" Events: one per bound pod, as kube-scheduler records, written off
the binding path through a bounded queue that drops (and counts) what it cannot hold."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from kray.actors.framework.ports import StoreListWatcher
from kray.actors.scheduler.binder import ApiBinder
from kray.actors.scheduler.reporter import ApiStatusReporter
from kray.actors.scheduler.shard import ShardCore
from kray.client import AsyncClient
from kray.crds import Node, Pod
from kray.crds.core.event import Event

from .test_shard_helpers import Cluster, memory_cluster, node_body, pod_body


class SlowEventServer:
    """The real client, except that Event creates wait at a gate: an API server too busy for
    events. Everything else (bindings, status patches) goes straight through."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.gate = asyncio.Event()
        self.waiting = 0

    async def create_raw(self, body: dict[str, Any], ref: Any = None, namespace: str | None = None) -> Any:
        if body.get("kind") == "Event":
            self.waiting += 1
            try:
                await self.gate.wait()
            finally:
                self.waiting -= 1
        return await self.client.create_raw(body, ref, namespace)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with memory_cluster() as c:
        yield c


async def until(cond: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def scheduled_events(c: Cluster) -> list[Event]:
    return [e for e in (await c.client.list(Event, "default")).items if e.reason == "Scheduled"]


def shard(c: Cluster, reporter: ApiStatusReporter) -> ShardCore:
    lw = StoreListWatcher(c.store)
    return ShardCore(0, 1, pods=lw, nodes=lw, pod_groups=lw, binder=ApiBinder(c.client), reporter=reporter)


async def test_every_bound_pod_gets_a_scheduled_event(cluster: Cluster) -> None:
    await cluster.client.create_raw(node_body("n0", cpu="8"), Node)
    reporter = ApiStatusReporter(cluster.client, instance="kray-scheduler-0")
    core = shard(cluster, reporter)
    task = asyncio.ensure_future(core.run())
    try:
        for i in range(3):
            await cluster.client.create_raw(pod_body(f"p{i}", cpu="1", memory="1Gi"), Pod)

        async def three() -> bool:
            return len(await scheduled_events(cluster)) == 3

        await until(three)
        pods = {p.name: p for p in (await cluster.client.list(Pod, "default")).items}
        for e in await scheduled_events(cluster):
            pod = pods[e.involved_object.name or ""]
            assert e.type == "Normal" and e.message == f"Successfully assigned default/{pod.name} to n0"
            assert e.involved_object.kind == "Pod" and e.involved_object.uid == pod.metadata.uid
            assert e.source is not None and e.source.component == "default-scheduler"
            assert e.reporting_instance == "kray-scheduler-0" and e.count == 1
        stats = core.stats()["events"]
        assert stats["scheduled_events"] is True
        assert (stats["written"], stats["dropped"], stats["failed"]) == (3, 0, 0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_off_means_none(cluster: Cluster) -> None:
    await cluster.client.create_raw(node_body("n0"), Node)
    core = shard(cluster, ApiStatusReporter(cluster.client, scheduled_events=False))
    task = asyncio.ensure_future(core.run())
    try:
        await cluster.client.create_raw(pod_body("p0", cpu="1", memory="1Gi"), Pod)

        async def bound() -> bool:
            return bool((await cluster.client.get(Pod, "p0", "default")).spec.node_name)

        await until(bound)
        await asyncio.sleep(0.1)
        assert await scheduled_events(cluster) == []
        assert core.stats()["events"]["scheduled_events"] is False
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_binding_never_waits_for_events(cluster: Cluster) -> None:
    """With event writes stuck, every pod still binds; the events follow once the server can."""
    await cluster.client.create_raw(node_body("n0", cpu="16"), Node)
    slow = SlowEventServer(cluster.client)
    reporter = ApiStatusReporter(slow, event_batch=2)
    core = shard(cluster, reporter)
    task = asyncio.ensure_future(core.run())
    try:
        for i in range(6):
            await cluster.client.create_raw(pod_body(f"p{i}", cpu="1", memory="1Gi"), Pod)

        async def all_bound() -> bool:
            return all(p.spec.node_name for p in (await cluster.client.list(Pod, "default")).items)

        await until(all_bound)
        assert await scheduled_events(cluster) == []
        assert slow.waiting <= 2  # a bounded number of writes in flight, the rest buffered
        slow.gate.set()
        await reporter.drain()
        assert len(await scheduled_events(cluster)) == 6
    finally:
        slow.gate.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_full_queue_drops_and_counts(cluster: Cluster) -> None:
    slow = SlowEventServer(cluster.client)
    reporter = ApiStatusReporter(slow, event_capacity=4, event_batch=2)
    pods = [
        await cluster.client.create(Pod.model_validate(pod_body(f"p{i}", cpu="1", memory="1Gi"))) for i in range(10)
    ]
    for pod in pods:  # ten bindings in one breath: the buffer takes four
        reporter.scheduled(pod, "n0")
    assert (len(reporter.events), reporter.events.dropped) == (4, 6)
    await asyncio.sleep(0.05)
    assert (slow.waiting, len(reporter.events)) == (2, 2)  # one batch in flight, the rest buffered
    slow.gate.set()
    await reporter.drain()
    assert reporter.stats() == {"scheduled_events": True, "written": 4, "dropped": 6, "failed": 0, "queued": 0}
    assert len(await scheduled_events(cluster)) == 4


async def test_a_refused_event_is_counted_not_raised(cluster: Cluster) -> None:
    reporter = ApiStatusReporter(cluster.client)
    pod = Pod.model_validate(pod_body("ghost", cpu="1", memory="1Gi"))
    pod.metadata.namespace = "no-such-namespace"  # the API server refuses events there
    reporter.scheduled(pod, "n0")
    await reporter.drain()
    assert (reporter.events.written, reporter.events.failed) == (0, 1)
