"""ResourceQuota admission: the decision as a pure function (Kubernetes' messages exactly), and
the hook in the API server over MemoryKV: 403s, charges written into status.used, and racing
creates that cannot both take the last slot."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from kray.actors.apiserver.quota import QuotaDenied, evaluate
from kray.crds import Pod, Resource
from kray.crds.core.quota import ResourceQuota

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
NS = "team-a-ns"


def quota(name: str = "team-a", hard: dict[str, Any] | None = None, used: dict[str, Any] | None = None,
          **spec: Any) -> ResourceQuota:  # fmt: skip
    hard = hard or {"requests.nvidia.com/gpu": "8"}
    body: dict[str, Any] = {"metadata": {"name": name, "namespace": NS}, "spec": {"hard": hard, **spec}}
    if used is not None:
        body["status"] = {"hard": hard, "used": used}
    return ResourceQuota.model_validate(body)


def gpu_pod(name: str = "x", gpus: int = 4, **resources: Any) -> Pod:
    limits = {"nvidia.com/gpu": gpus} if gpus else {}
    c = {"name": "main", "image": "x", "resources": {"limits": limits, **resources}}
    return Pod.model_validate({"metadata": {"name": name, "namespace": NS}, "spec": {"containers": [c]}})


def denied(obj: Resource, quotas: list[ResourceQuota], group: str = "", plural: str = "pods") -> str:
    with pytest.raises(QuotaDenied) as exc:
        evaluate(group, plural, obj.name, obj, quotas, NOW)
    return exc.value.message


def test_exceeded_quota_message() -> None:
    q = quota(used={"requests.nvidia.com/gpu": "6"})
    assert denied(gpu_pod(), [q]) == (
        'pods "x" is forbidden: exceeded quota: team-a, requested: requests.nvidia.com/gpu=4, '
        "used: requests.nvidia.com/gpu=6, limited: requests.nvidia.com/gpu=8"
    )


def test_a_fitting_pod_charges_every_quota_it_consumes() -> None:
    gpus = quota(used={"requests.nvidia.com/gpu": "4"})
    pods = quota("pods", {"pods": "2", "count/pods": "5"}, used={"pods": "1", "count/pods": "1"})
    [(a, used_a), (b, used_b)] = evaluate("", "pods", "x", gpu_pod(), [pods, gpus], NOW)
    assert (a.name, {k: str(v) for k, v in used_a.items()}) == ("pods", {"pods": "2", "count/pods": "2"})
    assert (b.name, {k: str(v) for k, v in used_b.items()}) == ("team-a", {"requests.nvidia.com/gpu": "8"})
    assert (a.status.used, b.status.used) == ({"pods": "1", "count/pods": "1"}, {"requests.nvidia.com/gpu": "4"})


def test_missing_cpu_request_is_refused_naming_it() -> None:
    q = quota(hard={"requests.cpu": "64"}, used={"requests.cpu": "0"})
    assert denied(gpu_pod(), [q]) == 'pods "x" is forbidden: failed quota: team-a: must specify requests.cpu for: main'
    assert evaluate("", "pods", "x", gpu_pod(requests={"cpu": "1"}), [q], NOW)


def test_no_status_yet_is_refused() -> None:
    assert denied(gpu_pod(), [quota()]) == (
        'pods "x" is forbidden: status unknown for quota: team-a, resources: requests.nvidia.com/gpu'
    )
    # A quota that limits nothing the object consumes does not get in its way.
    assert evaluate("", "configmaps", "c", Resource.model_validate({}), [quota()], NOW) == []


def test_zero_request_passes_a_full_quota_and_scopes_filter() -> None:
    q = quota(used={"requests.nvidia.com/gpu": "8"})
    assert evaluate("", "pods", "cpu-only", gpu_pod(gpus=0), [q], NOW) == []
    scoped = quota(hard={"pods": "1"}, used={"pods": "1"}, scopes=["BestEffort"])
    burstable = gpu_pod(requests={"cpu": "1"})
    assert evaluate("", "pods", "burstable", burstable, [scoped], NOW) == []
    # QoS looks at cpu and memory only: a pod asking for GPUs alone is BestEffort.
    assert "exceeded quota: team-a, requested: pods=1" in denied(gpu_pod(), [scoped])


def test_object_counts() -> None:
    q = quota(hard={"count/trainingjobs.kray.io": "1"}, used={"count/trainingjobs.kray.io": "1"})
    tj = Resource.model_validate({"metadata": {"name": "train"}})
    assert denied(tj, [q], "kray.io", "trainingjobs") == (
        'trainingjobs.kray.io "train" is forbidden: exceeded quota: team-a, requested: '
        "count/trainingjobs.kray.io=1, used: count/trainingjobs.kray.io=1, limited: count/trainingjobs.kray.io=1"
    )


# ---- through the API server (MemoryKV) ----

QUOTAS = f"/api/v1/namespaces/{NS}/resourcequotas"
PODS = f"/api/v1/namespaces/{NS}/pods"


def pod_body(name: str, gpus: int) -> dict[str, Any]:
    c = {"name": "main", "image": "x", "resources": {"limits": {"nvidia.com/gpu": gpus}}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [c]}}


async def test_admission_charges_and_refuses_concurrent_overcommit(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/namespaces", json={"metadata": {"name": NS}})
    assert r.status_code == 201
    hard = {"requests.nvidia.com/gpu": "4"}
    r = await client.post(QUOTAS, json={"metadata": {"name": "team-a"}, "spec": {"hard": hard}})
    assert r.status_code == 201
    r = await client.post(PODS, json=pod_body("early", 1))
    assert (r.status_code, r.json()["reason"]) == (403, "Forbidden")
    assert "status unknown for quota: team-a" in r.json()["message"]
    # What the controller would write: hard from spec, nothing used.
    status = {"status": {"hard": hard, "used": {"requests.nvidia.com/gpu": "0"}}}
    r = await client.patch(
        f"{QUOTAS}/team-a/status", json=status, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert r.status_code == 200
    results = await asyncio.gather(*(client.post(PODS, json=pod_body(f"p{i}", 2)) for i in range(6)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 201, 403, 403, 403, 403]
    refused = next(r for r in results if r.status_code == 403).json()["message"]
    assert "exceeded quota: team-a, requested: requests.nvidia.com/gpu=2, used: requests.nvidia.com/gpu=4" in refused
    used = (await client.get(f"{QUOTAS}/team-a")).json()["status"]["used"]
    assert used == {"requests.nvidia.com/gpu": "4"}
    r = await client.post(QUOTAS, json={"metadata": {"name": "bad"}, "spec": {"hard": {"limits.nvidia.com/gpu": "1"}}})
    assert r.status_code == 422
    assert r.json()["details"]["causes"][0]["field"] == "spec.hard[limits.nvidia.com/gpu]"
