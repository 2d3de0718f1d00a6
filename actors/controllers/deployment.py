"""The Deployment controller: roll a pod template out through ReplicaSets named ``<deploy>-<hash>``.

Follows kube's DeploymentController (pkg/controller/deployment): the *new* ReplicaSet is the
one whose template equals the Deployment's (ignoring ``pod-template-hash``); all others are
*old*. RollingUpdate scales the new one up within ``replicas + maxSurge`` and old ones down
while keeping ``replicas - maxUnavailable`` available; Recreate scales old ones to zero, waits
for their pods to go, then scales the new one up. A replica change while a rollout is mid-way
is spread proportionally; ``paused`` only scales. Rollback is the CLI copying an old
ReplicaSet's template back (``kray rollout undo``); a reused ReplicaSet gets a fresh revision.
"""

from __future__ import annotations

import math
from datetime import datetime

from kray.actors.framework.builder import ControllerBuilder
from kray.actors.framework.controller import Controller
from kray.actors.framework.manager import Manager
from kray.actors.framework.ports import Clock, Reader, SystemClock, Writer
from kray.actors.framework.reconciler import (
    EventRecorder,
    Request,
    Result,
    TerminalError,
    controller_of,
    set_controller_reference,
)
from kray.client.errors import AlreadyExists, NotFound
from kray.crds.apps import Deployment, DeploymentStatus, ReplicaSet
from kray.crds.apps import ReplicaSetSpec as RSSpec
from kray.crds.core import Pod
from kray.crds.meta import ObjectMeta
from kray.crds.selectors import LabelSelector

from .deploymentutil import (
    REVISION,
    available,
    compute_status,
    is_complete,
    revision_of,
    spec_replicas,
    surge_and_unavailable,
    synced,
)
from .podutil import POD_TEMPLATE_HASH, equal_ignore_hash, template_hash

NAME = "deployment"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"


class DeploymentReconciler:
    def __init__(
        self, reader: Reader, writer: Writer, *, clock: Clock | None = None, recorder: EventRecorder | None = None
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.clock: Clock = clock or SystemClock()
        self.recorder = recorder

    async def reconcile(self, request: Request) -> Result:
        try:
            d = await self.reader.get(Deployment, request.name, request.namespace)
        except NotFound:
            return Result()
        rss = await self._claim(d)
        if d.metadata.deletion_timestamp is not None:
            await self._sync_status(d, rss, self._find_new(d, rss))
            return Result()
        if any(not synced(rs) for rs in rss):
            # An RS's counts lag its spec: deciding on them could break maxUnavailable. Its
            # status update (an owned event) wakes us again.
            return Result()
        new_rs = self._find_new(d, rss)
        if d.spec.paused or self._is_scaling_event(d, rss):
            await self._scale(d, new_rs, [r for r in rss if r is not new_rs])
            if d.spec.paused:
                await self._cleanup(d, [r for r in rss if r is not new_rs])
            await self._sync_status(d, rss, new_rs)
            return Result()
        if d.spec.strategy.type == "Recreate":
            return await self._recreate(d, rss, new_rs)
        return await self._rolling(d, rss, new_rs)

    # ---- ReplicaSets ----

    async def _claim(self, d: Deployment) -> list[ReplicaSet]:
        """ReplicaSets this Deployment controls (adopting matching orphans)."""
        selector = d.spec.selector.to_selector()
        owned: list[ReplicaSet] = []
        for rs in await self.reader.list(ReplicaSet, d.metadata.namespace):
            ref = controller_of(rs)
            if ref is not None:
                if ref.uid == d.metadata.uid:
                    owned.append(rs)
                continue
            if d.metadata.deletion_timestamp is None and selector.matches(rs.metadata.labels or {}):
                adopted = rs.model_copy(deep=True)
                set_controller_reference(d, adopted)
                owned.append(await self.writer.update(adopted))  # stale read -> Conflict -> retry
        return sorted(owned, key=lambda r: (r.metadata.creation_timestamp or datetime.min, r.name))

    def _find_new(self, d: Deployment, rss: list[ReplicaSet]) -> ReplicaSet | None:
        return next((rs for rs in rss if equal_ignore_hash(rs.spec.template, d.spec.template)), None)

    def _annotations(self, d: Deployment, rs_annotations: dict[str, str] | None, revision: int) -> dict[str, str]:
        surge, _ = surge_and_unavailable(d)
        out = dict(rs_annotations or {})
        out[REVISION] = str(revision)
        out[DESIRED_REPLICAS] = str(d.spec.replicas)
        out[MAX_REPLICAS] = str(d.spec.replicas + surge)
        return out

    async def _get_new(
        self, d: Deployment, rss: list[ReplicaSet], new_rs: ReplicaSet | None, replicas: int | None
    ) -> ReplicaSet | None:
        """The new RS with its revision brought up to date; created with ``replicas`` if missing."""
        old_max = max((revision_of(rs) for rs in rss if rs is not new_rs), default=0)
        if new_rs is not None:
            revision = old_max + 1 if revision_of(new_rs) <= old_max else revision_of(new_rs)
            annotations = self._annotations(d, new_rs.metadata.annotations, revision)
            if (
                annotations != (new_rs.metadata.annotations or {})
                or new_rs.spec.min_ready_seconds != d.spec.min_ready_seconds
            ):
                updated = new_rs.model_copy(deep=True)
                updated.metadata.annotations = annotations
                updated.spec.min_ready_seconds = d.spec.min_ready_seconds
                new_rs = await self.writer.update(updated)
            await self._set_deployment_revision(d, revision)
            return new_rs
        if replicas is None:
            return None
        collisions = (d.status.collision_count if d.status else None) or 0
        h = template_hash(d.spec.template, collisions)
        template = d.spec.template.model_copy(deep=True)
        template.metadata = template.metadata or ObjectMeta()
        template.metadata.labels = {**(template.metadata.labels or {}), POD_TEMPLATE_HASH: h}
        selector = d.spec.selector.model_copy(deep=True)
        selector.match_labels = {**(selector.match_labels or {}), POD_TEMPLATE_HASH: h}
        revision = old_max + 1
        rs = ReplicaSet(
            metadata=ObjectMeta(
                name=f"{d.name}-{h}",
                namespace=d.metadata.namespace,
                labels=dict(template.metadata.labels),
                annotations=self._annotations(d, None, revision),
            ),
            spec=RSSpec(
                replicas=replicas,
                min_ready_seconds=d.spec.min_ready_seconds,
                selector=LabelSelector.model_validate(selector.to_dict()),
                template=template,
            ),
        )
        set_controller_reference(d, rs)
        try:
            created = await self.writer.create(rs)
        except AlreadyExists:
            existing: ReplicaSet = await self.writer.get(ReplicaSet, rs.name, d.metadata.namespace)
            ref = controller_of(existing)
            if (
                ref is not None
                and ref.uid == d.metadata.uid
                and equal_ignore_hash(existing.spec.template, d.spec.template)
            ):
                return existing  # ours, our cache had not seen it yet
            # A hash collision: another template took the name. Step the collision count.
            status = (d.status or DeploymentStatus()).model_copy(deep=True)
            status.collision_count = collisions + 1
            bumped = d.model_copy(deep=True)
            bumped.status = status
            await self.writer.update_status(bumped)
            raise TerminalError(
                f"replica set name {rs.name} collides; retrying with collisionCount={collisions + 1}"
            ) from None
        if self.recorder:
            await self.recorder.event(
                d, "Normal", "ScalingReplicaSet", f"Scaled up replica set {created.name} to {replicas}"
            )
        await self._set_deployment_revision(d, revision)
        return created

    async def _set_deployment_revision(self, d: Deployment, revision: int) -> None:
        if (d.metadata.annotations or {}).get(REVISION) == str(revision):
            return
        await self.writer.patch(
            Deployment,
            d.name,
            {"metadata": {"annotations": {REVISION: str(revision)}}},
            d.metadata.namespace,
        )

    async def _scale_rs(self, d: Deployment, rs: ReplicaSet, replicas: int) -> ReplicaSet:
        surge, _ = surge_and_unavailable(d)
        annotations = dict(rs.metadata.annotations or {})
        wanted = {DESIRED_REPLICAS: str(d.spec.replicas), MAX_REPLICAS: str(d.spec.replicas + surge)}
        if rs.spec.replicas == replicas and all(annotations.get(k) == v for k, v in wanted.items()):
            return rs
        updated = rs.model_copy(deep=True)
        updated.spec.replicas = replicas
        updated.metadata.annotations = {**annotations, **wanted}
        result: ReplicaSet = await self.writer.update(updated)  # with the resourceVersion read
        if rs.spec.replicas != replicas and self.recorder:
            verb = "up" if replicas > rs.spec.replicas else "down"
            await self.recorder.event(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled {verb} replica set {rs.name} from {rs.spec.replicas} to {replicas}",
            )
        return result

    # ---- strategies ----

    async def _rolling(self, d: Deployment, rss: list[ReplicaSet], new_rs: ReplicaSet | None) -> Result:
        old = [r for r in rss if r is not new_rs]
        surge, max_unavailable = surge_and_unavailable(d)
        if new_rs is None:
            total = spec_replicas(old)
            want = max(0, min(d.spec.replicas + surge - total, d.spec.replicas))
            new_rs = await self._get_new(d, rss, None, want)
            return await self._finish(d, old, new_rs, created=True)
        new_rs = await self._get_new(d, rss, new_rs, None)
        assert new_rs is not None
        all_rs = [*old, new_rs]
        # Scale the new RS up (within replicas + maxSurge) or down (to replicas).
        if new_rs.spec.replicas > d.spec.replicas:
            await self._scale_rs(d, new_rs, d.spec.replicas)
            return await self._finish(d, old, new_rs)
        if new_rs.spec.replicas < d.spec.replicas:
            room = d.spec.replicas + surge - spec_replicas(all_rs)
            if room > 0:
                target = new_rs.spec.replicas + min(room, d.spec.replicas - new_rs.spec.replicas)
                new_rs = await self._scale_rs(d, new_rs, target)
                return await self._finish(d, old, new_rs)
        # Scale old RSes down, never below replicas - maxUnavailable available.
        if spec_replicas(old) > 0:
            min_available = d.spec.replicas - max_unavailable
            new_unavailable = new_rs.spec.replicas - available(new_rs)
            budget = spec_replicas(all_rs) - min_available - new_unavailable
            if budget > 0:
                # First pods that are not available anyway (they cost no availability).
                for rs in old:
                    unhealthy = rs.spec.replicas - available(rs)
                    cut = min(unhealthy, budget)
                    if cut > 0:
                        await self._scale_rs(d, rs, rs.spec.replicas - cut)
                        return await self._finish(d, old, new_rs)
                can_remove = sum(available(r) for r in all_rs) - min_available
                for rs in old:
                    cut = min(rs.spec.replicas, can_remove, budget)
                    if cut > 0:
                        await self._scale_rs(d, rs, rs.spec.replicas - cut)
                        return await self._finish(d, old, new_rs)
        return await self._finish(d, old, new_rs)

    async def _recreate(self, d: Deployment, rss: list[ReplicaSet], new_rs: ReplicaSet | None) -> Result:
        old = [r for r in rss if r is not new_rs]
        for rs in old:
            if rs.spec.replicas > 0:
                await self._scale_rs(d, rs, 0)
                return await self._finish(d, old, new_rs)
        # Wait until every old pod is gone (terminating ones still run their containers).
        old_uids = {rs.metadata.uid for rs in old}
        pods = await self.reader.list(Pod, d.metadata.namespace)
        if any(
            (ref := controller_of(p)) is not None
            and ref.uid in old_uids
            and (p.status is None or p.status.phase not in ("Succeeded", "Failed"))
            for p in pods
        ):
            return await self._finish(d, old, new_rs)
        created = new_rs is None
        new_rs = await self._get_new(d, rss, new_rs, d.spec.replicas)
        if new_rs is not None and new_rs.spec.replicas != d.spec.replicas:
            new_rs = await self._scale_rs(d, new_rs, d.spec.replicas)
        return await self._finish(d, old, new_rs, created=created)

    async def _scale(self, d: Deployment, new_rs: ReplicaSet | None, old: list[ReplicaSet]) -> None:
        """A replica change (or a paused Deployment): resize without rolling anything."""
        active = [r for r in [*old, *([new_rs] if new_rs else [])] if r.spec.replicas > 0]
        if len(active) <= 1:
            target = active[0] if active else (new_rs or (old[-1] if old else None))
            if target is not None:
                await self._scale_rs(d, target, d.spec.replicas)
            return
        if new_rs is not None and new_rs.spec.replicas == d.spec.replicas and available(new_rs) == d.spec.replicas:
            for rs in old:
                await self._scale_rs(d, rs, 0)
            return
        # Proportional: spread the difference by each RS's share, the rest to the largest.
        surge, _ = surge_and_unavailable(d)
        current = spec_replicas(active)
        delta = d.spec.replicas + surge - current
        if delta == 0:
            for rs in active:
                await self._scale_rs(d, rs, rs.spec.replicas)  # only the annotations move
            return
        ordered = sorted(active, key=lambda r: (-r.spec.replicas, -revision_of(r)))
        sizes = {rs.name: rs.spec.replicas for rs in ordered}
        given = 0
        for rs in ordered:
            exact = rs.spec.replicas * delta / current if current else 0.0
            share = int(math.copysign(math.floor(abs(exact) + 0.5), exact))  # round half away from 0
            share = min(share, delta - given) if delta > 0 else max(share, delta - given)
            sizes[rs.name] = max(0, rs.spec.replicas + share)
            given += sizes[rs.name] - rs.spec.replicas
        sizes[ordered[0].name] = max(0, sizes[ordered[0].name] + delta - given)
        for rs in ordered:
            await self._scale_rs(d, rs, sizes[rs.name])

    def _is_scaling_event(self, d: Deployment, rss: list[ReplicaSet]) -> bool:
        for rs in rss:
            if rs.spec.replicas <= 0:
                continue
            desired = (rs.metadata.annotations or {}).get(DESIRED_REPLICAS)
            if desired is not None and desired != str(d.spec.replicas):
                return True
        return False

    # ---- history and status ----

    async def _cleanup(self, d: Deployment, old: list[ReplicaSet]) -> None:
        idle = [
            rs
            for rs in old
            if rs.spec.replicas == 0
            and (rs.status.replicas if rs.status else 0) == 0
            and rs.metadata.deletion_timestamp is None
        ]
        excess = len(idle) - d.spec.revision_history_limit
        for rs in sorted(idle, key=revision_of)[: max(0, excess)]:
            try:
                await self.writer.delete(ReplicaSet, rs.name, rs.metadata.namespace)
            except NotFound:
                pass

    async def _finish(
        self, d: Deployment, old: list[ReplicaSet], new_rs: ReplicaSet | None, created: bool = False
    ) -> Result:
        status = compute_status(d, [*old, *([new_rs] if new_rs else [])], new_rs, created, self.clock.now())
        if is_complete(d, status):
            await self._cleanup(d, old)
        return await self._write_status(d, status)

    async def _sync_status(self, d: Deployment, rss: list[ReplicaSet], new_rs: ReplicaSet | None) -> None:
        await self._write_status(d, compute_status(d, rss, new_rs, False, self.clock.now()))

    async def _write_status(self, d: Deployment, status: DeploymentStatus) -> Result:
        if d.status != status:
            updated = d.model_copy(deep=True)
            updated.status = status
            try:
                await self.writer.update_status(updated)
            except NotFound:
                return Result()
        if not d.spec.paused and not is_complete(d, status):
            # Re-check the progress deadline even when nothing else wakes us.
            return Result(requeue_after=float(d.spec.progress_deadline_seconds))
        return Result()


def build_deployment_controller(manager: Manager, *, workers: int = 2) -> Controller:
    """Wire the Deployment controller into ``manager`` and return it."""
    reconciler = DeploymentReconciler(
        manager.reader, manager.writer, clock=manager.clock, recorder=manager.event_recorder("deployment-controller")
    )
    return (
        ControllerBuilder(manager)
        .named(NAME)
        .for_(Deployment)
        .owns(ReplicaSet)
        .with_workers(workers)
        .complete(reconciler)
    )


def build(manager: Manager) -> None:
    """``deploy_controller("deployment", "kray.actors.controllers.deployment:build", config)``."""
    build_deployment_controller(manager)
