"""Per-pod DNS names (``<hostname>.<subdomain>.<ns>.svc.<domain>``) served by the cluster DNS core
from a headless Service's Endpoints addresses that carry a ``hostname``, as a StatefulSet's pods
are found (``web-0.web.default.svc.cluster.local``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)

dnslib = pytest.importorskip("dnslib")

from kray.actors.dns import DnsCore  # noqa: E402
from kray.actors.framework import StoreListWatcher  # noqa: E402
from kray.actors.store import MemoryKV, ObjectStore  # noqa: E402
from kray.crds.core import Endpoints, Service  # noqa: E402
from kray.crds.registry import REGISTRY  # noqa: E402


def service(name: str, **spec: Any) -> Service:
    body: dict[str, Any] = {"ports": [{"port": 80}], **spec}
    return Service.model_validate({"metadata": {"name": name, "namespace": "default"}, "spec": body})


def endpoints(name: str, ready: list[dict[str, Any]], not_ready: list[dict[str, Any]] | None = None) -> Endpoints:
    subset: dict[str, Any] = {"addresses": ready, "ports": [{"port": 80}]}
    if not_ready:
        subset["notReadyAddresses"] = not_ready
    return Endpoints.model_validate({"metadata": {"name": name, "namespace": "default"}, "subsets": [subset]})


@pytest.fixture
async def dns() -> AsyncIterator[DnsCore]:
    kv = MemoryKV()
    store = ObjectStore(kv, REGISTRY)
    svc, ep = REGISTRY.for_model(Service), REGISTRY.for_model(Endpoints)
    await store.create(svc, service("web", clusterIP="None"))
    await store.create(svc, service("api", clusterIP="10.96.0.20"))
    await store.create(
        ep,
        endpoints(
            "web",
            [{"ip": "10.1.0.5", "hostname": "web-0"}, {"ip": "10.1.0.6", "hostname": "web-1"}, {"ip": "10.1.0.9"}],
            [{"ip": "10.1.0.7", "hostname": "web-2"}],
        ),
    )
    await store.create(ep, endpoints("api", [{"ip": "10.1.1.1", "hostname": "api-0"}]))
    core = DnsCore(StoreListWatcher(store), "127.0.0.1", 0)
    assert await core.start(2)
    yield core
    await core.stop()
    await kv.close()


async def query(core: DnsCore, name: str) -> Any:
    q = dnslib.DNSRecord.question(name, "A")
    raw = await asyncio.to_thread(q.send, core.host, core.port, False, 2)
    return dnslib.DNSRecord.parse(raw)


def addresses(reply: Any) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == dnslib.QTYPE.A)


async def test_pod_hostnames_under_a_headless_service_resolve(dns: DnsCore) -> None:
    for name in (
        "web-0.web.default.svc.cluster.local",
        "web-0.web.default.svc",
        "WEB-0.web.default.svc.cluster.local.",
    ):
        reply = await query(dns, name)
        assert reply.header.rcode == dnslib.RCODE.NOERROR and addresses(reply) == ["10.1.0.5"], name
    assert addresses(await query(dns, "web-1.web.default.svc.cluster.local")) == ["10.1.0.6"]
    # The Service name itself still answers with every ready address.
    assert addresses(await query(dns, "web.default.svc.cluster.local")) == ["10.1.0.5", "10.1.0.6", "10.1.0.9"]


async def test_unknown_not_ready_and_clusterip_pod_names_are_nxdomain(dns: DnsCore) -> None:
    nx = dnslib.RCODE.NXDOMAIN
    assert (await query(dns, "web-9.web.default.svc.cluster.local")).header.rcode == nx
    assert (await query(dns, "web-2.web.default.svc.cluster.local")).header.rcode == nx  # not ready
    assert (await query(dns, "web-0.web.other.svc.cluster.local")).header.rcode == nx
    assert (await query(dns, "api-0.api.default.svc.cluster.local")).header.rcode == nx  # not headless
    assert (await query(dns, "a.web-0.web.default.svc.cluster.local")).header.rcode == nx


def test_record_table_lookup(dns: DnsCore) -> None:
    found = dns.records.lookup("web-1.web.default.svc.cluster.local")
    assert found is not False and found is not None and not isinstance(found, bool)
    assert found.addresses == ["10.1.0.6"]
    assert dns.records.lookup("web-1.web.default.svc.example.org") is None
