"""Priority admission over MemoryKV: priorityClassName -> priority and preemptionPolicy."""

from __future__ import annotations

from typing import Any

import httpx

from .conftest import pod, snapshot

PODS = "/api/v1/namespaces/default/pods"
CLASSES = "/apis/scheduling.k8s.io/v1/priorityclasses"


def priority_class(name: str, value: int, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": name},
        "value": value,
        **extra,
    }


def pod_with(name: str, **spec: Any) -> dict[str, Any]:
    body = pod(name)
    body["spec"].update(spec)
    return body


async def test_class_name_resolves_to_priority_and_policy(client: httpx.AsyncClient) -> None:
    r = await client.post(CLASSES, json=priority_class("batch", 100, preemptionPolicy="Never"))
    assert r.status_code == 201, r.text
    r = await client.post(PODS, json=pod_with("p", priorityClassName="batch"))
    assert r.status_code == 201, r.text
    spec = r.json()["spec"]
    assert (spec["priorityClassName"], spec["priority"], spec["preemptionPolicy"]) == ("batch", 100, "Never")
    # Agreeing with the class is fine, as in Kubernetes.
    r = await client.post(PODS, json=pod_with("q", priorityClassName="batch", priority=100, preemptionPolicy="Never"))
    assert r.status_code == 201, r.text


async def test_no_class_is_priority_zero_until_a_global_default_exists(client: httpx.AsyncClient) -> None:
    r = await client.post(PODS, json=pod("plain"))
    spec = r.json()["spec"]
    assert (spec.get("priorityClassName"), spec["priority"], spec["preemptionPolicy"]) == (
        None,
        0,
        "PreemptLowerPriority",
    )
    await client.post(CLASSES, json=priority_class("normal", 10, globalDefault=True))
    r = await client.post(PODS, json=pod("defaulted"))
    spec = r.json()["spec"]
    assert (spec["priorityClassName"], spec["priority"]) == ("normal", 10)


async def test_only_one_global_default(client: httpx.AsyncClient) -> None:
    assert (await client.post(CLASSES, json=priority_class("a", 1, globalDefault=True))).status_code == 201
    r = await client.post(CLASSES, json=priority_class("b", 2, globalDefault=True))
    assert r.status_code == 403, r.text
    assert "PriorityClass a is already marked as default" in r.json()["message"]


async def test_unknown_class_is_forbidden_and_names_the_field(client: httpx.AsyncClient, kv: Any) -> None:
    before = await snapshot(kv)
    r = await client.post(PODS, json=pod_with("p", priorityClassName="nope"))
    assert r.status_code == 403, r.text
    body = r.json()
    assert (body["kind"], body["status"], body["reason"], body["code"]) == ("Status", "Failure", "Forbidden", 403)
    assert "spec.priorityClassName" in body["message"]
    assert "no PriorityClass with name nope was found" in body["message"]
    assert await snapshot(kv) == before


async def test_client_priority_that_disagrees_is_rejected(client: httpx.AsyncClient) -> None:
    await client.post(CLASSES, json=priority_class("high", 1000))
    r = await client.post(PODS, json=pod_with("p", priorityClassName="high", priority=5))
    assert r.status_code == 403, r.text
    assert "spec.priority" in r.json()["message"] and "computed 1000" in r.json()["message"]
    r = await client.post(PODS, json=pod_with("q", priority=7))  # no class: 0 is computed
    assert r.status_code == 403, r.text
    r = await client.post(PODS, json=pod_with("s", priorityClassName="high", preemptionPolicy="Never"))
    assert r.status_code == 403 and "spec.preemptionPolicy" in r.json()["message"]


async def test_builtin_system_classes_resolve(client: httpx.AsyncClient) -> None:
    for name, value in (("system-cluster-critical", 2_000_000_000), ("system-node-critical", 2_000_001_000)):
        r = await client.post(PODS, json=pod_with(name, priorityClassName=name))
        assert r.status_code == 201, r.text
        assert r.json()["spec"]["priority"] == value


async def test_updates_are_not_re_resolved(client: httpx.AsyncClient) -> None:
    await client.post(CLASSES, json=priority_class("batch", 100))
    await client.post(PODS, json=pod_with("p", priorityClassName="batch"))
    await client.delete(f"{CLASSES}/batch")
    r = await client.patch(
        f"{PODS}/p", json={"metadata": {"labels": {"a": "b"}}}, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["priority"] == 100


async def test_the_system_classes_are_stored_at_startup(client: httpx.AsyncClient) -> None:
    listed = (await client.get(CLASSES)).json()["items"]
    values = {pc["metadata"]["name"]: pc["value"] for pc in listed}
    assert values == {"system-cluster-critical": 2_000_000_000, "system-node-critical": 2_000_001_000}
    # Deleted, they still resolve (admission knows them), as kube-apiserver's do.
    assert (await client.delete(f"{CLASSES}/system-node-critical")).status_code == 200
    critical = pod("critical")
    critical["spec"]["priorityClassName"] = "system-node-critical"
    r = await client.post(PODS, json=critical)
    assert r.status_code == 201 and r.json()["spec"]["priority"] == 2_000_001_000


async def test_classes_written_around_this_server_are_found(client: httpx.AsyncClient, api: Any) -> None:
    """The cache is written through by this server's writes; a class stored by someone else is
    read live when named, and counts as the global default once the cache's TTL has passed."""
    from kray.crds.scheduling import PriorityClass

    info = api.registry.get("scheduling.k8s.io/v1", "PriorityClass")
    assert (await client.post(PODS, json=pod("warm"))).status_code == 201  # the cache is listed now
    outside = PriorityClass.model_validate(priority_class("outside", 7, globalDefault=True))
    await api.store.create(info, outside)
    r = await client.post(PODS, json=pod_with("named", priorityClassName="outside"))
    assert r.status_code == 201 and r.json()["spec"]["priority"] == 7
    api.priority._ttl = 0.0  # as if the TTL had passed
    r = await client.post(PODS, json=pod("defaulted"))
    assert (r.json()["spec"]["priorityClassName"], r.json()["spec"]["priority"]) == ("outside", 7)
