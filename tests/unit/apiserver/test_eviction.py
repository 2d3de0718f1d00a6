"""The eviction subresource: the decision as a pure function (kube-apiserver's rules), the body
checks, then the HTTP surface over MemoryKV: the PDB write and the pod deletion are one
transaction, a refusal is Kubernetes' 429 and changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from kray.actors.apiserver import errors
from kray.actors.apiserver.eviction import MORE_THAN_ONE, VIOLATES_BUDGET, decide, decremented, parse_eviction
from kray.actors.store import MemoryKV
from kray.crds import Pod
from kray.crds.policy import PodDisruptionBudget

from .conftest import NOW, pod, snapshot

NS = "default"
PODS = f"/api/v1/namespaces/{NS}/pods"
PDBS = f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets"
READY = [{"type": "Ready", "status": "True"}]


def a_pod(name: str = "p", phase: str = "Running", ready: bool = True, **meta: Any) -> Pod:
    status = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return Pod.model_validate({**pod(name, labels={"app": "web"}, namespace=NS, **meta), "status": status})


def a_pdb(
    name: str = "budget", allowed: int = 1, current: int = 3, desired: int = 2, **spec: Any
) -> PodDisruptionBudget:
    body = {
        "metadata": {"name": name, "namespace": NS, "generation": 1},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec},
        "status": {"observedGeneration": 1, "disruptionsAllowed": allowed, "currentHealthy": current,
                   "desiredHealthy": desired, "expectedPods": 3},
    }  # fmt: skip
    return PodDisruptionBudget.model_validate(body)


# ---- the decision ----


def test_no_budget_or_a_pod_that_disrupts_nothing_is_deleted() -> None:
    assert decide(a_pod(), []).action == "delete"
    for p in (a_pod(phase="Pending"), a_pod(phase="Succeeded"), a_pod(phase="Failed")):
        assert decide(p, [a_pdb(allowed=0)]).action == "delete"
    deleting = a_pod(deletionTimestamp="2024-01-01T00:00:00Z")
    assert decide(deleting, [a_pdb(allowed=0)]).action == "delete"


def test_a_healthy_pod_consumes_a_disruption_or_is_refused() -> None:
    verdict = decide(a_pod(), [a_pdb(allowed=1)])
    assert verdict.action == "decrement" and verdict.pdb is not None
    with pytest.raises(errors.ApiError) as exc:
        decide(a_pod(), [a_pdb(allowed=0, current=2, desired=2)])
    status = exc.value.status
    assert (status.code, status.reason, status.message) == (429, "TooManyRequests", VIOLATES_BUDGET)
    [cause] = (status.details.causes if status.details else None) or []
    assert (cause.reason, cause.message) == (
        "DisruptionBudget", "The disruption budget budget needs 2 healthy pods and has 2 currently",
    )  # fmt: skip


def test_more_than_one_budget_is_an_internal_error() -> None:
    with pytest.raises(errors.ApiError) as exc:
        decide(a_pod(), [a_pdb("a"), a_pdb("b")])
    assert exc.value.code == 500 and exc.value.message == f"Internal error occurred: {MORE_THAN_ONE}"


def test_a_status_older_than_the_spec_is_not_trusted() -> None:
    stale = a_pdb(allowed=5)
    stale.metadata.generation = 2
    with pytest.raises(errors.ApiError) as exc:
        decide(a_pod(), [stale])
    assert exc.value.code == 429 and "unable to read PDB status" in exc.value.message
    unseen = a_pdb()
    unseen.status = None
    with pytest.raises(errors.ApiError):
        decide(a_pod(), [unseen])


@pytest.mark.parametrize(
    ("policy", "current", "desired", "action"),
    [
        ("AlwaysAllow", 1, 2, "delete"),  # unhealthy pods may always go
        (None, 2, 2, "delete"),  # IfHealthyBudget (default): the budget is met anyway
        ("IfHealthyBudget", 3, 2, "delete"),
        (None, 1, 2, "refuse"),  # the application is already disrupted: keep even unready pods
        (None, 0, 0, "refuse"),  # desiredHealthy 0 does not count as "met" (kube's > 0)
    ],
)
def test_unhealthy_pods_follow_the_eviction_policy(policy: str | None, current: int, desired: int, action: str) -> None:
    spec = {"unhealthyPodEvictionPolicy": policy} if policy else {}
    budget = a_pdb(allowed=0, current=current, desired=desired, **spec)
    if action == "refuse":
        with pytest.raises(errors.ApiError) as exc:
            decide(a_pod(ready=False), [budget])
        assert exc.value.code == 429
        return
    verdict = decide(a_pod(ready=False), [budget])
    assert (verdict.action, verdict.guard_pod) == ("delete", True)


def test_decrement_notes_the_pod_and_flips_the_condition_at_zero() -> None:
    status = a_pdb(allowed=1).status
    assert status is not None
    after = decremented(status, "p", NOW)
    assert after.disruptions_allowed == 0 and after.disrupted_pods == {"p": NOW}
    assert [(c.type, c.status, c.reason) for c in after.conditions or []] == [
        ("DisruptionAllowed", "False", "InsufficientPods")
    ]
    assert status.disruptions_allowed == 1  # the input is left alone


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "Binding"}, 'kind: Unsupported value: "Binding": supported values: "Eviction"'),
        ({"metadata": {"name": "other"}}, "name in URL does not match name in Eviction object"),
        ({"deleteOptions": []}, "deleteOptions: Invalid value"),
        ({"deleteOptions": {"gracePeriodSeconds": "soon"}}, 'deleteOptions.gracePeriodSeconds: Invalid value: "soon"'),
        ({"deleteOptions": {"propagationPolicy": "Later"}}, "deleteOptions.propagationPolicy: Unsupported value"),
        ({"deleteOptions": {"dryRun": ["Some"]}}, "deleteOptions.dryRun: Unsupported value"),
    ],
)
def test_bad_bodies_name_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.ApiError) as exc:
        parse_eviction(NS, "p", body)
    assert exc.value.code == 400 and exc.value.message.startswith(message), exc.value.message


def test_delete_options_are_passed_on() -> None:
    body = {"deleteOptions": {"gracePeriodSeconds": 0, "preconditions": {"uid": "u"}, "dryRun": ["All"]}}
    assert parse_eviction(NS, "p", body) == ({"gracePeriodSeconds": 0, "preconditions": {"uid": "u"}}, True)


# ---- over HTTP ----


def eviction(name: str, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": NS}, **extra}


async def running_pod(client: httpx.AsyncClient, name: str, **meta: Any) -> None:
    r = await client.post(PODS, json=pod(name, labels={"app": "web"}, **meta))
    assert r.status_code == 201, r.text
    status = {"status": {"phase": "Running", "conditions": READY}}
    r = await client.patch(
        f"{PODS}/{name}/status", json=status, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert r.status_code == 200, r.text


async def budget(client: httpx.AsyncClient, allowed: int, **spec: Any) -> None:
    body = a_pdb(allowed=allowed).to_dict()
    body["spec"] = {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}, **spec}
    status = body.pop("status")
    r = await client.post(PDBS, json=body)
    assert r.status_code == 201, r.text
    r = await client.put(f"{PDBS}/budget/status", json={**r.json(), "status": status})
    assert r.status_code == 200, r.text


async def test_eviction_decrements_the_budget_and_deletes_in_one_write(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    for name in ("a", "b", "c"):
        await running_pod(client, name)
    await budget(client, allowed=1)
    before = await kv.current_revision()
    r = await client.post(f"{PODS}/a/eviction", json=eviction("a"))
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "Success"
    assert await kv.current_revision() == before + 1  # one transaction: PDB and pod together
    assert (await client.get(f"{PODS}/a")).status_code == 404
    status = (await client.get(f"{PDBS}/budget")).json()["status"]
    assert status["disruptionsAllowed"] == 0
    assert status["disruptedPods"] == {"a": "2024-01-01T00:00:00Z"}

    unchanged = await snapshot(kv)
    r = await client.post(f"{PODS}/b/eviction", json=eviction("b"))
    assert r.status_code == 429, r.text
    body = r.json()
    assert (body["reason"], body["message"]) == ("TooManyRequests", VIOLATES_BUDGET)
    assert body["details"]["causes"] == [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget budget needs 2 healthy pods and has 3 currently",
        }
    ]
    assert await snapshot(kv) == unchanged


async def test_pods_without_budget_missing_pods_and_dry_runs(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    await running_pod(client, "free")
    await client.post(PODS, json=pod("other", labels={"app": "other"}))
    r = await client.post(f"{PODS}/nope/eviction", json=eviction("nope"))
    assert (r.status_code, r.json()["message"]) == (404, 'pods "nope" not found')
    unchanged = await snapshot(kv)
    dry = await client.post(f"{PODS}/free/eviction", json=eviction("free", deleteOptions={"dryRun": ["All"]}))
    assert dry.status_code == 201 and await snapshot(kv) == unchanged
    r = await client.post(f"{PODS}/free/eviction", json=eviction("free"))
    assert r.status_code == 201, r.text
    assert (await client.get(f"{PODS}/free")).status_code == 404
    bad = await client.post(f"{PODS}/other/eviction", json=eviction("other", deleteOptions={"gracePeriodSeconds": "x"}))
    assert bad.status_code == 400 and bad.json()["message"].startswith("deleteOptions.gracePeriodSeconds")
    assert (await client.get(f"{PODS}/other/eviction")).status_code == 405


async def test_a_scheduled_pod_is_marked_for_graceful_deletion(client: httpx.AsyncClient) -> None:
    for name in ("a", "b", "c"):
        await client.post(PODS, json={**pod(name, labels={"app": "web"}), "spec": {
            "nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}})  # fmt: skip
        await client.patch(f"{PODS}/{name}/status", json={"status": {"phase": "Running", "conditions": READY}},
                           headers={"Content-Type": "application/merge-patch+json"})  # fmt: skip
    await budget(client, allowed=1)
    r = await client.post(f"{PODS}/a/eviction", json=eviction("a", deleteOptions={"gracePeriodSeconds": 7}))
    assert r.status_code == 201, r.text
    meta = (await client.get(f"{PODS}/a")).json()["metadata"]
    assert meta["deletionGracePeriodSeconds"] == 7  # the kubelet stops it, then deletes it
    assert (await client.get(f"{PDBS}/budget")).json()["status"]["disruptionsAllowed"] == 0


async def test_concurrent_evictions_never_overspend_the_budget(client: httpx.AsyncClient) -> None:
    names = [f"p{i}" for i in range(6)]
    for name in names:
        await running_pod(client, name)
    await budget(client, allowed=2)
    answers = await asyncio.gather(*(client.post(f"{PODS}/{n}/eviction", json=eviction(n)) for n in names))
    codes = sorted(r.status_code for r in answers)
    assert codes == [201, 201, 429, 429, 429, 429]
    status = (await client.get(f"{PDBS}/budget")).json()["status"]
    assert status["disruptionsAllowed"] == 0 and len(status["disruptedPods"]) == 2
    remaining = (await client.get(PODS)).json()["items"]
    assert len(remaining) == 4
