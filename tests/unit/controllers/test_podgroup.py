"""The PodGroup controller: the status computation (table-driven), then the reconciler on the
in-memory cluster (API server over MemoryKV, informers off the store), driven by step()."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from rsdeploy_harness import GatedListWatcher

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.controllers import podgroup
from kray.actors.controllers.podgroup import pod_to_group, podgroup_status
from kray.actors.framework import FakeClock, Manager, Request
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient
from kray.crds import Namespace, ObjectMeta, Pod
from kray.crds.registry import REGISTRY
from kray.crds.scheduling import POD_GROUP_LABEL, PodGroup, PodGroupStatus

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
NS = "default"


def group(min_member: int, status: PodGroupStatus | None = None, name: str = "g") -> PodGroup:
    pg = PodGroup.model_validate({"metadata": {"name": name, "namespace": NS}, "spec": {"minMember": min_member}})
    pg.status = status
    return pg


def member(name: str, node: str | None = None, phase: str = "Pending", *, group_name: str = "g", **meta: Any) -> Pod:
    return Pod.model_validate(
        {
            "metadata": {"name": name, "namespace": NS, "labels": {POD_GROUP_LABEL: group_name}, **meta},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": phase},
        }
    )


def gang(*members: tuple[str | None, str]) -> list[Pod]:
    return [member(f"p{i}", node, phase) for i, (node, phase) in enumerate(members)]


GONE = {"deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["f"]}
P, R, S, F = "Pending", "Running", "Succeeded", "Failed"

# (what, minMember, members as (node, phase), previous phase) -> (phase, scheduled, running, succeeded, failed)
CASES: list[tuple[str, int, list[Pod], str | None, tuple[str, int, int, int, int]]] = [
    ("no members yet", 2, [], None, ("Pending", 0, 0, 0, 0)),
    ("fewer members than minMember", 3, gang((None, P), (None, P)), None, ("Pending", 0, 0, 0, 0)),
    ("enough members, none bound", 2, gang((None, P), (None, P)), None, ("Scheduling", 0, 0, 0, 0)),
    ("one of two bound", 2, gang(("n1", P), (None, P)), None, ("Scheduling", 1, 0, 0, 0)),
    ("minMember bound, none running", 2, gang(("n1", P), ("n2", P), (None, P)), None, ("Scheduled", 2, 0, 0, 0)),
    ("one of two running", 2, gang(("n1", R), ("n2", P)), None, ("Scheduled", 2, 1, 0, 0)),
    ("running + succeeded reach minMember", 2, gang(("n1", R), ("n1", S)), None, ("Running", 2, 1, 1, 0)),
    ("a member failed in a placed gang", 2, gang(("n1", R), ("n1", F)), None, ("Failed", 2, 1, 0, 1)),
    ("a failure before the gang is placed", 3, gang(("n1", F), (None, P), (None, P)), None, ("Scheduling", 1, 0, 0, 1)),
    ("all ended, none failed", 2, gang(("n1", S), ("n2", S)), None, ("Finished", 2, 0, 2, 0)),
    ("all ended, one failed", 2, gang(("n1", S), ("n2", F)), None, ("Failed", 2, 0, 1, 1)),
    ("members gone after Finished", 2, [], "Finished", ("Finished", 0, 0, 0, 0)),
    ("members gone after Failed", 2, [], "Failed", ("Failed", 0, 0, 0, 0)),
    ("members gone from a running gang", 2, [], "Running", ("Pending", 0, 0, 0, 0)),
    (
        "terminating members do not count (a restarted gang)",
        2,
        [member("old0", "n1", F, **GONE), member("old1", "n1", R, **GONE), member("new0"), member("new1")],
        "Failed",
        ("Scheduling", 0, 0, 0, 0),
    ),
    (
        "the Master succeeded, the workers being stopped",
        3,
        [member("m", "n1", S), member("w0", "n1", R, **GONE), member("w1", "n1", R, **GONE)],
        "Running",
        ("Finished", 1, 0, 1, 0),
    ),
]


@pytest.mark.parametrize(("what", "min_member", "pods", "previous", "want"), CASES, ids=[c[0] for c in CASES])
def test_status_from_members(
    what: str, min_member: int, pods: list[Pod], previous: str | None, want: tuple[str, int, int, int, int]
) -> None:
    pg = group(min_member, PodGroupStatus(phase=previous) if previous else None)  # type: ignore[arg-type]
    s = podgroup_status(pg, pods, NOW)
    assert (s.phase, s.scheduled, s.running, s.succeeded, s.failed) == want, what


def test_schedule_start_time_is_set_once_and_kept() -> None:
    waiting = podgroup_status(group(2), gang((None, P)), NOW)
    assert waiting.schedule_start_time is None  # not schedulable yet: no start
    started = podgroup_status(group(2, waiting), gang((None, P), (None, P)), NOW)
    assert started.schedule_start_time == NOW
    later = podgroup_status(group(2, started), gang(("n1", R), ("n2", R)), NOW + timedelta(minutes=5))
    assert later.phase == "Running" and later.schedule_start_time == NOW


def test_pod_events_map_to_their_group() -> None:
    assert pod_to_group(member("a", group_name="train")) == [Request(NS, "train")]
    stray = member("x")
    stray.metadata.labels = {"app": "x"}
    assert pod_to_group(stray) == []


# ---- the reconciler on the in-memory cluster ----


@dataclass
class Env:
    manager: Manager
    client: AsyncClient
    clock: FakeClock
    watch: GatedListWatcher

    async def drive(self, cond: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await cond():
            if loop.time() > deadline:
                raise AssertionError("the PodGroup controller did not converge in time")
            await self.manager.step()
            await self.clock.advance_and_settle(0.5)  # rate-limited requeues come due
            await asyncio.sleep(0.005)

    async def status(self, name: str = "g") -> PodGroupStatus:
        return (await self.client.get(PodGroup, name, NS)).status or PodGroupStatus()

    async def set_phase(self, pod: str, phase: str) -> None:
        await self.client.patch(Pod, pod, {"status": {"phase": phase}}, NS, subresource="status")


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    kv = MemoryKV()
    store = ObjectStore(kv, REGISTRY)
    api = ApiServer(store, REGISTRY, token="t", clock=lambda: NOW)
    await api.start()
    clock = FakeClock(NOW)
    watch = GatedListWatcher(store, gated_kind="PodGroup")
    transport = httpx.ASGITransport(app=api.app)
    async with AsyncClient(server="http://kray.test", token="t", transport=transport) as client:
        manager = Manager(watch, client, clock=clock)
        podgroup.setup(manager)
        assert await manager.start_informers(2)
        yield Env(manager, client, clock, watch)
        watch.open.set()
        await manager.stop()
    await kv.close()


def phase_counts(s: PodGroupStatus) -> tuple[str | None, int, int, int, int]:
    return s.phase, s.scheduled, s.running, s.succeeded, s.failed


async def test_the_status_follows_the_members(env: Env) -> None:
    await env.client.create(group(2))

    async def is_(want: tuple[str | None, int, int, int, int]) -> bool:
        return phase_counts(await env.status()) == want

    await env.drive(lambda: is_(("Pending", 0, 0, 0, 0)))
    # A member of a same-named group in another namespace is not this group's.
    await env.client.create(member("a", "n1"))
    other = member("elsewhere", "n1")
    other.metadata.namespace = "other"
    await env.client.create(Namespace(metadata=ObjectMeta(name="other")))
    await env.client.create(other)
    await env.client.create(member("b"))
    await env.drive(lambda: is_(("Scheduling", 1, 0, 0, 0)))
    start = (await env.status()).schedule_start_time
    assert start is not None and start >= NOW

    await env.client.delete(Pod, "b", NS)
    await env.client.create(member("b2", "n2"))  # the scheduler placed the second member
    await env.drive(lambda: is_(("Scheduled", 2, 0, 0, 0)))
    for pod in ("a", "b2"):
        await env.set_phase(pod, "Running")
    await env.drive(lambda: is_(("Running", 2, 2, 0, 0)))
    for pod in ("a", "b2"):
        await env.set_phase(pod, "Succeeded")
    await env.drive(lambda: is_(("Finished", 2, 0, 2, 0)))
    # cleanPodPolicy-style removal of the finished pods keeps the verdict (and the start time).
    for pod in ("a", "b2"):
        await env.client.delete(Pod, pod, NS)
    await env.drive(lambda: is_(("Finished", 0, 0, 0, 0)))
    assert (await env.status()).schedule_start_time == start


async def test_a_stale_group_is_never_written_over(env: Env) -> None:
    """A pass that read an old PodGroup gets a 409 on the status write and is redone once the
    cache catches up; the newer object (its spec, here) survives."""
    await env.client.create(group(2))
    await env.drive(lambda: _phase_is(env, "Pending"))
    env.watch.open.clear()  # the controller's PodGroup cache stops here
    fresh = await env.client.get(PodGroup, "g", NS)
    fresh.spec.min_member = 1
    await env.client.update(fresh)
    await env.client.create(member("a", "n1"))

    controller = env.manager.controllers["podgroup"]

    async def conflicted() -> bool:
        return controller.conflicts > 0

    await env.drive(conflicted)
    assert (await env.status()).phase == "Pending"  # nothing written from the stale read
    env.watch.open.set()
    await env.drive(lambda: _phase_is(env, "Scheduled"))  # minMember is 1 now: the one bound member

    pg = await env.client.get(PodGroup, "g", NS)
    assert pg.spec.min_member == 1


async def _phase_is(env: Env, phase: str) -> bool:
    return (await env.status()).phase == phase


async def test_a_missing_group_is_not_an_error(env: Env) -> None:
    await env.client.create(member("orphan", "n1", group_name="nope"))
    controller = env.manager.controllers["podgroup"]
    await env.drive(lambda: _reconciled(controller.reconciles))
    assert controller.errors == 0


async def _reconciled(n: int) -> bool:
    return n > 0
