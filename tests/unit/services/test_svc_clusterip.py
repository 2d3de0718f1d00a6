"""ClusterIP allocation in the API server, on MemoryKV, through the HTTP surface."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.apiserver.clusterip import IP_PREFIX, ClusterIPAllocator
from kray.actors.store import MemoryKV, ObjectStore
from kray.crds.registry import REGISTRY

TOKEN = "t"
NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
SVCS = "/api/v1/namespaces/default/services"


def svc(name: str, cluster_ip: str | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ports": [{"port": 80}], **spec}
    if cluster_ip is not None:
        body["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": body}


class Env:
    def __init__(self, kv: MemoryKV, cidr: str, replicas: int, seed: int | None) -> None:
        self.kv = kv
        self.servers = [
            ApiServer(ObjectStore(kv, REGISTRY), REGISTRY, token=TOKEN, clock=lambda: NOW, service_cidr=cidr)
            for _ in range(replicas)
        ]
        if seed is not None:  # every replica probes the same sequence: maximal contention
            for s in self.servers:
                assert s.cluster_ips is not None
                s.cluster_ips._rng = random.Random(seed)
        self.clients = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=s.app),
                base_url="http://kray.test",
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            for s in self.servers
        ]

    @property
    def client(self) -> httpx.AsyncClient:
        return self.clients[0]

    @property
    def alloc(self) -> ClusterIPAllocator:
        assert self.servers[0].cluster_ips is not None
        return self.servers[0].cluster_ips

    async def keys(self) -> dict[str, bytes]:
        kvs, _ = await self.kv.range(IP_PREFIX)
        return {kv.key[len(IP_PREFIX) :]: kv.value for kv in kvs}


async def make_env(cidr: str = "10.96.0.0/16", replicas: int = 1, seed: int | None = None) -> Env:
    env = Env(MemoryKV(), cidr, replicas, seed)
    for s in env.servers:
        await s.start()
    return env


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    e = await make_env()
    yield e
    for s, c in zip(e.servers, e.clients, strict=True):
        s.stop()
        await c.aclose()
    await e.kv.close()


async def wait_for(cond: Any, timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await cond():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_create_allocates_and_delete_releases(env: Env) -> None:
    r = await env.client.post(SVCS, json=svc("web"))
    assert r.status_code == 201, r.text
    spec = r.json()["spec"]
    ip = spec["clusterIP"]
    assert spec["clusterIPs"] == [ip] and env.alloc.in_range(ip)
    assert set(await env.keys()) == {ip}
    assert (await env.client.delete(f"{SVCS}/web")).status_code == 200

    async def released() -> bool:
        return await env.keys() == {}

    await wait_for(released)
    # The released address can be requested again at once.
    r = await env.client.post(SVCS, json=svc("again", ip))
    assert r.status_code == 201 and r.json()["spec"]["clusterIP"] == ip


async def test_requested_ip_taken_or_out_of_range(env: Env) -> None:
    r = await env.client.post(SVCS, json=svc("a", "10.96.5.5"))
    assert r.status_code == 201 and r.json()["spec"]["clusterIP"] == "10.96.5.5"
    r = await env.client.post(SVCS, json=svc("b", "10.96.5.5"))
    assert r.status_code == 422
    assert 'spec.clusterIP: Invalid value: "10.96.5.5": provided IP is already allocated' in r.json()["message"]
    r = await env.client.post(SVCS, json=svc("c", "192.168.1.1"))
    assert r.status_code == 422 and "not in the valid range" in r.json()["message"]
    r = await env.client.post(SVCS, json=svc("d", "10.96.255.255"))  # broadcast
    assert r.status_code == 422
    assert set(await env.keys()) == {"10.96.5.5"}  # refused creates reserved nothing


async def test_headless_and_external_name_get_no_ip(env: Env) -> None:
    r = await env.client.post(SVCS, json=svc("h", "None"))
    assert r.status_code == 201 and r.json()["spec"]["clusterIP"] == "None"
    assert r.json()["spec"]["clusterIPs"] == ["None"]
    ext = svc("x", type="ExternalName", externalName="example.com")
    r = await env.client.post(SVCS, json=ext)
    assert r.status_code == 201 and "clusterIP" not in r.json()["spec"]
    assert await env.keys() == {}


async def test_cluster_ip_is_immutable(env: Env) -> None:
    created = (await env.client.post(SVCS, json=svc("web"))).json()
    ip = created["spec"]["clusterIP"]
    changed = {**created, "spec": {**created["spec"], "clusterIP": "10.96.9.9", "clusterIPs": ["10.96.9.9"]}}
    r = await env.client.put(f"{SVCS}/web", json=changed)
    assert r.status_code == 422 and "field is immutable" in r.json()["message"]
    # Leaving it out keeps it (kube's patchAllocatedValues), other fields still change.
    spec = {k: v for k, v in created["spec"].items() if k not in ("clusterIP", "clusterIPs")}
    spec["ports"] = [{"port": 81}]
    r = await env.client.put(f"{SVCS}/web", json={**created, "spec": spec})
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["clusterIP"] == ip and r.json()["spec"]["ports"][0]["port"] == 81
    assert set(await env.keys()) == {ip}


async def test_concurrent_creates_on_two_replicas_never_duplicate() -> None:
    # 60 of the 62 addresses of a /26, two API servers probing in the same order.
    env = await make_env("10.96.0.0/26", replicas=2, seed=7)
    try:
        posts = [env.clients[i % 2].post(SVCS, json=svc(f"s{i}")) for i in range(60)]
        results = await asyncio.gather(*posts)
        assert all(r.status_code == 201 for r in results), [r.text for r in results if r.status_code != 201]
        ips = [r.json()["spec"]["clusterIP"] for r in results]
        assert len(set(ips)) == 60
        assert set(await env.keys()) == set(ips)
        # Fill the range, then one more is refused.
        for i in range(2):
            assert (await env.client.post(SVCS, json=svc(f"t{i}"))).status_code == 201
        r = await env.client.post(SVCS, json=svc("full"))
        assert r.status_code == 500 and "is full" in r.json()["message"]
    finally:
        for s, c in zip(env.servers, env.clients, strict=True):
            s.stop()
            await c.aclose()
        await env.kv.close()


async def test_repair_remarks_missing_and_frees_leaked(env: Env) -> None:
    r = await env.client.post(SVCS, json=svc("web"))
    ip = r.json()["spec"]["clusterIP"]
    await env.kv.delete(IP_PREFIX + ip)  # a lost allocation key
    await env.kv.create(IP_PREFIX + "10.96.7.7", b'{"name":"gone","namespace":"default","uid":"u"}')
    assert await env.alloc.repair() == (1, 0)  # re-marked; the leak is only suspected
    assert set(await env.keys()) == {ip, "10.96.7.7"}
    await env.alloc.repair()
    assert await env.alloc.repair() == (0, 1)  # leaked on three passes: freed
    assert set(await env.keys()) == {ip}
