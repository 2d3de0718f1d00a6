"""ClusterIP allocation by two API servers on one real etcd: concurrent creates never collide."""

from __future__ import annotations

import asyncio
import secrets
import uuid

import httpx

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.apiserver.clusterip import IP_PREFIX
from kray.actors.store import ObjectStore
from kray.actors.store.etcd import EtcdKV
from kray.crds.registry import REGISTRY


async def test_two_replicas_on_etcd_never_duplicate(etcd_endpoint: str) -> None:
    ns = "svc-" + uuid.uuid4().hex[:8]
    cidr = f"10.{100 + secrets.randbelow(100)}.{secrets.randbelow(250)}.0/26"  # 62 addresses
    kvs = [EtcdKV(etcd_endpoint), EtcdKV(etcd_endpoint)]
    servers = [ApiServer(ObjectStore(kv, REGISTRY), REGISTRY, token="t", service_cidr=cidr) for kv in kvs]
    clients = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=s.app), base_url="http://kray.test", headers={"Authorization": "Bearer t"}
        )
        for s in servers
    ]
    try:
        for s in servers:
            await s.start()
        ns_body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        assert (await clients[0].post("/api/v1/namespaces", json=ns_body)).status_code == 201
        url = f"/api/v1/namespaces/{ns}/services"

        def body(i: int) -> dict[str, object]:
            return {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"s{i}"},
                "spec": {"ports": [{"port": 80}]},
            }

        results = await asyncio.gather(*(clients[i % 2].post(url, json=body(i)) for i in range(50)))
        assert all(r.status_code == 201 for r in results), [r.text for r in results if r.status_code != 201]
        ips = [r.json()["spec"]["clusterIP"] for r in results]
        assert len(set(ips)) == 50
        # Deleting through one replica frees the addresses (both replicas watch for it).
        for i in range(50):
            assert (await clients[(i + 1) % 2].delete(f"{url}/s{i}")).status_code == 200
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while True:
            held, _ = await kvs[0].range(IP_PREFIX)
            if not {kv.key[len(IP_PREFIX) :] for kv in held} & set(ips):
                break
            assert loop.time() < deadline, "addresses were not released"
            await asyncio.sleep(0.05)
    finally:
        for s, c in zip(servers, clients, strict=True):
            s.stop()
            await c.aclose()
        for kv in kvs:
            await kv.close()
