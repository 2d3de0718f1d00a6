"""The cluster DNS core answering real UDP queries on 127.0.0.1 (dnslib's client as resolver)."""

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


def service(name: str, ns: str = "default", **spec: Any) -> Service:
    body: dict[str, Any] = {"ports": [{"port": 80}], **spec}
    return Service.model_validate({"metadata": {"name": name, "namespace": ns}, "spec": body})


@pytest.fixture
async def dns() -> AsyncIterator[tuple[DnsCore, ObjectStore]]:
    kv = MemoryKV()
    store = ObjectStore(kv, REGISTRY)
    svc_info = REGISTRY.for_model(Service)
    await store.create(svc_info, service("web", clusterIP="10.96.0.10"))
    await store.create(svc_info, service("train", ns="ml", clusterIP="10.96.3.3"))
    await store.create(svc_info, service("peers", clusterIP="None"))
    await store.create(svc_info, service("ext", type="ExternalName", externalName="example.org"))
    ep = {"addresses": [{"ip": "10.1.0.3"}, {"ip": "10.1.0.2"}], "ports": [{"port": 80}]}
    await store.create(
        REGISTRY.for_model(Endpoints),
        Endpoints.model_validate({"metadata": {"name": "peers", "namespace": "default"}, "subsets": [ep]}),
    )
    core = DnsCore(StoreListWatcher(store), "127.0.0.1", 0)
    assert await core.start(2)
    yield core, store
    await core.stop()
    await kv.close()


async def query(core: DnsCore, name: str, qtype: str = "A") -> Any:
    q = dnslib.DNSRecord.question(name, qtype)
    raw = await asyncio.to_thread(q.send, core.host, core.port, False, 2)
    return dnslib.DNSRecord.parse(raw)


def addresses(reply: Any) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == dnslib.QTYPE.A)


async def test_service_names_resolve(dns: tuple[DnsCore, ObjectStore]) -> None:
    core, _ = dns
    for name in ("web.default.svc.cluster.local", "web.default.svc", "WEB.default.svc.cluster.local."):
        reply = await query(core, name)
        assert reply.header.rcode == dnslib.RCODE.NOERROR and addresses(reply) == ["10.96.0.10"], name
    assert addresses(await query(core, "train.ml.svc.cluster.local")) == ["10.96.3.3"]
    # Headless: the ready pod addresses.
    assert addresses(await query(core, "peers.default.svc.cluster.local")) == ["10.1.0.2", "10.1.0.3"]
    ext = await query(core, "ext.default.svc.cluster.local")
    assert [str(rr.rdata) for rr in ext.rr] == ["example.org."]


async def test_missing_and_foreign_names(dns: tuple[DnsCore, ObjectStore]) -> None:
    core, _ = dns
    assert (await query(core, "nope.default.svc.cluster.local")).header.rcode == dnslib.RCODE.NXDOMAIN
    assert (await query(core, "web.other.svc")).header.rcode == dnslib.RCODE.NXDOMAIN
    assert (await query(core, "cluster.local")).header.rcode == dnslib.RCODE.NXDOMAIN
    assert (await query(core, "example.com")).header.rcode == dnslib.RCODE.REFUSED
    aaaa = await query(core, "web.default.svc.cluster.local", "AAAA")
    assert aaaa.header.rcode == dnslib.RCODE.NOERROR and aaaa.rr == []


async def test_new_services_resolve_at_once(dns: tuple[DnsCore, ObjectStore]) -> None:
    core, store = dns
    await store.create(REGISTRY.for_model(Service), service("late", clusterIP="10.96.7.7"))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    while addresses(await query(core, "late.default.svc")) != ["10.96.7.7"]:
        assert loop.time() < deadline
        await asyncio.sleep(0.01)
