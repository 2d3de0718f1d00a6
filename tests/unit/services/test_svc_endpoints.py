"""The Endpoints controller on the in-memory cluster (ApiServer over MemoryKV), driven by step()."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.controllers import endpoints as epctl
from kray.actors.framework import FakeClock, Manager, StoreListWatcher
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient
from kray.client.errors import NotFound
from kray.crds import Pod
from kray.crds.core import Endpoints, Service
from kray.crds.registry import REGISTRY

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
NS = "default"


@pytest.fixture
async def env() -> AsyncIterator[tuple[Manager, AsyncClient]]:
    kv = MemoryKV()
    store = ObjectStore(kv, REGISTRY)
    api = ApiServer(store, REGISTRY, token="t", clock=lambda: NOW)
    await api.start()
    transport = httpx.ASGITransport(app=api.app)
    async with AsyncClient(server="http://kray.test", token="t", transport=transport) as client:
        manager = Manager(StoreListWatcher(store), client, clock=FakeClock(NOW))
        epctl.setup(manager)
        assert await manager.start_informers(2)
        yield manager, client
        await manager.stop()
    api.stop()
    await kv.close()


async def drive(manager: Manager, cond: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await cond():
        if loop.time() > deadline:
            raise AssertionError("the controller did not converge in time")
        await manager.step()
        await asyncio.sleep(0.005)


def service(name: str, selector: dict[str, str] | None, ports: list[dict[str, Any]], **spec: Any) -> Service:
    body: dict[str, Any] = {"ports": ports, **spec}
    if selector is not None:
        body["selector"] = selector
    return Service.model_validate({"metadata": {"name": name, "namespace": NS}, "spec": body})


async def make_pod(
    client: AsyncClient, name: str, ip: str, labels: dict[str, str], ready: bool = True, named: int | None = None
) -> None:
    container: dict[str, Any] = {"name": "c", "image": "busybox"}
    if named is not None:
        container["ports"] = [{"name": "http", "containerPort": named}]
    pod = Pod.model_validate(
        {
            "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"nodeName": "n1", "containers": [container]},
        }
    )
    await client.create(pod)
    await set_ready(client, name, ready, ip)


async def set_ready(client: AsyncClient, name: str, ready: bool, ip: str | None = None) -> None:
    status: dict[str, Any] = {"phase": "Running", "conditions": [{"type": "Ready", "status": str(ready)}]}
    if ip:
        status["podIP"] = ip
    await client.patch(Pod, name, {"status": status}, NS, subresource="status")


async def subsets(client: AsyncClient, name: str) -> list[dict[str, Any]] | None:
    try:
        ep = await client.get(Endpoints, name, NS)
    except NotFound:
        return None
    return [s.model_dump(by_alias=True, exclude_none=True) for s in ep.subsets or []]


def ips(subset: dict[str, Any], key: str = "addresses") -> list[str]:
    return [a["ip"] for a in subset.get(key, [])]


async def test_ready_and_not_ready_pods(env: tuple[Manager, AsyncClient]) -> None:
    manager, client = env
    await make_pod(client, "a", "10.1.0.2", {"app": "web"})
    await make_pod(client, "b", "10.1.0.3", {"app": "web"}, ready=False)
    await make_pod(client, "other", "10.1.0.9", {"app": "db"})
    await client.create(service("web", {"app": "web"}, [{"name": "http", "port": 80, "targetPort": 8080}]))

    async def converged() -> bool:
        s = await subsets(client, "web")
        return bool(s) and ips(s[0]) == ["10.1.0.2"] and ips(s[0], "notReadyAddresses") == ["10.1.0.3"]

    await drive(manager, converged)
    (subset,) = await subsets(client, "web") or []
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    addr = subset["addresses"][0]
    assert addr["nodeName"] == "n1" and addr["targetRef"]["kind"] == "Pod" and addr["targetRef"]["name"] == "a"

    await set_ready(client, "b", True)  # a readiness probe started passing

    async def both_ready() -> bool:
        s = await subsets(client, "web")
        return bool(s) and ips(s[0]) == ["10.1.0.2", "10.1.0.3"] and "notReadyAddresses" not in s[0]

    await drive(manager, both_ready)
    await client.delete(Pod, "a", NS, grace_period_seconds=0)

    async def one_left() -> bool:
        s = await subsets(client, "web")
        return bool(s) and ips(s[0]) == ["10.1.0.3"]

    await drive(manager, one_left)
    await client.delete(Service, "web", NS)

    async def gone() -> bool:
        return await subsets(client, "web") is None

    await drive(manager, gone)


async def test_publish_not_ready_addresses(env: tuple[Manager, AsyncClient]) -> None:
    manager, client = env
    await make_pod(client, "a", "10.1.0.2", {"app": "web"}, ready=False)
    svc = service("web", {"app": "web"}, [{"port": 80}], publishNotReadyAddresses=True, clusterIP="None")
    await client.create(svc)

    async def converged() -> bool:
        s = await subsets(client, "web")
        return bool(s) and ips(s[0]) == ["10.1.0.2"]

    await drive(manager, converged)
    ep = await client.get(Endpoints, "web", NS)
    assert (ep.metadata.labels or {}).get(epctl.HEADLESS_LABEL) == ""


async def test_named_target_port(env: tuple[Manager, AsyncClient]) -> None:
    manager, client = env
    await make_pod(client, "a", "10.1.0.2", {"app": "web"}, named=9000)
    await make_pod(client, "b", "10.1.0.3", {"app": "web"}, named=9001)
    await make_pod(client, "c", "10.1.0.4", {"app": "web"})  # no port named http: left out
    await client.create(service("web", {"app": "web"}, [{"port": 80, "targetPort": "http"}]))

    async def converged() -> bool:
        return len(await subsets(client, "web") or []) == 2

    await drive(manager, converged)
    got = {(tuple(ips(s)), s["ports"][0]["port"]) for s in await subsets(client, "web") or []}
    assert got == {(("10.1.0.2",), 9000), (("10.1.0.3",), 9001)}


async def test_selector_and_label_changes(env: tuple[Manager, AsyncClient]) -> None:
    manager, client = env
    await make_pod(client, "a", "10.1.0.2", {"app": "web"})
    await make_pod(client, "b", "10.1.0.3", {"app": "api"})
    await client.create(service("web", {"app": "web"}, [{"port": 80}]))

    async def only(ip: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            s = await subsets(client, "web")
            return bool(s) and ips(s[0]) == [ip]

        return check

    await drive(manager, await only("10.1.0.2"))
    await client.patch(Service, "web", {"spec": {"selector": {"app": "api"}}}, NS)
    await drive(manager, await only("10.1.0.3"))
    await client.patch(Pod, "b", {"metadata": {"labels": {"app": "gone"}}}, NS)

    async def empty() -> bool:
        return await subsets(client, "web") == []

    await drive(manager, empty)


async def test_service_without_selector_is_left_alone(env: tuple[Manager, AsyncClient]) -> None:
    manager, client = env
    await make_pod(client, "a", "10.1.0.2", {"app": "web"})
    await client.create(service("ext", None, [{"port": 80}]))
    manual = Endpoints.model_validate(
        {
            "metadata": {"name": "ext", "namespace": NS},
            "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}],
        }
    )
    await client.create(manual)
    for _ in range(5):
        await manager.step()
        await asyncio.sleep(0.005)
    s = await subsets(client, "ext")
    assert s is not None and ips(s[0]) == ["192.0.2.1"]


def test_a_pod_whose_subdomain_names_the_service_gets_its_hostname_on_the_address() -> None:
    def pod(name: str, **spec: Any) -> Pod:
        return Pod.model_validate(
            {
                "metadata": {"name": name, "namespace": NS, "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "i"}], **spec},
                "status": {"podIP": f"10.0.0.{len(name)}", "phase": "Running",
                           "conditions": [{"type": "Ready", "status": "True"}]},
            }
        )  # fmt: skip

    svc = service("web", {"app": "web"}, [{"port": 80}], clusterIP="None")
    pods = [pod("web-0", hostname="web-0", subdomain="web"), pod("other-1", hostname="x", subdomain="elsewhere")]
    [subset] = epctl.desired_subsets(svc, pods)
    assert {a.target_ref.name: a.hostname for a in subset.addresses or []} == {"web-0": "web-0", "other-1": None}
