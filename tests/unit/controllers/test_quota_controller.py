"""The resourcequota controller: usage recomputed from the objects (pure), decreases held back
while a charge may still lack its object, and reconcile passes over hand-written ports."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.controllers.resourcequota import ResourceQuotaReconciler, kinds_for, recount, settle
from kray.actors.framework import FakeClock, Request
from kray.client.errors import NotFound
from kray.crds import REGISTRY, Pod, Resource
from kray.crds.core.quota import ResourceQuota
from kray.crds.quantity import Quantity, resource_list
from kray.crds.registry import KindInfo

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
NS = "ml"
HARD = {"requests.nvidia.com/gpu": "8", "pods": "20", "count/trainingjobs.kray.io": "4", "count/foos.example.com": "1"}


def a_quota(used: dict[str, str] | None = None) -> ResourceQuota:
    body: dict[str, Any] = {"metadata": {"name": "team-a", "namespace": NS}, "spec": {"hard": HARD}}
    if used is not None:
        body["status"] = {"hard": HARD, "used": used}
    return ResourceQuota.model_validate(body)


def a_pod(name: str, gpus: int, phase: str = "Running") -> Pod:
    c = {"name": "main", "image": "x", "resources": {"limits": {"nvidia.com/gpu": gpus}}}
    return Pod.model_validate(
        {"metadata": {"name": name, "namespace": NS}, "spec": {"containers": [c]}, "status": {"phase": phase}}
    )


def strs(values: dict[str, Quantity] | None) -> dict[str, str]:
    return {k: str(v) for k, v in (values or {}).items()}


def test_kinds_for_the_hard_resources() -> None:
    kinds = kinds_for(resource_list(HARD), REGISTRY)
    assert [(i.group, i.plural) for i in kinds] == [("", "pods"), ("kray.io", "trainingjobs")]


def test_recount_from_live_objects() -> None:
    pods: list[Resource] = [a_pod("a", 4), a_pod("b", 2), a_pod("done", 4, "Succeeded")]
    tjs = [Resource.model_validate({"metadata": {"name": "t", "namespace": NS}})]  # any object of the kind
    q = a_quota({"count/foos.example.com": "1"})  # a kind unknown here keeps the API server's charge
    used = recount(q, {("", "pods"): pods, ("kray.io", "trainingjobs"): tjs}, NOW)
    assert strs(used) == {
        "requests.nvidia.com/gpu": "6",
        "pods": "2",
        "count/trainingjobs.kray.io": "1",
        "count/foos.example.com": "1",
    }


def test_settle_keeps_only_what_recent_charges_may_still_hold() -> None:
    old, new = resource_list({"pods": "5", "cpu": "1"}), resource_list({"pods": "2", "cpu": "2"})
    assert settle(old, new, {}) == (new, False)  # nothing charged lately: the recount stands
    held, was_held = settle(old, new, resource_list({"pods": "1"}))
    assert (strs(held), was_held) == ({"pods": "3", "cpu": "2"}, True)  # 2 counted + 1 maybe in flight
    held, _ = settle(old, new, resource_list({"pods": "9"}))
    assert strs(held) == {"pods": "5", "cpu": "2"}  # never above what it was


class Ports:
    """Reader and Writer over a quota and pods, recording status writes."""

    def __init__(self, quota: ResourceQuota, pods: list[Pod]) -> None:
        self.quota, self.pods, self.writes = quota, pods, 0

    async def get(self, kind: Any, name: str, namespace: str | None = None) -> Any:
        if kind is ResourceQuota and name == self.quota.name:
            return self.quota
        raise NotFound(404, "NotFound", "not found")

    async def list(self, kind: Any, namespace: str | None = None, *, label_selector: str | None = None) -> Any:
        return list(self.pods) if kind is Pod else []

    async def update_status(self, obj: Any) -> Any:
        self.writes += 1
        self.quota = obj
        return obj

    async def create(self, obj: Any) -> Any: ...

    async def update(self, obj: Any) -> Any: ...

    async def patch(self, kind: Any, name: str, patch: Any, namespace: str | None = None) -> Any: ...

    async def delete(self, kind: Any, name: str, namespace: str | None = None) -> Any: ...


async def test_reconcile_sets_status_and_releases_after_settling() -> None:
    ports = Ports(a_quota(), [a_pod("a", 4), a_pod("b", 4)])
    clock = FakeClock(NOW)
    watched: list[KindInfo] = []
    reconciler = ResourceQuotaReconciler(ports, ports, clock, watched.append, settle_seconds=2.0)
    request = Request(NS, "team-a")
    result = await reconciler.reconcile(request)
    assert ports.writes == 1 and result.requeue_after == 300.0
    assert ports.quota.status is not None and strs(ports.quota.status.hard) == HARD
    assert strs(ports.quota.status.used)["requests.nvidia.com/gpu"] == "8"
    assert {(i.group, i.plural) for i in watched} == {("", "pods"), ("kray.io", "trainingjobs")}
    await reconciler.reconcile(request)
    assert ports.writes == 1  # level-based: nothing changed, nothing written

    # Charges were just seen (the API server admitted pods not yet stored?) and a pod went away:
    # the lower recount must wait, the write happens once the charges have settled.
    reconciler.observe(None, ports.quota)
    ports.pods.pop()
    result = await reconciler.reconcile(request)
    assert ports.writes == 1 and result.requeue_after is not None and result.requeue_after <= 2.1
    clock.advance(2.1)
    await reconciler.reconcile(request)
    assert ports.writes == 2 and strs(ports.quota.status.used)["requests.nvidia.com/gpu"] == "4"
    assert (await reconciler.reconcile(Request(NS, "missing"))).requeue_after is None
