"""The node lifecycle controller: node health from lease heartbeats, taints, and evictions.

Each node's agent renews a Lease named after the node in ``kube-node-lease``. Like Kubernetes,
the controller times heartbeats by its own clock (when it *saw* renewTime change), not by the
timestamps in the lease, so clock skew between machines does not matter; after a restart every
node gets a full grace period. A node not heard from within ``grace_period`` gets Ready=Unknown
and the ``node.kubernetes.io/unreachable`` taints (NoSchedule keeps new pods off, NoExecute
evicts). A node whose agent reports Ready=False gets the ``not-ready`` taints instead. When
heartbeats resume, Ready comes back and the taints go.

Eviction (Kubernetes' taint manager): a pod on a node with NoExecute taints is deleted when it
does not tolerate one, right away, or after its toleration's ``tolerationSeconds``, counted from
the taint's ``timeAdded``. Pods without a toleration for the unreachable/not-ready taints get
``default_toleration_seconds`` (what Kubernetes' DefaultTolerationSeconds admission adds).
Their controllers (ReplicaSet, Job) then replace them elsewhere.

Pod GC: an evicted pod on a dead node stays Terminating, since no kubelet is left to confirm
its end. Once its Node is deleted (the node agent does that when the machine has been gone for
its grace period), the pods still bound to it are force-deleted, as Kubernetes' pod GC does.
A pod bound to a Node this controller never saw (deleted while it was down, or a ``nodeName``
that names no Node) is force-deleted too, but only as Kubernetes does it: after the Node has
been missing for ``orphan_quarantine`` seconds and a live read from the API server (not the
cache, which may lag behind a Node just created) confirms that it does not exist.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from kray.actors.framework import (
    NODE_NAME_INDEX,
    CacheReader,
    Clock,
    ControllerBuilder,
    EventRecorder,
    Manager,
    Request,
    Result,
    Writer,
    set_condition,
)
from kray.client.errors import NotFound
from kray.crds.core import Lease, Node, Pod, Taint
from kray.crds.core.node import NodeStatus
from kray.crds.meta import Resource

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
OURS = (UNREACHABLE, NOT_READY)
UNKNOWN_REASON = "NodeStatusUnknown"


class PodGcWriter(Writer, Protocol):
    """The writer with a grace period on delete (``AsyncClient`` has one): pod GC deletes at once."""

    async def delete(
        self, kind: Any, name: str, namespace: str | None = None, *, grace_period_seconds: int | None = None
    ) -> Any: ...


def eviction_time(pod: Pod, taints: list[Taint], default_seconds: float, now: datetime) -> datetime | None:
    """When the pod must leave a node with these taints (None: it tolerates them for good)."""
    due: datetime | None = None
    for taint in taints:
        if taint.effect != "NoExecute":
            continue
        matching = [t for t in pod.spec.tolerations or [] if t.tolerates(taint)]
        if not matching:
            seconds = default_seconds if taint.key in OURS else 0.0
        elif any(t.toleration_seconds is None for t in matching):
            continue  # tolerated forever
        else:
            seconds = float(min(t.toleration_seconds or 0 for t in matching))
        at = (taint.time_added or now) + timedelta(seconds=max(seconds, 0.0))
        due = at if due is None or at < due else due
    return due


class NodeLifecycleReconciler:
    def __init__(
        self,
        reader: CacheReader,
        writer: PodGcWriter,
        clock: Clock,
        recorder: EventRecorder | None = None,
        *,
        grace_period: float = 40.0,
        default_toleration_seconds: float = 300.0,
        orphan_quarantine: float = 40.0,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.clock = clock
        self.recorder = recorder
        self.grace_period = grace_period
        self.default_toleration_seconds = default_toleration_seconds
        self.orphan_quarantine = orphan_quarantine
        # node -> (last heartbeat mark seen, monotonic time it was first seen)
        self._heard: dict[str, tuple[object, float]] = {}
        # node never seen here but named by bound pods -> when it was first found missing
        self._missing: dict[str, datetime] = {}

    async def _event(self, obj: Resource, type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            await self.recorder.event(obj, "Warning" if type_ == "Warning" else "Normal", reason, message)

    async def reconcile(self, request: Request) -> Result:
        try:
            node = await self.reader.get(Node, request.name)
        except NotFound:
            seen_deleted = self._heard.pop(request.name, None) is not None
            return await self._collect_orphans(request.name, seen_deleted)
        self._missing.pop(request.name, None)
        silent_for = await self._silence(node)
        now = self.clock.now()
        node = await self._update_ready(node, silent_for > self.grace_period, now)
        node = await self._update_taints(node, now)
        wake: list[float] = []
        if silent_for <= self.grace_period:
            wake.append(self.grace_period - silent_for + 0.001)  # when it would expire
        evict_at = await self._evict(node, now)
        if evict_at is not None:
            wake.append(max((evict_at - now).total_seconds(), 0.001))
        return Result(requeue_after=min(wake)) if wake else Result()

    async def _silence(self, node: Node) -> float:
        """Seconds since this controller last saw the node's heartbeat change."""
        try:
            lease = await self.reader.get(Lease, node.name, LEASE_NAMESPACE)
            mark: object = lease.spec.renew_time
        except NotFound:
            ready = node.status.condition("Ready") if node.status else None
            mark = ready.last_heartbeat_time if ready else None
        now = self.clock.monotonic()
        seen = self._heard.get(node.name)
        if seen is None or seen[0] != mark:
            self._heard[node.name] = seen = (mark, now)
        return now - seen[1]

    async def _update_ready(self, node: Node, silent: bool, now: datetime) -> Node:
        ready = node.status.condition("Ready") if node.status else None
        updated = node.model_copy(deep=True)
        updated.status = updated.status or NodeStatus()
        if silent:
            if ready is not None and ready.status == "Unknown":
                return node
            set_condition(
                updated.status, "Ready", "Unknown", UNKNOWN_REASON, "Kubelet stopped posting node status.", now=now
            )
            await self._event(node, "Normal", "NodeNotReady", f"Node {node.name} status is now: NodeNotReady")
        elif ready is not None and ready.status == "Unknown" and ready.reason == UNKNOWN_REASON:
            # Our own verdict, now contradicted by fresh heartbeats.
            set_condition(updated.status, "Ready", "True", "KubeletReady", "node lease renewed", now=now)
            await self._event(node, "Normal", "NodeReady", f"Node {node.name} status is now: NodeReady")
        else:
            return node
        return await self.writer.update_status(updated)  # stale resourceVersion -> 409 -> requeue

    async def _update_taints(self, node: Node, now: datetime) -> Node:
        ready = node.status.condition("Ready") if node.status else None
        state = ready.status if ready else "True"  # no verdict yet: no taint
        want_key = {"True": None, "False": NOT_READY}.get(state, UNREACHABLE)
        current = list(node.spec.taints or [])
        keep = [t for t in current if t.key not in OURS or t.key == want_key]
        have = {(t.key, t.effect) for t in keep}
        added = [
            Taint(key=want_key, effect=effect, time_added=now)
            for effect in ("NoSchedule", "NoExecute")
            if want_key is not None and (want_key, effect) not in have
        ]
        if not added and len(keep) == len(current):
            return node
        updated = node.model_copy(deep=True)
        updated.spec.taints = [*keep, *added] or None
        return await self.writer.update(updated)

    async def _collect_orphans(self, node_name: str, seen_deleted: bool) -> Result:
        """Force-delete the pods still bound to a Node that is gone (Kubernetes' pod GC).

        ``seen_deleted``: this controller watched the Node go, so it is gone for sure. Otherwise
        it waits out the quarantine and asks the API server before it deletes anything."""
        pods = await self.reader.by_index(Pod, NODE_NAME_INDEX, node_name)
        if not pods:
            self._missing.pop(node_name, None)
            return Result()
        if not seen_deleted:
            now = self.clock.now()
            missing_for = (now - self._missing.setdefault(node_name, now)).total_seconds()
            if missing_for < self.orphan_quarantine:
                return Result(requeue_after=self.orphan_quarantine - missing_for + 0.001)
            try:
                await self.writer.get(Node, node_name)
                self._missing.pop(node_name, None)
                return Result()  # it exists: the cache lags, and its own events will follow
            except NotFound:
                pass
        self._missing.pop(node_name, None)
        for pod in pods:
            try:
                await self.writer.delete(Pod, pod.name, pod.namespace, grace_period_seconds=0)
            except NotFound:
                continue
            await self._event(pod, "Normal", "PodGCOrphaned", f"Node {node_name} is gone: Pod deleted")
        return Result()

    async def _evict(self, node: Node, now: datetime) -> datetime | None:
        """Delete pods whose toleration ran out; returns when the next one is due."""
        taints = [t for t in node.spec.taints or [] if t.effect == "NoExecute"]
        if not taints:
            return None
        next_due: datetime | None = None
        for pod in await self.reader.by_index(Pod, NODE_NAME_INDEX, node.name):
            if pod.metadata.deletion_timestamp is not None or (
                pod.status and pod.status.phase in ("Succeeded", "Failed")
            ):
                continue
            due = eviction_time(pod, taints, self.default_toleration_seconds, now)
            if due is None:
                continue
            if due > now:
                next_due = due if next_due is None or due < next_due else next_due
                continue
            try:
                await self.writer.delete(Pod, pod.name, pod.namespace)
            except NotFound:
                continue
            await self._event(
                pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {pod.namespace}/{pod.name}"
            )
        return next_due


def setup(manager: Manager, **options: object) -> None:
    """Register the node lifecycle controller.

    Options: ``grace_period`` (seconds without a heartbeat before NotReady, default 40),
    ``default_toleration_seconds`` (eviction delay for pods without a toleration, default 300),
    ``orphan_quarantine`` (seconds a never-seen Node must stay missing before its pods go, 40).
    """
    grace = options.get("grace_period", 40.0)
    tolerate = options.get("default_toleration_seconds", 300.0)
    quarantine = options.get("orphan_quarantine", 40.0)
    reconciler = NodeLifecycleReconciler(
        manager.reader,
        cast(PodGcWriter, manager.writer),  # the API client: delete takes grace_period_seconds
        manager.clock,
        manager.event_recorder("node-controller"),
        grace_period=float(grace) if isinstance(grace, (int, float)) else 40.0,
        default_toleration_seconds=float(tolerate) if isinstance(tolerate, (int, float)) else 300.0,
        orphan_quarantine=float(quarantine) if isinstance(quarantine, (int, float)) else 40.0,
    )
    nodes = manager.informer_for(Node)

    def lease_node(lease: Resource) -> list[Request]:
        return [Request(None, lease.name)] if lease.metadata.namespace == LEASE_NAMESPACE else []

    def pod_node(pod: Resource) -> list[Request]:
        # Pods bound to a node with NoExecute taints concern the eviction half; pods bound to a
        # node that is not there, the pod GC.
        name = getattr(getattr(pod, "spec", None), "node_name", None)
        if not name:
            return []
        node = nodes.cache.get_by_name(None, name)
        if node is None:
            return [Request(None, name)]
        spec = getattr(node, "spec", None)
        if not any(t.effect == "NoExecute" for t in getattr(spec, "taints", None) or []):
            return []
        return [Request(None, node.name)]

    builder = ControllerBuilder(manager).named("node-lifecycle").for_(Node)
    builder.watches(Lease, lease_node).watches(Pod, pod_node).complete(reconciler)
