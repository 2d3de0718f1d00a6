"""The namespace controller on the in-memory cluster: a Terminating namespace is emptied of every
kind, reports what holds it, and goes; one deleted before it got the finalizer is cleaned up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone

import httpx
import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.controllers import namespace as nsctl
from kray.actors.framework import FakeClock, Manager, StoreListWatcher, get_condition
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient, NotFound
from kray.crds import ConfigMap, Namespace, ObjectMeta, Pod, Secret, Service
from kray.crds.batch import Job
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
        nsctl.setup(manager)
        assert await manager.start_informers(2)
        yield manager, client, clock
        await manager.stop()
    await kv.close()


async def drive(
    manager: Manager, cond: Callable[[], Awaitable[bool]], clock: FakeClock | None = None, timeout: float = 5.0
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await cond():
        if loop.time() > deadline:
            raise AssertionError("the namespace controller did not converge in time")
        await manager.step()
        if clock is not None:
            clock.advance(1)  # lets the "content remains" rechecks come due
        await asyncio.sleep(0.005)


def pod(name: str, ns: str, node: str | None = None) -> Pod:
    spec = {"containers": [{"name": "c", "image": "i"}], "nodeName": node}
    return Pod.model_validate({"metadata": {"name": name, "namespace": ns}, "spec": spec})


async def fill(client: AsyncClient, ns: str) -> None:
    await client.create(pod("p1", ns))
    await client.create(pod("p2", ns))
    await client.create(ConfigMap(metadata=ObjectMeta(name="cm", namespace=ns), data={"a": "b"}))
    await client.create(Secret(metadata=ObjectMeta(name="s", namespace=ns)))
    svc = {"metadata": {"name": "svc", "namespace": ns}, "spec": {"ports": [{"port": 80}]}}
    await client.create(Service.model_validate(svc))
    job = {"metadata": {"name": "j", "namespace": ns}, "spec": {"template": pod("x", ns).to_dict()}}
    job["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    await client.create(Job.model_validate(job))


async def exists(client: AsyncClient, name: str) -> bool:
    try:
        await client.get(Namespace, name)
        return True
    except NotFound:
        return False


async def content(client: AsyncClient, ns: str) -> int:
    total = 0
    for kind in (Pod, ConfigMap, Secret, Service, Job):
        total += len((await client.list(kind, ns)).items)
    return total


async def test_terminating_namespace_is_emptied_then_deleted(env: tuple[Manager, AsyncClient, FakeClock]) -> None:
    manager, client, clock = env
    await client.create(Namespace(metadata=ObjectMeta(name="team")))

    async def has_finalizer() -> bool:
        return "kubernetes" in ((await client.get(Namespace, "team")).spec.finalizers or [])

    await drive(manager, has_finalizer)
    await fill(client, "team")
    # A running pod leaves gracefully (its kubelet finishes it) and a finalizer holds a ConfigMap.
    await client.create(pod("running", "team", node="n1"))
    await client.create(ConfigMap(metadata=ObjectMeta(name="held", namespace="team", finalizers=["test/hold"])))
    deleted = await client.delete(Namespace, "team")
    assert deleted is not None and deleted.status is not None and deleted.status.phase == "Terminating"

    async def only_held_left() -> bool:
        ns = await client.get(Namespace, "team")
        c = get_condition(ns.status, nsctl.FINALIZERS_REMAINING)
        return await content(client, "team") == 2 and c is not None and c.status == "True"

    await drive(manager, only_held_left, clock)
    ns = await client.get(Namespace, "team")
    remaining = get_condition(ns.status, nsctl.CONTENT_REMAINING)
    assert remaining is not None and remaining.status == "True" and "configmaps" in (remaining.message or "")
    # The kubelet finishes the pod; the finalizer's owner lets go: the namespace goes.
    await client.delete(Pod, "running", "team", grace_period_seconds=0)
    await client.patch(ConfigMap, "held", {"metadata": {"finalizers": None}}, "team")

    async def gone() -> bool:
        return not await exists(client, "team")

    await drive(manager, gone, clock)


async def test_vanished_namespace_content_is_removed(env: tuple[Manager, AsyncClient, FakeClock]) -> None:
    manager, client, clock = env
    await client.create(Namespace(metadata=ObjectMeta(name="quick")))
    await fill(client, "quick")
    # Deleted before the controller put its finalizer on it: the API server deletes it at once.
    await client.delete(Namespace, "quick")
    assert not await exists(client, "quick")

    async def empty() -> bool:
        return await content(client, "quick") == 0

    await drive(manager, empty, clock)
