"""The disruption controller: keep each PodDisruptionBudget's status from the pods it selects.

Level-based, like kube-controller-manager's DisruptionController: every pass re-reads the PDB
and the pods of its namespace that its selector matches (from the informer cache) and computes

    expectedPods        the number of matching pods. Kubernetes takes the scale of the pods'
                        controllers (ReplicaSet, StatefulSet...) for maxUnavailable and percent
                        minAvailable; counting the pods present is a simplification (a replica
                        that is missing, not merely unhealthy, lowers the expectation instead of
                        using up the budget), and exactly Kubernetes' rule for integer minAvailable.
    currentHealthy      matching pods that are Running with Ready=True, not being deleted, and
                        not just evicted (in status.disruptedPods for less than 2 minutes)
    desiredHealthy      from minAvailable, or expectedPods - maxUnavailable (percentages of
                        expectedPods rounded up, as Kubernetes does)
    disruptionsAllowed  max(0, currentHealthy - desiredHealthy); 0 while no pod is expected

``disruptedPods`` (written by the API server's eviction subresource) loses the entries whose pod
is gone or being deleted (the eviction went through) and those older than 2 minutes (it did not);
the pass is requeued for when the next entry expires. The status is written through the status
subresource with the resourceVersion read, so a stale cache (or an eviction in between) is a 409
and the pass is redone from fresh data.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from kray.actors.framework import ControllerBuilder, Manager, Reader, Request, Result, Writer
from kray.actors.framework.ports import Clock
from kray.client.errors import NotFound
from kray.crds.core import Pod
from kray.crds.meta import Resource
from kray.crds.policy import (
    DELETION_TIMEOUT_SECONDS,
    PodDisruptionBudget,
    PodDisruptionBudgetStatus,
    allowed_disruptions,
    set_disruption_condition,
)

log = logging.getLogger(__name__)

NAME = "disruption"


def pod_healthy(pod: Pod) -> bool:
    """Running with its Ready condition True (kube counts IsPodReady; a ready pod runs)."""
    status = pod.status
    if status is None or status.phase != "Running":
        return False
    ready = status.condition("Ready")
    return ready is not None and ready.status == "True"


def pruned_disrupted_pods(
    disrupted: dict[str, datetime] | None, pods: list[Pod], now: datetime
) -> tuple[dict[str, datetime], datetime | None]:
    """kube's buildDisruptedPodMap: the entries still pending (pod present, not deleting, evicted
    less than 2 minutes ago) and when the earliest of them expires (None: none left)."""
    timeout = timedelta(seconds=DELETION_TIMEOUT_SECONDS)
    live = {p.name: p for p in pods if p.metadata.deletion_timestamp is None}
    kept: dict[str, datetime] = {}
    recheck: datetime | None = None
    for name, when in (disrupted or {}).items():
        if name not in live or when + timeout <= now:
            continue
        kept[name] = when
        recheck = min(recheck, when + timeout) if recheck else when + timeout
    return kept, recheck


def pdb_status(
    pdb: PodDisruptionBudget, pods: list[Pod], now: datetime
) -> tuple[PodDisruptionBudgetStatus, float | None]:
    """The status ``pdb`` should have given its matching ``pods``, and in how many seconds the
    next disruptedPods entry expires (None: nothing to recheck)."""
    disrupted, recheck = pruned_disrupted_pods(pdb.status.disrupted_pods if pdb.status else None, pods, now)
    healthy = sum(
        1 for p in pods if p.metadata.deletion_timestamp is None and p.name not in disrupted and pod_healthy(p)
    )
    expected = len(pods)
    desired = pdb.spec.desired_healthy(expected)
    previous = pdb.status or PodDisruptionBudgetStatus()
    status = PodDisruptionBudgetStatus(
        observed_generation=pdb.metadata.generation,
        disrupted_pods=disrupted or None,
        disruptions_allowed=allowed_disruptions(healthy, desired, expected),
        current_healthy=healthy,
        desired_healthy=desired,
        expected_pods=expected,
        conditions=[c.model_copy() for c in previous.conditions or []] or None,
    )
    set_disruption_condition(status, now)
    return status, (recheck - now).total_seconds() if recheck else None


def _same(a: PodDisruptionBudgetStatus | None, b: PodDisruptionBudgetStatus) -> bool:
    return a is not None and a.to_dict() == b.to_dict()


class DisruptionReconciler:
    def __init__(self, reader: Reader, writer: Writer, clock: Clock) -> None:
        self.reader = reader
        self.writer = writer
        self.clock = clock

    async def reconcile(self, request: Request) -> Result:
        try:
            pdb = await self.reader.get(PodDisruptionBudget, request.name, request.namespace)
        except NotFound:
            return Result()
        if pdb.metadata.deletion_timestamp is not None:
            return Result()
        pods = [p for p in await self.reader.list(Pod, pdb.namespace) if pdb.spec.selects(p.metadata.labels)]
        now = self.clock.now()
        status, recheck = pdb_status(pdb, pods, now)
        after = None if recheck is None else max(recheck, 0.0) + 0.5
        if _same(pdb.status, status):
            return Result(requeue_after=after)
        updated = pdb.model_copy(deep=True)  # cached objects are shared
        updated.status = status
        await self.writer.update_status(updated)  # the resourceVersion read: stale -> 409 -> requeued
        log.debug("PDB %s/%s: %d disruptions allowed", pdb.namespace, pdb.name, status.disruptions_allowed)
        return Result(requeue_after=after)


def setup(manager: Manager, **options: object) -> None:
    """Register the disruption controller (options: ``workers``: int, default 2)."""
    workers = options.get("workers", 2)
    pdbs = manager.informer_for(PodDisruptionBudget)

    def pod_to_pdbs(obj: Resource) -> list[Request]:
        """Every PDB of the pod's namespace whose selector matches it (labels before and after a
        change both count: the builder maps the old and the new object)."""
        labels = obj.metadata.labels
        return [
            Request.for_object(p)
            for p in pdbs.cache.list(obj.metadata.namespace)
            if isinstance(p, PodDisruptionBudget) and p.spec.selects(labels)
        ]

    reconciler = DisruptionReconciler(manager.reader, manager.writer, manager.clock)
    builder = ControllerBuilder(manager).named(NAME).for_(PodDisruptionBudget).watches(Pod, pod_to_pdbs)
    builder.with_workers(workers if isinstance(workers, int) else 2).complete(reconciler)


build = setup  # deploy_controller("disruption", "kray.actors.controllers.disruption:setup", config)
