"""The disruption controller's status computation (table-driven, pure), and one reconcile pass
over small hand-written ports: the status is written only when it changes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.controllers.disruption import DisruptionReconciler, pdb_status, pod_healthy, pruned_disrupted_pods
from kray.actors.framework import FakeClock, Request
from kray.client.errors import NotFound
from kray.crds import Pod
from kray.crds.policy import PodDisruptionBudget, PodDisruptionBudgetStatus

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
NS = "default"


def a_pod(name: str, phase: str = "Running", ready: bool = True, deleting: bool = False) -> Pod:
    meta: dict[str, Any] = {"name": name, "namespace": NS, "labels": {"app": "web"}}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    status = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return Pod.model_validate(
        {"metadata": meta, "spec": {"containers": [{"name": "c", "image": "x"}]}, "status": status}
    )


def a_pdb(disrupted: dict[str, datetime] | None = None, **spec: Any) -> PodDisruptionBudget:
    body = {"metadata": {"name": "b", "namespace": NS, "generation": 3},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}}  # fmt: skip
    obj = PodDisruptionBudget.model_validate(body)
    if disrupted is not None:
        obj.status = PodDisruptionBudgetStatus(disrupted_pods=disrupted)
    return obj


def test_healthy_means_running_and_ready() -> None:
    assert pod_healthy(a_pod("a"))
    assert not pod_healthy(a_pod("a", ready=False))
    assert not pod_healthy(a_pod("a", phase="Pending"))


@pytest.mark.parametrize(
    ("spec", "pods", "counts"),
    [  # counts: (expected, currentHealthy, desiredHealthy, disruptionsAllowed)
        ({"minAvailable": 2}, ["ok", "ok", "ok"], (3, 3, 2, 1)),
        ({"minAvailable": 2}, ["ok", "ok", "unready"], (3, 2, 2, 0)),
        ({"minAvailable": "50%"}, ["ok", "ok", "ok"], (3, 3, 2, 1)),
        ({"maxUnavailable": 1}, ["ok", "ok", "ok", "ok"], (4, 4, 3, 1)),
        ({"maxUnavailable": "30%"}, ["ok"] * 4, (4, 4, 2, 2)),  # 1.2 -> 2 unavailable
        ({"maxUnavailable": 1}, ["ok", "deleting", "pending"], (3, 1, 2, 0)),
        ({"minAvailable": 0}, [], (0, 0, 0, 0)),  # no pods expected: nothing may go
    ],
)
def test_status_counts(spec: dict[str, Any], pods: list[str], counts: tuple[int, int, int, int]) -> None:
    kinds = {"ok": {}, "unready": {"ready": False}, "deleting": {"deleting": True}, "pending": {"phase": "Pending"}}
    members = [a_pod(f"p{i}", **kinds[k]) for i, k in enumerate(pods)]  # type: ignore[arg-type]
    status, recheck = pdb_status(a_pdb(**spec), members, NOW)
    got = (status.expected_pods, status.current_healthy, status.desired_healthy, status.disruptions_allowed)
    assert got == counts
    assert status.observed_generation == 3 and recheck is None
    [cond] = status.conditions or []
    assert (cond.type, cond.status) == ("DisruptionAllowed", "True" if counts[3] else "False")


def test_disrupted_pods_are_not_healthy_until_they_time_out() -> None:
    pods = [a_pod("a"), a_pod("b"), a_pod("c"), a_pod("d", deleting=True)]
    evicted = {"a": NOW - timedelta(seconds=30), "gone": NOW, "d": NOW, "old": NOW - timedelta(minutes=5)}
    kept, recheck = pruned_disrupted_pods(evicted, pods, NOW)
    assert kept == {"a": NOW - timedelta(seconds=30)}  # gone, deleting and expired entries dropped
    assert recheck == NOW + timedelta(seconds=90)
    status, after = pdb_status(a_pdb(evicted, minAvailable=1), pods, NOW)
    assert (status.current_healthy, status.disruptions_allowed, after) == (2, 1, 90.0)
    expired, _ = pdb_status(a_pdb(evicted, minAvailable=1), pods, NOW + timedelta(minutes=2))
    assert expired.disrupted_pods is None and expired.current_healthy == 3


class Ports:
    """Reader and Writer over two lists, recording status writes."""

    def __init__(self, pdb: PodDisruptionBudget, pods: list[Pod]) -> None:
        self.pdb, self.pods, self.writes = pdb, pods, 0

    async def get(self, kind: Any, name: str, namespace: str | None = None) -> Any:
        if kind is PodDisruptionBudget and name == self.pdb.name:
            return self.pdb
        raise NotFound(404, "NotFound", "not found")

    async def list(self, kind: Any, namespace: str | None = None, *, label_selector: str | None = None) -> Any:
        return list(self.pods)

    async def update_status(self, obj: Any) -> Any:
        self.writes += 1
        self.pdb = obj
        return obj

    async def create(self, obj: Any) -> Any: ...

    async def update(self, obj: Any) -> Any: ...

    async def patch(self, kind: Any, name: str, patch: Any, namespace: str | None = None) -> Any: ...

    async def delete(self, kind: Any, name: str, namespace: str | None = None) -> Any: ...


async def test_reconcile_writes_only_changes_and_requeues_for_expiry() -> None:
    ports = Ports(a_pdb(minAvailable=2), [a_pod("a"), a_pod("b"), a_pod("c")])
    reconciler = DisruptionReconciler(ports, ports, FakeClock(NOW))
    assert (await reconciler.reconcile(Request(NS, "b"))).requeue_after is None
    assert ports.writes == 1 and ports.pdb.status is not None and ports.pdb.status.disruptions_allowed == 1
    await reconciler.reconcile(Request(NS, "b"))
    assert ports.writes == 1  # level-based: nothing changed, nothing written
    ports.pdb.status.disrupted_pods = {"a": NOW}
    result = await reconciler.reconcile(Request(NS, "b"))
    assert ports.writes == 2 and ports.pdb.status.disruptions_allowed == 0
    assert result.requeue_after == pytest.approx(120.5)
    assert (await reconciler.reconcile(Request(NS, "missing"))).requeue_after is None
