"""The PodGroup controller: keep a gang's status (phase, member counts) from its pods.

Pods join a group with the ``scheduling.kray.io/pod-group`` label (the one the scheduler's
Coscheduling plugin reads), in the group's namespace. Level-based: every pass re-reads the group
and its members from the informer cache, computes the status and writes it through the status
subresource with the resourceVersion it read (a stale read is a 409, and the pass is redone).

Phases follow scheduler-plugins' PodGroup controller, computed from the members present rather
than stepped from the previous phase, so a missed event can never strand a group:

    Pending     fewer than minMember members exist (the scheduler's PreFilter rejects them)
    Scheduling  enough members exist; fewer than minMember are bound to nodes
    Scheduled   minMember are bound, fewer than minMember run (or have run to success)
    Running     running + succeeded >= minMember
    Finished    every member has ended and none failed
    Failed      a member failed and the gang is past scheduling (failed + running + succeeded
                >= minMember), or every member has ended and one failed

Members being deleted do not count: a restarted gang (the TrainingJob operator deletes every
member and makes new ones) must not stay Failed because of the old ones. Once the last member
is gone a Finished or Failed group keeps its phase (cleanPodPolicy removes the pods of a
finished job; the verdict stays). ``scheduleStartTime`` is set the first time the group has
enough members to be scheduled and kept from then on.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Protocol

from kray.actors.framework import ControllerBuilder, Manager, Reader, Request, Result, Writer
from kray.actors.framework.ports import Clock
from kray.client.errors import NotFound
from kray.crds.core import Pod
from kray.crds.meta import Resource
from kray.crds.scheduling import POD_GROUP_LABEL, PodGroup, PodGroupPhase, PodGroupStatus

log = logging.getLogger(__name__)

NAME = "podgroup"
# Pods by "<namespace>/<group>": a pass reads its members without scanning the namespace.
POD_GROUP_INDEX = "pod-group"
TERMINAL_PHASES: tuple[PodGroupPhase, ...] = ("Finished", "Failed")


def group_key(obj: Resource) -> str | None:
    """'<namespace>/<group>' of a pod that belongs to a PodGroup, else None."""
    group = (obj.metadata.labels or {}).get(POD_GROUP_LABEL)
    return f"{obj.metadata.namespace or 'default'}/{group}" if group else None


def pod_group_index(obj: Resource) -> list[str]:
    key = group_key(obj)
    return [key] if key else []


def pod_to_group(obj: Resource) -> list[Request]:
    """A member's changes wake its group."""
    group = (obj.metadata.labels or {}).get(POD_GROUP_LABEL)
    return [Request(obj.metadata.namespace or "default", group)] if group else []


def _phase_of(pod: Pod) -> str:
    return (pod.status.phase if pod.status else None) or "Pending"


def podgroup_status(pg: PodGroup, pods: list[Pod], now: datetime) -> PodGroupStatus:
    """The status ``pg`` should have with these pods (its members, terminating ones included:
    they are left out here)."""
    previous = pg.status or PodGroupStatus()
    members = [p for p in pods if p.metadata.deletion_timestamp is None]
    phases = [_phase_of(p) for p in members]
    running, succeeded, failed = (phases.count(x) for x in ("Running", "Succeeded", "Failed"))
    scheduled = sum(1 for p in members if p.spec.node_name)
    ended = succeeded + failed
    min_member = pg.spec.min_member
    phase: PodGroupPhase
    if not members:
        phase = previous.phase if previous.phase in TERMINAL_PHASES else "Pending"
    elif ended == len(members):
        phase = "Failed" if failed else "Finished"
    elif failed and failed + running + succeeded >= min_member:
        phase = "Failed"
    elif running + succeeded >= min_member:
        phase = "Running"
    elif scheduled >= min_member:
        phase = "Scheduled"
    elif len(members) >= min_member:
        phase = "Scheduling"
    else:
        phase = "Pending"
    start = previous.schedule_start_time
    if start is None and phase != "Pending":
        start = now
    return PodGroupStatus(
        phase=phase,
        scheduled=scheduled,
        running=running,
        succeeded=succeeded,
        failed=failed,
        schedule_start_time=start,
    )


class GroupReader(Reader, Protocol):
    """A cache reader with indexes (``manager.reader``)."""

    async def by_index(self, kind: type[Pod], index: str, value: str) -> list[Pod]: ...


class PodGroupReconciler:
    def __init__(self, reader: GroupReader, writer: Writer, clock: Clock) -> None:
        self.reader = reader
        self.writer = writer
        self.clock = clock

    async def reconcile(self, request: Request) -> Result:
        try:
            pg = await self.reader.get(PodGroup, request.name, request.namespace)
        except NotFound:
            return Result()
        if pg.metadata.deletion_timestamp is not None:
            return Result()
        pods = await self.reader.by_index(Pod, POD_GROUP_INDEX, f"{pg.namespace or 'default'}/{pg.name}")
        status = podgroup_status(pg, pods, self.clock.now())
        if pg.status == status:
            return Result()
        updated = pg.model_copy(deep=True)
        updated.status = status
        await self.writer.update_status(updated)  # the resourceVersion read: stale -> 409 -> requeued
        if (pg.status.phase if pg.status else None) != status.phase:
            log.debug("PodGroup %s/%s: %s", pg.namespace, pg.name, status.phase)
        return Result()


def setup(manager: Manager, **options: object) -> None:
    """Register the PodGroup controller (options: ``workers``: int, default 2)."""
    workers = options.get("workers", 2)
    pods = manager.informer_for(Pod)
    try:
        pods.add_index(POD_GROUP_INDEX, pod_group_index)
    except ValueError:
        pass  # another PodGroup controller in this manager added it (the builder refuses the twin)
    reconciler = PodGroupReconciler(manager.reader, manager.writer, manager.clock)
    builder = ControllerBuilder(manager).named(NAME).for_(PodGroup).watches(Pod, pod_to_group)
    builder.with_workers(workers if isinstance(workers, int) else 2).complete(reconciler)


build = setup  # deploy_controller("podgroup", "kray.actors.controllers.podgroup:setup", config)
