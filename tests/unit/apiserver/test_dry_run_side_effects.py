"""``?dryRun=All`` and the side effects around a write: admission that charges or allocates, the
caches a write updates (namespace phases, PriorityClasses, CRD registration), and the binding
and eviction subresources. The dry run must decide as the real request does and change nothing.
"""

from __future__ import annotations

from typing import Any

import httpx

from kray.actors.apiserver import ApiServer
from kray.actors.apiserver.binding import read_allocation
from kray.actors.apiserver.clusterip import IP_PREFIX
from kray.actors.store import MemoryKV

from .conftest import pod, snapshot

DRY = {"dryRun": "All"}
MERGE = {"Content-Type": "application/merge-patch+json"}
NS = "team-a"
QUOTAS = f"/api/v1/namespaces/{NS}/resourcequotas"
SERVICES = "/api/v1/namespaces/default/services"
PODS = "/api/v1/namespaces/default/pods"


def gpu_pod(name: str, gpus: int) -> dict[str, Any]:
    body = pod(name)
    body["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
    return body


def service(name: str, cluster_ip: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"port": 80}]}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


async def ip_keys(kv: MemoryKV) -> list[str]:
    items, _ = await kv.range(IP_PREFIX)
    return sorted(i.key for i in items)


async def test_quota_refuses_over_the_limit_and_charges_nothing(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    assert (await client.post("/api/v1/namespaces", json={"metadata": {"name": NS}})).status_code == 201
    hard = {"requests.nvidia.com/gpu": "4"}
    assert (await client.post(QUOTAS, json={"metadata": {"name": "q"}, "spec": {"hard": hard}})).status_code == 201
    status = {"status": {"hard": hard, "used": {"requests.nvidia.com/gpu": "2"}}}
    assert (await client.patch(f"{QUOTAS}/q/status", json=status, headers=MERGE)).status_code == 200
    pods = f"/api/v1/namespaces/{NS}/pods"
    before = await snapshot(kv)
    r = await client.post(pods, json=gpu_pod("big", 4), params=DRY)
    assert (r.status_code, r.json()["reason"]) == (403, "Forbidden")
    assert r.json()["message"] == (
        'pods "big" is forbidden: exceeded quota: q, requested: requests.nvidia.com/gpu=4, '
        "used: requests.nvidia.com/gpu=2, limited: requests.nvidia.com/gpu=4"
    )
    for _ in range(3):  # a charge per dry run would fill the quota after one
        r = await client.post(pods, json=gpu_pod("fits", 2), params=DRY)
        assert r.status_code == 201, r.text
    assert await snapshot(kv) == before
    used = (await client.get(f"{QUOTAS}/q")).json()["status"]["used"]
    assert used == {"requests.nvidia.com/gpu": "2"}
    assert (await client.post(pods, json=gpu_pod("real", 2))).status_code == 201  # the room is still there


async def test_service_without_cluster_ip_allocates_nothing(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    before, keys = await snapshot(kv), await ip_keys(kv)
    r = await client.post(SERVICES, json=service("web"), params=DRY)
    assert r.status_code == 201, r.text
    assert not r.json()["spec"].get("clusterIP")
    assert await ip_keys(kv) == keys
    assert await snapshot(kv) == before
    real = await client.post(SERVICES, json=service("web"))
    assert real.status_code == 201 and real.json()["spec"]["clusterIP"]


async def test_service_with_a_requested_ip_is_checked_not_reserved(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    assert (await client.post(SERVICES, json=service("taken", "10.96.0.10"))).status_code == 201
    before = await snapshot(kv)
    r = await client.post(SERVICES, json=service("free", "10.96.0.11"), params=DRY)
    assert r.status_code == 201, r.text
    assert (r.json()["spec"]["clusterIP"], r.json()["spec"]["clusterIPs"]) == ("10.96.0.11", ["10.96.0.11"])
    r = await client.post(SERVICES, json=service("dup", "10.96.0.10"), params=DRY)
    assert r.status_code == 422 and "provided IP is already allocated" in r.json()["message"]
    r = await client.post(SERVICES, json=service("out", "192.168.0.1"), params=DRY)
    assert r.status_code == 422 and "provided IP is not in the valid range" in r.json()["message"]
    assert await snapshot(kv) == before
    # 10.96.0.11 was not reserved by the dry run: a real create can still have it.
    assert (await client.post(SERVICES, json=service("free", "10.96.0.11"))).status_code == 201


async def test_priority_class_is_not_cached(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    pcs = "/apis/scheduling.k8s.io/v1/priorityclasses"
    before = await snapshot(kv)
    r = await client.post(pcs, json={"metadata": {"name": "high"}, "value": 1000}, params=DRY)
    assert r.status_code == 201, r.text
    assert await snapshot(kv) == before
    body = pod("p")
    body["spec"]["priorityClassName"] = "high"
    r = await client.post(PODS, json=body)
    assert r.status_code == 403 and "no PriorityClass with name high was found" in r.json()["message"]


async def test_namespace_delete_leaves_it_active(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    ns = {"metadata": {"name": "keep"}, "spec": {"finalizers": ["kubernetes"]}}  # deleted via Terminating
    assert (await client.post("/api/v1/namespaces", json=ns)).status_code == 201
    before = await snapshot(kv)
    r = await client.delete("/api/v1/namespaces/keep", params=DRY)
    assert r.status_code == 200 and r.json()["status"]["phase"] == "Terminating"
    assert r.json()["metadata"]["deletionTimestamp"]
    r = await client.delete("/api/v1/namespaces/default", params=DRY)  # refused as the real one is
    assert r.status_code == 403 and "may not be deleted" in r.json()["message"]
    assert await snapshot(kv) == before
    got = (await client.get("/api/v1/namespaces/keep")).json()
    assert got["status"]["phase"] == "Active" and "deletionTimestamp" not in got["metadata"]
    # The namespace cache must not have been told it is terminating.
    cm = {"metadata": {"name": "c"}}
    assert (await client.post("/api/v1/namespaces/keep/configmaps", json=cm)).status_code == 201


async def test_custom_resource_definition_is_not_registered(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }
    before = await snapshot(kv)
    r = await client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd, params=DRY)
    assert r.status_code == 201, r.text
    assert {c["type"] for c in r.json()["status"]["conditions"]} == {"NamesAccepted", "Established"}
    assert await snapshot(kv) == before
    assert (await client.get("/apis/example.com/v1")).status_code == 404
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert (await client.post("/apis/example.com/v1/namespaces/default/widgets", json=widget)).status_code == 404


async def test_binding_checks_and_binds_nothing(client: httpx.AsyncClient, kv: MemoryKV, api: ApiServer) -> None:
    node = {"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "10"}}}
    assert (await client.post("/api/v1/nodes", json=node)).status_code == 201
    created = (await client.post(PODS, json=pod("p"))).json()
    before = await snapshot(kv)
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"name": "n1"}}
    r = await client.post(f"{PODS}/p/binding", json=binding, params=DRY)
    assert r.status_code == 201 and r.json()["status"] == "Success"
    missing = {**binding, "target": {"name": "nope"}}
    assert (await client.post(f"{PODS}/p/binding", json=missing, params=DRY)).status_code == 404
    assert await snapshot(kv) == before
    assert (await client.get(f"{PODS}/p")).json() == created
    assert (await read_allocation(api.store, "n1")).pods == {}  # no node allocation record either


async def test_eviction_with_the_query_parameter(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    created = (await client.post(PODS, json=pod("victim"))).json()
    before = await snapshot(kv)
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "victim"}}
    r = await client.post(f"{PODS}/victim/eviction", json=eviction, params=DRY)
    assert r.status_code == 201, r.text
    r = await client.post(f"{PODS}/victim/eviction", json=eviction, params={"dryRun": "Bogus"})
    assert r.status_code == 400
    assert await snapshot(kv) == before
    assert (await client.get(f"{PODS}/victim")).json() == created
