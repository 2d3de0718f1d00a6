"""The ReplicaSet controller on the in-memory cluster, driven by step(): scale, adopt/release,
expectations under a lagging watch, delete order, status, slow start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest
from rsdeploy_harness import NS, Cluster, bare_pod, replicaset

from kray.actors.controllers.podutil import delete_rank, pods_to_delete, template_hash
from kray.actors.controllers.replicaset import Expectations, slow_start
from kray.actors.framework import FakeClock, Request
from kray.crds import Pod
from kray.crds.core.pod import PodStatus, PodTemplateSpec
from kray.crds.meta import Condition


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = await Cluster(rs_only=True).start()
    yield c
    await c.stop()


def owned(pods: list[Pod], uid: str | None) -> list[Pod]:
    return [p for p in pods if any(r.uid == uid and r.controller for r in p.metadata.owner_references or ())]


async def test_scale_up_down_and_status(cluster: Cluster) -> None:
    rs = await cluster.client.create(replicaset("web", 5))

    async def ready5() -> bool:
        cur = await cluster.rs("web")
        return bool(cur.status and cur.status.ready_replicas == 5 and cur.status.available_replicas == 5)

    await cluster.run_until(ready5)
    pods = await cluster.pods()
    assert len(owned(pods, rs.metadata.uid)) == 5
    assert all(p.name.startswith("web-") and len(p.name) == len("web-") + 5 for p in pods)
    cur = await cluster.rs("web")
    assert cur.status is not None
    assert (cur.status.replicas, cur.status.fully_labeled_replicas, cur.status.observed_generation) == (5, 5, 1)

    await cluster.client.patch(type(rs), "web", {"spec": {"replicas": 2}}, NS)

    async def two() -> bool:
        cur = await cluster.rs("web")
        return len(await cluster.pods(active_only=False)) == 2 and bool(cur.status and cur.status.replicas == 2)

    await cluster.run_until(two)
    assert (await cluster.rs("web")).status.observed_generation == 2  # type: ignore[union-attr]


async def test_adopts_orphans_and_releases_non_matching(cluster: Cluster) -> None:
    orphan = await cluster.client.create(bare_pod("orphan", {"app": "web"}))
    await cluster.client.create(bare_pod("other", {"app": "db"}))
    rs = await cluster.client.create(replicaset("web", 2))

    async def converged() -> bool:
        pods = owned(await cluster.pods(), rs.metadata.uid)
        return len(pods) == 2

    await cluster.run_until(converged)
    pods = owned(await cluster.pods(), rs.metadata.uid)
    assert "orphan" in {p.name for p in pods}  # adopted, so only one new pod was made
    assert orphan.metadata.owner_references is None
    assert "other" not in {p.name for p in pods}

    # Relabel the adopted pod: it stops matching, is released, and a replacement is created.
    await cluster.client.patch(Pod, "orphan", {"metadata": {"labels": {"app": "moved"}}}, NS)

    async def released() -> bool:
        released = await cluster.client.get(Pod, "orphan", NS)
        return not released.metadata.owner_references and len(owned(await cluster.pods(), rs.metadata.uid)) == 2

    await cluster.run_until(released)


async def test_expectations_hold_back_a_second_round_while_the_watch_lags(cluster: Cluster) -> None:
    cluster.lw.open.clear()  # pod events stop reaching the cache
    await cluster.client.create(replicaset("web", 3))
    await cluster.settle()
    for _ in range(5):  # the RS is requeued again and again; the cache still shows 0 pods
        cluster.rs_controller.enqueue(Request(NS, "web"))
        await cluster.manager.step()
        await cluster.settle()
    assert len(await cluster.pods()) == 3  # not 6, 9, ...
    assert cluster.rs_controller.reconciler.expectations.pending(f"{NS}/web") == (3, 0)  # type: ignore[attr-defined]
    cluster.lw.open.set()
    await cluster.settle(10)
    assert cluster.rs_controller.reconciler.expectations.satisfied(f"{NS}/web")  # type: ignore[attr-defined]

    # The same for deletes: scale to 1 with the watch stalled, then requeue.
    await cluster.run_until(lambda: _count(cluster, 3))
    cluster.lw.open.clear()
    await cluster.client.patch(type(await cluster.rs("web")), "web", {"spec": {"replicas": 1}}, NS)
    await cluster.settle()
    for _ in range(5):
        cluster.rs_controller.enqueue(Request(NS, "web"))
        await cluster.manager.step()
        await cluster.settle()
    assert len(await cluster.pods()) == 1
    cluster.lw.open.set()


async def _count(cluster: Cluster, n: int) -> bool:
    return len(await cluster.pods()) == n


def test_expectations_timeout_and_observation() -> None:
    clock = FakeClock()
    e = Expectations(clock, timeout=10)
    e.expect_creations("ns/a", 2)
    assert not e.satisfied("ns/a")
    e.creation_observed("ns/a")
    assert not e.satisfied("ns/a")
    clock.advance(11)
    assert e.satisfied("ns/a")  # a lost event cannot wedge it forever
    e.expect_deletions("ns/a", ["p1", "p2"])
    e.deletion_observed("ns/a", "p1")
    e.deletion_observed("ns/a", "p1")  # the DELETED event after the deletionTimestamp update
    assert not e.satisfied("ns/a")
    e.deletion_observed("ns/a", "p2")
    assert e.satisfied("ns/a")


def _pod(name: str, node: str | None, phase: str | None, ready_at: datetime | None, created: datetime) -> Pod:
    pod = bare_pod(name, {"app": "x"})
    pod.spec.node_name = node
    pod.metadata.creation_timestamp = created
    conditions = [Condition(type="Ready", status="True", last_transition_time=ready_at)] if ready_at else None
    pod.status = PodStatus(phase=phase, conditions=conditions)  # type: ignore[arg-type]
    return pod


def test_delete_order_follows_kubernetes() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    pods = [
        _pod("ready-old", "n", "Running", t0, t0),
        _pod("ready-new", "n", "Running", t0 + timedelta(minutes=5), t0),
        _pod("running-unready", "n", "Running", None, t0),
        _pod("pending", "n", "Pending", None, t0),
        _pod("unscheduled", None, "Pending", None, t0),
        _pod("pending-newer", "n", "Pending", None, t0 + timedelta(seconds=1)),
    ]
    order = [p.name for p in sorted(pods, key=delete_rank)]
    assert order == ["unscheduled", "pending-newer", "pending", "running-unready", "ready-new", "ready-old"]
    assert [p.name for p in pods_to_delete(pods, 2)] == ["unscheduled", "pending-newer"]


async def test_scale_down_deletes_not_ready_first(cluster: Cluster) -> None:
    await cluster.client.create(replicaset("web", 3))
    await cluster.run_until(lambda: _ready(cluster, "web", 3))
    # One more pod that the stand-in will not make ready (it stays unscheduled: no bind).
    cluster.kubelet.bind = False
    await cluster.client.patch(type(await cluster.rs("web")), "web", {"spec": {"replicas": 4}}, NS)
    await cluster.run_until(lambda: _count(cluster, 4))
    unready = {p.name for p in await cluster.pods() if not p.spec.node_name}
    assert len(unready) == 1
    await cluster.client.patch(type(await cluster.rs("web")), "web", {"spec": {"replicas": 3}}, NS)
    await cluster.run_until(lambda: _count(cluster, 3))
    assert not unready & {p.name for p in await cluster.pods()}


async def _ready(cluster: Cluster, name: str, n: int) -> bool:
    rs = await cluster.rs(name)
    return bool(rs.status and rs.status.available_replicas == n and rs.status.replicas == n)


async def test_min_ready_seconds_delays_availability() -> None:
    c = await Cluster(rs_only=True).start()
    try:
        await c.client.create(replicaset("web", 2, minReadySeconds=10))
        await c.run_until(lambda: _ready_not_available(c))
        await c.run_until(lambda: _ready(c, "web", 2), seconds=1.0)
    finally:
        await c.stop()


async def _ready_not_available(c: Cluster) -> bool:
    rs = await c.rs("web")
    return bool(rs.status and rs.status.ready_replicas == 2 and rs.status.available_replicas == 0)


async def test_slow_start_batches_and_stops_on_failure() -> None:
    calls = 0

    async def ok() -> None:
        await asyncio.sleep(0)

    done, attempted, err = await slow_start(10, ok)
    assert (done, attempted, err) == (10, 10, None)

    async def fail_after_3() -> None:
        nonlocal calls
        calls += 1
        if calls > 3:
            raise RuntimeError("quota")

    calls = 0
    done, attempted, err = await slow_start(100, fail_after_3)
    # Batches 1 and 2 succeed; the batch of 4 fails and nothing more is tried.
    assert (done, attempted, isinstance(err, RuntimeError)) == (3, 7, True)


def test_template_hash_is_stable_and_collision_aware() -> None:
    t = PodTemplateSpec.model_validate({"spec": {"containers": [{"name": "c", "image": "a"}]}})
    assert template_hash(t) == template_hash(t.model_copy(deep=True))
    assert template_hash(t) != template_hash(t, 1)
    t2 = PodTemplateSpec.model_validate({"spec": {"containers": [{"name": "c", "image": "b"}]}})
    assert template_hash(t) != template_hash(t2)
