"""The proxy core on FakeNftables: ruleset structure, coalesced updates, removal on stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.framework import StoreListWatcher
from kray.actors.proxy import Backend, FakeNftables, ProxyCore, Ruleset
from kray.actors.store import MemoryKV, ObjectStore
from kray.crds.core import Endpoints, Service
from kray.crds.registry import REGISTRY

NS = "default"
SVC = REGISTRY.for_model(Service)
EP = REGISTRY.for_model(Endpoints)


def service(name: str, ip: str | None, ports: list[dict[str, Any]], **spec: Any) -> Service:
    body: dict[str, Any] = {"ports": ports, "selector": {"app": name}, **spec}
    if ip:
        body["clusterIP"] = ip
    return Service.model_validate({"metadata": {"name": name, "namespace": NS}, "spec": body})


def endpoints(name: str, subsets: list[dict[str, Any]]) -> Endpoints:
    return Endpoints.model_validate({"metadata": {"name": name, "namespace": NS}, "subsets": subsets})


def subset(ready: list[str], ports: list[dict[str, Any]], not_ready: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    out: dict[str, Any] = {"addresses": [{"ip": ip} for ip in ready], "ports": ports}
    if not_ready:
        out["notReadyAddresses"] = [{"ip": ip} for ip in not_ready]
    return out


class Env:
    def __init__(self) -> None:
        self.kv = MemoryKV()
        self.store = ObjectStore(self.kv, REGISTRY)
        self.nft = FakeNftables()
        self.proxy = ProxyCore(StoreListWatcher(self.store), self.nft, "node-1", min_sync_interval=0.05)

    def table(self) -> Ruleset | None:
        return self.nft.ruleset("kray-node-1")

    async def until(self, cond: Callable[[], bool], timeout: float = 1.0) -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while not cond():
            assert loop.time() - start < timeout, "the proxy did not sync in time"
            await asyncio.sleep(0.01)
        return loop.time() - start

    async def put(self, obj: Service | Endpoints) -> None:
        info = SVC if isinstance(obj, Service) else EP
        try:
            current = await self.store.get(info, NS, obj.name)
        except Exception:
            await self.store.create(info, obj)
            return
        obj.metadata.resource_version = current.metadata.resource_version
        await self.store.update(info, obj)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    e = Env()
    assert await e.proxy.start(2)
    yield e
    await e.proxy.stop()
    await e.kv.close()


async def test_ruleset_structure(env: Env) -> None:
    web_ports = [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "metrics", "port": 9090}]
    await env.put(service("web", "10.96.0.10", web_ports))
    await env.put(
        endpoints(
            "web",
            [
                subset(["10.1.0.2", "10.1.0.3"], [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}]),
                subset(["10.1.0.4"], [{"name": "http", "port": 8081}], not_ready=["10.1.0.5"]),
            ],
        )
    )
    await env.put(service("dns", "10.96.0.53", [{"port": 53, "protocol": "UDP"}]))
    await env.put(endpoints("dns", [subset(["10.1.0.9"], [{"port": 53, "protocol": "UDP"}])]))
    await env.put(service("headless", "None", [{"port": 80}]))
    await env.put(endpoints("headless", [subset(["10.1.0.7"], [{"port": 80}])]))
    await env.put(service("empty", "10.96.0.99", [{"port": 80}]))

    def ready() -> bool:
        t = env.table()
        return t is not None and len(t.services) == 4

    await env.until(ready)
    t = env.table()
    assert t is not None
    http = t.service(NS, "web", "http")
    assert http is not None and (http.cluster_ip, http.port, http.protocol) == ("10.96.0.10", 80, "tcp")
    # Not-ready addresses are no backends; each subset's own port is used.
    assert http.backends == (Backend("10.1.0.2", 8080), Backend("10.1.0.3", 8080), Backend("10.1.0.4", 8081))
    metrics = t.service(NS, "web", "metrics")
    assert metrics is not None and [b.ip for b in metrics.backends] == ["10.1.0.2", "10.1.0.3"]
    dns = t.service(NS, "dns")
    assert dns is not None and dns.protocol == "udp" and dns.backends == (Backend("10.1.0.9", 53),)
    assert t.service(NS, "headless") is None  # headless: no rules
    empty = t.service(NS, "empty")
    assert empty is not None and empty.backends == ()

    script = env.nft.transactions[-1]
    lines = [line.strip() for line in script.splitlines()]
    # One atomic whole-table replace.
    assert lines[:3] == ["table ip kray-node-1", "delete table ip kray-node-1", "table ip kray-node-1 {"]
    assert f"10.96.0.10 . tcp . 80 : goto {http.chain}," in lines or any(
        line.startswith(f"10.96.0.10 . tcp . 80 : goto {http.chain}") for line in lines
    )
    # No endpoints: not in the service map but in the set whose connections are refused.
    assert "elements = { 10.96.0.99 . tcp . 80 }" in lines
    refuse = "ct state new ip daddr . meta l4proto . th dport @no-endpoints"
    assert f"{refuse} reject" in lines and f"{refuse} meta l4proto tcp reject with tcp reset" in lines
    assert "type nat hook prerouting priority dstnat; policy accept;" in lines
    assert "type nat hook output priority -100; policy accept;" in lines
    spread = ", ".join(f"{i} : goto {http.endpoint_chain(i)}" for i in range(3))
    assert f"numgen random mod 3 vmap {{ {spread} }}" in lines
    assert f"goto {dns.endpoint_chain(0)}" in lines  # one backend: no numgen
    assert "meta l4proto tcp dnat to 10.1.0.4:8081" in lines
    assert "ip saddr 10.1.0.4 jump mark-for-masquerade" in lines  # hairpin
    assert "meta l4proto udp dnat to 10.1.0.9:53" in lines


async def test_endpoint_changes_are_coalesced_and_fast(env: Env) -> None:
    await env.put(service("web", "10.96.0.10", [{"port": 80}]))
    await env.put(endpoints("web", [subset(["10.1.0.2"], [{"port": 80}])]))

    def backends(*ips: str) -> Callable[[], bool]:
        def check() -> bool:
            t = env.table()
            s = t.service(NS, "web") if t else None
            return s is not None and tuple(b.ip for b in s.backends) == ips

        return check

    await env.until(backends("10.1.0.2"))
    before = env.proxy.syncs
    for i in range(3, 23):  # a burst of 20 updates
        await env.put(endpoints("web", [subset([f"10.1.0.{i}"], [{"port": 80}])]))
    took = await env.until(backends("10.1.0.22"))
    await asyncio.sleep(0.15)
    assert took < 1.0
    assert env.proxy.syncs - before <= 4  # coalesced, not one transaction per update


async def test_failed_apply_is_retried_and_stop_removes_the_table(env: Env) -> None:
    env.nft.fail_next = RuntimeError("nft: busy")
    await env.put(service("web", "10.96.0.10", [{"port": 80}]))
    await env.put(endpoints("web", [subset(["10.1.0.2"], [{"port": 80}])]))

    def synced() -> bool:
        t = env.table()
        return t is not None and t.service(NS, "web") is not None and bool(t.service(NS, "web").backends)  # type: ignore[union-attr]

    await env.until(synced)
    assert env.proxy.errors == 1
    await env.put(service("web", "10.96.0.10", [{"port": 80}], type="ExternalName", externalName="x.example"))
    await env.until(lambda: env.table() is not None and env.table().services == ())  # type: ignore[union-attr]
    await env.proxy.stop()
    assert await env.nft.tables() == []
    assert env.nft.transactions[-1] == "delete table ip kray-node-1"
