"""The StatefulSet controller: pods with stable names, stable storage and ordered rollout.

Follows kube-controller-manager's StatefulSetController (``defaultStatefulSetControl``):
- pods are ``<set>-<ordinal>`` (from ``spec.ordinals.start``), with a controller ownerReference,
  the template's labels plus ``statefulset.kubernetes.io/pod-name``, ``apps.kubernetes.io/pod-index``
  and ``controller-revision-hash``, ``hostname=<pod>`` and ``subdomain=<serviceName>``;
- for each ``volumeClaimTemplates`` entry the claim ``<template>-<set>-<ordinal>`` is created before
  the pod and mounted in place of a template volume of the same name;
- ``OrderedReady``: ordinal i is created only when 0..i-1 are Running and Ready (and available
  after minReadySeconds); scale-down removes the highest ordinal first, one at a time, waiting for
  it to terminate. ``Parallel``: everything at once;
- a failed, succeeded or deleted pod is recreated with the same name;
- ``RollingUpdate`` replaces pods whose revision differs from the template's, highest ordinal
  first, one at a time, each only after the one above it is Ready again; ordinals below
  ``partition`` keep their revision. ``OnDelete`` leaves pods alone (status only);
- ``persistentVolumeClaimRetentionPolicy``: ``whenDeleted: Delete`` makes the set an owner of its
  claims (the garbage collector deletes them with it); ``whenScaled: Delete`` deletes the claims of
  ordinals scaled away once their pod is gone. ``Retain`` (the default) keeps them.

Level-based: each pass re-reads the set, its pods and claims from the cache and takes the next
step. Writes carry the resourceVersion read (a stale cache gives a Conflict and a requeue); pod
names are unique, so a lagging cache can at worst make a create fail with AlreadyExists.

kray keeps no ControllerRevision objects: revisions are ``<set>-<template hash>``, recorded in the
status and on pods. A pod below the partition that must be recreated therefore gets the current
template (Kubernetes would rebuild it from the old ControllerRevision).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from kray.actors.framework.builder import ControllerBuilder
from kray.actors.framework.controller import Controller
from kray.actors.framework.manager import Manager
from kray.actors.framework.ports import Clock, Reader, SystemClock, Writer
from kray.actors.framework.reconciler import EventRecorder, Request, Result, controller_of, owner_reference
from kray.client.errors import AlreadyExists, Conflict, NotFound
from kray.crds.apps_statefulset import POD_INDEX_LABEL, POD_NAME_LABEL, StatefulSet, StatefulSetStatus
from kray.crds.core import Pod
from kray.crds.core.storage import PersistentVolumeClaim
from kray.crds.meta import OwnerReference, Resource

from .podutil import is_ready
from .statefulset_pods import (
    claim_name,
    identity_labels_match,
    is_failed_or_succeeded,
    is_healthy,
    is_member_of,
    is_running_and_available,
    is_running_and_ready,
    is_terminating,
    new_claims,
    new_pod,
    ordinal_of,
    parent_and_ordinal,
    retain_on_delete,
    revision_of_pod,
    revision_of_set,
    set_owner_reference,
)

log = logging.getLogger(__name__)

NAME = "statefulset"
CLAIM_WAIT = 1.0  # seconds between looks at a claim that is still being deleted


class _Wait(Exception):
    """Stop this pass: something must change first (an event, or ``after`` seconds)."""

    def __init__(self, after: float | None = None) -> None:
        super().__init__()
        self.after = after


class StatefulSetReconciler:
    def __init__(
        self, reader: Reader, writer: Writer, *, clock: Clock | None = None, recorder: EventRecorder | None = None
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.clock: Clock = clock or SystemClock()
        self.recorder = recorder

    async def reconcile(self, request: Request) -> Result:
        try:
            sts = await self.reader.get(StatefulSet, request.name, request.namespace)
        except NotFound:
            return Result()
        pods = await self._claim(sts)
        claims = {c.name: c for c in await self.reader.list(PersistentVolumeClaim, sts.metadata.namespace)}
        update_revision = revision_of_set(sts)
        current_revision = (sts.status.current_revision if sts.status else None) or update_revision

        after: float | None = None
        error: Exception | None = None
        if sts.metadata.deletion_timestamp is None:
            try:
                await self._sync(sts, pods, claims, update_revision)
            except _Wait as wait:
                after = wait.after
            except Exception as exc:  # status first, then retry with back-off
                error = exc
        await self._update_status(sts, self._status(sts, pods, current_revision, update_revision))
        if error is not None:
            raise error
        min_ready = sts.spec.min_ready_seconds
        now = self.clock.now()
        if min_ready > 0 and any(
            is_ready(p) and not is_running_and_available(p, min_ready, now) for p in pods if not is_terminating(p)
        ):
            after = min(after, float(min_ready)) if after is not None else float(min_ready)
        return Result(requeue_after=after) if after is not None else Result()

    # ---- adoption and release ----

    async def _claim(self, sts: StatefulSet) -> list[Pod]:
        """The set's pods, terminating ones included (their names are still taken)."""
        selector = sts.spec.selector.to_selector()
        uid = sts.metadata.uid
        owned: list[Pod] = []
        can_adopt: bool | None = None
        for pod in await self.reader.list(Pod, sts.metadata.namespace):
            ref = controller_of(pod)
            member = is_member_of(sts, pod) and selector.matches(pod.metadata.labels or {})
            if ref is not None:
                if ref.uid != uid:
                    continue
                if member:
                    owned.append(pod)
                elif not is_terminating(pod):
                    await self._set_owners(pod, [r for r in pod.metadata.owner_references or () if r.uid != uid])
                continue
            if not member or sts.metadata.deletion_timestamp is not None or is_terminating(pod):
                continue
            if can_adopt is None:
                can_adopt = await self._still_current(sts)
            if can_adopt:
                adopted = await self._set_owners(pod, [*(pod.metadata.owner_references or ()), owner_reference(sts)])
                if adopted is not None:
                    owned.append(adopted)
        return sorted(owned, key=ordinal_of)

    async def _still_current(self, sts: StatefulSet) -> bool:
        """Re-read the set uncached before adopting: never adopt for a deleted set."""
        try:
            live = await self.writer.get(StatefulSet, sts.name, sts.metadata.namespace)
        except NotFound:
            return False
        return bool(live.metadata.uid == sts.metadata.uid and live.metadata.deletion_timestamp is None)

    async def _set_owners(self, obj: Resource, refs: list[OwnerReference]) -> Pod | None:
        patch = {
            "metadata": {
                "ownerReferences": [r.to_dict() for r in refs] or None,
                "resourceVersion": obj.metadata.resource_version,  # precondition: a changed object wins
            }
        }
        try:
            result: Pod = await self.writer.patch(type(obj), obj.name, patch, obj.metadata.namespace)
            return result
        except (Conflict, NotFound):
            return None

    # ---- one step towards the spec (kube's updateStatefulSet) ----

    async def _sync(
        self, sts: StatefulSet, pods: list[Pod], claims: dict[str, PersistentVolumeClaim], update_revision: str
    ) -> None:
        start = sts.spec.start_ordinal
        end = start + sts.spec.replicas
        replicas = {ordinal_of(p): p for p in pods if start <= ordinal_of(p) < end}
        condemned = [p for p in pods if not start <= ordinal_of(p) < end]  # ascending ordinal
        monotonic = sts.spec.pod_management_policy == "OrderedReady"
        unhealthy = [replicas[o] for o in sorted(replicas) if not is_healthy(replicas[o])]
        unhealthy += [p for p in condemned if not is_healthy(p)]
        first_unhealthy = unhealthy[0] if unhealthy else None
        now = self.clock.now()

        await self._delete_scaled_claims(sts, pods, claims)
        for ordinal in range(start, end):
            pod = replicas.get(ordinal)
            if pod is not None and is_failed_or_succeeded(pod):
                if not is_terminating(pod):
                    await self._delete_pod(sts, pod)  # recreated once it is gone
                if monotonic:
                    raise _Wait()
                continue
            if pod is None:
                await self._create(sts, ordinal, claims, update_revision)
                if monotonic:
                    raise _Wait()
                continue
            if monotonic and (
                is_terminating(pod)
                or not is_running_and_ready(pod)
                or not is_running_and_available(pod, sts.spec.min_ready_seconds, now)
            ):
                raise _Wait()
            if not is_terminating(pod):
                await self._fix_identity(sts, pod)
                await self._fix_claim_owners(sts, ordinal, claims)

        # Scale down: highest ordinal first; in OrderedReady mode one at a time, all others healthy.
        for pod in reversed(condemned):
            if is_terminating(pod):
                if monotonic:
                    raise _Wait()
                continue
            if monotonic and not is_running_and_ready(pod) and pod is not first_unhealthy:
                raise _Wait()
            await self._delete_pod(sts, pod)
            if monotonic:
                raise _Wait()

        if sts.spec.update_strategy.type == "OnDelete":
            return
        # Rolling update: highest ordinal first, down to the partition, one pod at a time.
        for ordinal in range(end - 1, start + sts.spec.partition - 1, -1):
            pod = replicas.get(ordinal)
            if pod is None:
                raise _Wait()
            if revision_of_pod(pod) != update_revision and not is_terminating(pod):
                await self._delete_pod(sts, pod)
                raise _Wait()
            if not is_healthy(pod):
                raise _Wait()

    # ---- writes ----

    def _what(self, sts: StatefulSet, verb: str, obj: str) -> str:
        return f"{verb} {obj} in StatefulSet {sts.name}"

    async def _event(self, sts: StatefulSet, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        if self.recorder is not None:
            await self.recorder.event(sts, type_, reason, message)

    async def _create(
        self, sts: StatefulSet, ordinal: int, claims: dict[str, PersistentVolumeClaim], revision: str
    ) -> None:
        pod = new_pod(sts, ordinal, revision)
        for claim in new_claims(sts, ordinal).values():
            existing = claims.get(claim.name)
            if existing is not None:
                if existing.metadata.deletion_timestamp is not None:
                    # kube: "pvc is being deleted": the pod must not start on a dying claim.
                    raise _Wait(CLAIM_WAIT)
                continue
            what = f"Claim {claim.name} Pod {pod.name} in StatefulSet {sts.name}"
            try:
                await self.writer.create(claim)
            except AlreadyExists:
                continue  # made meanwhile (or our cache lags): it is there, which is what counts
            except Exception as exc:
                await self._event(sts, "Warning", "FailedCreate", f"create {what} failed error: {exc}")
                raise
            await self._event(sts, "Normal", "SuccessfulCreate", f"create {what} success")
        try:
            await self.writer.create(pod)
        except Exception as exc:
            msg = f"{self._what(sts, 'create', 'Pod ' + pod.name)} failed error: {exc}"
            await self._event(sts, "Warning", "FailedCreate", msg)
            raise
        await self._event(
            sts, "Normal", "SuccessfulCreate", f"{self._what(sts, 'create', 'Pod ' + pod.name)} successful"
        )

    async def _delete_pod(self, sts: StatefulSet, pod: Pod) -> None:
        try:
            await self.writer.delete(Pod, pod.name, pod.metadata.namespace)
        except NotFound:
            return
        except Exception as exc:
            msg = f"{self._what(sts, 'delete', 'Pod ' + pod.name)} failed error: {exc}"
            await self._event(sts, "Warning", "FailedDelete", msg)
            raise
        await self._event(
            sts, "Normal", "SuccessfulDelete", f"{self._what(sts, 'delete', 'Pod ' + pod.name)} successful"
        )

    async def _fix_identity(self, sts: StatefulSet, pod: Pod) -> None:
        """Restore the identity labels of an adopted (or edited) pod."""
        if identity_labels_match(sts, pod):
            return
        patch = {
            "metadata": {
                "labels": {POD_NAME_LABEL: pod.name, POD_INDEX_LABEL: str(ordinal_of(pod))},
                "resourceVersion": pod.metadata.resource_version,
            }
        }
        try:
            await self.writer.patch(Pod, pod.name, patch, pod.metadata.namespace)
        except NotFound:
            pass

    async def _fix_claim_owners(self, sts: StatefulSet, ordinal: int, claims: dict[str, PersistentVolumeClaim]) -> None:
        """The set owns its claims exactly when ``whenDeleted: Delete`` (kube's updateClaimOwnerRefs)."""
        want = not retain_on_delete(sts)
        uid = sts.metadata.uid
        for template in sts.spec.volume_claim_templates or ():
            claim = claims.get(claim_name(template, sts, ordinal))
            if claim is None or claim.metadata.deletion_timestamp is not None:
                continue
            refs = list(claim.metadata.owner_references or ())
            has = any(r.uid == uid for r in refs)
            if has == want:
                continue
            refs = [*refs, set_owner_reference(sts)] if want else [r for r in refs if r.uid != uid]
            await self._set_owners(claim, refs)

    async def _delete_scaled_claims(
        self, sts: StatefulSet, pods: list[Pod], claims: dict[str, PersistentVolumeClaim]
    ) -> None:
        """``whenScaled: Delete``: claims of ordinals outside the set, once their pod is gone."""
        if sts.spec.persistent_volume_claim_retention_policy.when_scaled != "Delete":
            return
        start, end = sts.spec.start_ordinal, sts.spec.start_ordinal + sts.spec.replicas
        with_pods = {ordinal_of(p) for p in pods}
        for template in sts.spec.volume_claim_templates or ():
            prefix = f"{template.metadata.name}-{sts.name}-"
            for name, claim in claims.items():
                rest = name[len(prefix) :] if name.startswith(prefix) else ""
                if not rest.isdigit() or claim.metadata.deletion_timestamp is not None:
                    continue
                ordinal = int(rest)
                if start <= ordinal < end or ordinal in with_pods:
                    continue
                try:
                    await self.writer.delete(PersistentVolumeClaim, name, sts.metadata.namespace)
                except NotFound:
                    continue
                await self._event(
                    sts, "Normal", "SuccessfulDelete", f"delete Claim {name} in StatefulSet {sts.name} successful"
                )

    # ---- status (kube's computeReplicaStatus + completeRollingUpdate) ----

    def _status(
        self, sts: StatefulSet, pods: list[Pod], current_revision: str, update_revision: str
    ) -> StatefulSetStatus:
        now = self.clock.now()
        live = [p for p in pods if not is_terminating(p)]
        status = StatefulSetStatus(
            observed_generation=sts.metadata.generation,
            replicas=len(pods),
            ready_replicas=sum(1 for p in pods if is_running_and_ready(p)),
            available_replicas=sum(1 for p in pods if is_running_and_available(p, sts.spec.min_ready_seconds, now)),
            current_replicas=sum(1 for p in live if revision_of_pod(p) == current_revision),
            updated_replicas=sum(1 for p in live if revision_of_pod(p) == update_revision),
            current_revision=current_revision,
            update_revision=update_revision,
            collision_count=sts.status.collision_count if sts.status else None,
            conditions=list(sts.status.conditions) if sts.status and sts.status.conditions else None,
        )
        if (
            sts.spec.update_strategy.type == "RollingUpdate"
            and status.updated_replicas == status.replicas
            and status.ready_replicas == status.replicas
        ):
            status.current_replicas = status.updated_replicas
            status.current_revision = update_revision
        return status

    async def _update_status(self, sts: StatefulSet, status: StatefulSetStatus) -> None:
        if sts.status == status:
            return
        updated = sts.model_copy(deep=True)
        updated.status = status
        try:
            await self.writer.update_status(updated)  # carries the resourceVersion read: CAS
        except NotFound:
            pass


def orphan_mapper(manager: Manager) -> Callable[[Resource], list[Request]]:
    """A pod without a controller wakes the set its name and labels make it a member of."""
    informer = manager.informer_for(StatefulSet)

    def mapper(pod: Resource) -> list[Request]:
        parsed = parent_and_ordinal(pod.name)
        if controller_of(pod) is not None or parsed is None:
            return []
        sts = informer.cache.get_by_name(pod.metadata.namespace, parsed[0])
        if isinstance(sts, StatefulSet) and sts.spec.selector.matches(pod.metadata.labels or {}):
            return [Request.for_object(sts)]
        return []

    return mapper


def claim_mapper(manager: Manager) -> Callable[[Resource], list[Request]]:
    """A claim named ``<template>-<set>-<ordinal>`` wakes its set (a dying claim blocks a pod)."""
    informer = manager.informer_for(StatefulSet)

    def mapper(claim: Resource) -> list[Request]:
        out = []
        for sts in informer.cache.list(claim.metadata.namespace):
            if not isinstance(sts, StatefulSet):
                continue
            for template in sts.spec.volume_claim_templates or ():
                prefix = f"{template.metadata.name}-{sts.name}-"
                if claim.name.startswith(prefix) and claim.name[len(prefix) :].isdigit():
                    out.append(Request.for_object(sts))
                    break
        return out

    return mapper


def build_statefulset_controller(manager: Manager, *, workers: int = 4) -> Controller:
    """Wire the StatefulSet controller into ``manager`` and return it."""
    reconciler = StatefulSetReconciler(
        manager.reader, manager.writer, clock=manager.clock, recorder=manager.event_recorder("statefulset-controller")
    )
    return (
        ControllerBuilder(manager)
        .named(NAME)
        .for_(StatefulSet)
        .owns(Pod)
        .watches(Pod, orphan_mapper(manager))
        .watches(PersistentVolumeClaim, claim_mapper(manager))
        .with_workers(workers)
        .complete(reconciler)
    )


def setup(manager: Manager, **options: object) -> None:
    """Register the StatefulSet controller (options: ``workers``: int, default 4)."""
    workers = options.get("workers", 4)
    build_statefulset_controller(manager, workers=workers if isinstance(workers, int) else 4)


def build(manager: Manager) -> None:
    """``deploy_controller("statefulset", "kray.actors.controllers.statefulset:build", config)``."""
    build_statefulset_controller(manager)
