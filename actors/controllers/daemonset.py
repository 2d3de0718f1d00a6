"""The DaemonSet controller: one daemon pod on every node that should run one.

Like kube-controller-manager's DaemonSetsController (pods placed by the default scheduler, 1.12+):
- for every Node that should run the pod (``daemonset_util.node_should_run``: nodeName,
  nodeSelector, required node affinity, NoSchedule/NoExecute taints against the template's
  tolerations plus the default DaemonSet ones; not a node being deleted) and has none, a pod
  ``<ds>-<5 random>`` is created with a controller ownerReference, the ``controller-revision-hash``
  and ``pod-template-generation`` labels, and required node affinity ``matchFields metadata.name
  In [node]`` so the scheduler puts it there;
- pods on nodes that no longer qualify (or whose node is gone before they were scheduled) are
  deleted, extra pods on a node are trimmed (the oldest stays), failed pods are deleted with a
  per-node back-off (1s doubling to 15 min) and replaced on the next pass;
- RollingUpdate replaces pods of an old revision with at most maxUnavailable unavailable at
  once; with maxSurge the new pod is created first and the old one deleted once the new one is
  available. OnDelete only reports;
- expectations keep a lagging watch from causing double creates/deletes; orphans that match the
  selector are adopted and owned pods that stop matching are released;
- status: desired/current/misscheduled/ready/available/unavailable/updated counts and
  observedGeneration, written with the resourceVersion read (a conflict requeues).

Node events wake the DaemonSets whose verdict on that node changed; pod events wake the owner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kray.actors.framework.builder import ControllerBuilder
from kray.actors.framework.controller import Controller
from kray.actors.framework.informer import FuncHandler
from kray.actors.framework.manager import Manager
from kray.actors.framework.ports import Clock, Reader, SystemClock, Writer
from kray.actors.framework.reconciler import (
    EventRecorder,
    Request,
    Result,
    controller_of,
    owner_reference,
)
from kray.client.errors import AlreadyExists, Conflict, NotFound
from kray.crds.apps_daemonset import CONTROLLER_REVISION_HASH, ROLLING_UPDATE, DaemonSet, DaemonSetStatus
from kray.crds.core import Node, Pod
from kray.crds.meta import Resource

from .daemonset_rollout import NodePods, compute_status, plan_rolling_update
from .daemonset_util import (
    Backoff,
    DaemonSetExpectations,
    creation_order,
    new_daemon_pod,
    node_should_run,
    target_node_name,
)
from .podutil import is_available, is_ready, template_hash
from .replicaset import EXPECTATIONS_TIMEOUT, slow_start

log = logging.getLogger(__name__)

NAME = "daemonset"
BURST_REPLICAS = 250  # kube's BurstReplicas for DaemonSets


def _terminal(pod: Pod) -> bool:
    return bool(pod.status and pod.status.phase in ("Succeeded", "Failed"))


class DaemonSetReconciler:
    def __init__(
        self,
        reader: Reader,
        writer: Writer,
        *,
        clock: Clock | None = None,
        expectations: DaemonSetExpectations | None = None,
        backoff: Backoff | None = None,
        burst_replicas: int = BURST_REPLICAS,
        recorder: EventRecorder | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.clock: Clock = clock or SystemClock()
        self.expectations = expectations or DaemonSetExpectations(self.clock)
        self.backoff = backoff or Backoff(self.clock)
        self.burst_replicas = burst_replicas
        self.recorder = recorder

    async def _event(self, ds: DaemonSet, type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            await self.recorder.event(ds, "Warning" if type_ == "Warning" else "Normal", reason, message)

    async def reconcile(self, request: Request) -> Result:
        key = f"{request.namespace}/{request.name}"
        try:
            ds = await self.reader.get(DaemonSet, request.name, request.namespace)
        except NotFound:
            self.expectations.delete(key)
            return Result()
        if ds.metadata.deletion_timestamp is not None:
            return Result()  # its pods go with it (garbage collector); status cannot be trusted
        nodes = [n for n in await self.reader.list(Node) if isinstance(n, Node)]
        collisions = (ds.status.collision_count if ds.status else None) or 0
        revision = template_hash(ds.spec.template, collisions)
        # Read before listing pods: an event observed in between only makes us wait longer.
        satisfied = self.expectations.satisfied(key)
        by_node = self._by_node(await self._claim(ds))
        wake: list[float] = []
        error: Exception | None = None
        if satisfied:
            try:
                # Roll only on a pass that changed nothing else: its view of the pods is current.
                acted = await self._manage(key, ds, nodes, by_node, revision, wake)
                if not acted and ds.spec.update_strategy.type == ROLLING_UPDATE:
                    delete, create = plan_rolling_update(ds, nodes, by_node, revision, self.clock.now())
                    await self._sync_nodes(key, ds, delete, create, revision)
            except Exception as exc:  # status first, then retry with back-off
                error = exc
        ready, available = await self._update_status(ds, nodes, by_node, revision, observed=satisfied)
        if error is not None:
            raise error
        if ds.spec.min_ready_seconds > 0 and ready != available:
            wake.append(float(ds.spec.min_ready_seconds))
        return Result(requeue_after=min(wake)) if wake else Result()

    # ---- pods: claim and group by node ----

    async def _claim(self, ds: DaemonSet) -> list[Pod]:
        uid = ds.metadata.uid
        selector = ds.spec.selector.to_selector()
        owned: list[Pod] = []
        can_adopt: bool | None = None
        for pod in await self.reader.list(Pod, ds.metadata.namespace):
            if _terminal(pod) and pod.metadata.deletion_timestamp is not None:
                continue
            ref = controller_of(pod)
            labels = pod.metadata.labels or {}
            if ref is not None:
                if ref.uid != uid:
                    continue
                if selector.matches(labels):
                    owned.append(pod)
                else:  # release it
                    await self._set_owners(pod, [r for r in pod.metadata.owner_references or () if r.uid != uid])
                continue
            if pod.metadata.deletion_timestamp is not None or not selector.matches(labels):
                continue
            if can_adopt is None:
                can_adopt = await self._still_current(ds)
            if can_adopt:
                adopted = await self._set_owners(pod, [*(pod.metadata.owner_references or ()), owner_reference(ds)])
                if adopted is not None:
                    owned.append(adopted)
        return owned

    async def _still_current(self, ds: DaemonSet) -> bool:
        """Re-read the DaemonSet uncached before adopting: never adopt for a deleted one."""
        try:
            live = await self.writer.get(DaemonSet, ds.name, ds.metadata.namespace)
        except NotFound:
            return False
        return bool(live.metadata.uid == ds.metadata.uid and live.metadata.deletion_timestamp is None)

    async def _set_owners(self, pod: Pod, refs: list) -> Pod | None:  # type: ignore[type-arg]
        patch = {
            "metadata": {
                "ownerReferences": [r.to_dict() for r in refs] or None,
                "resourceVersion": pod.metadata.resource_version,  # a concurrent change wins
            }
        }
        try:
            result: Pod = await self.writer.patch(Pod, pod.name, patch, pod.metadata.namespace)
            return result
        except (Conflict, NotFound):
            return None

    @staticmethod
    def _by_node(pods: list[Pod]) -> NodePods:
        out: NodePods = {}
        for pod in pods:
            node = target_node_name(pod)
            if node:
                out.setdefault(node, []).append(pod)
        return out

    # ---- manage: create where missing, delete where not wanted ----

    async def _manage(
        self, key: str, ds: DaemonSet, nodes: list[Node], by_node: NodePods, revision: str, wake: list[float]
    ) -> bool:
        create: list[str] = []
        delete: list[Pod] = []
        surge = ds.spec.max_unavailable_and_surge(1)[1] > 0  # kube's AllowsSurge
        for node in nodes:
            c, d = await self._pods_should_be_on_node(ds, node, by_node, revision, surge, wake)
            create += c
            delete += d
        # Pods pinned to a node that does not exist and never scheduled: nothing else removes them.
        names = {n.name for n in nodes}
        for node_name, pods in by_node.items():
            if node_name not in names:
                delete += [p for p in pods if not p.spec.node_name and p.metadata.deletion_timestamp is None]
        return await self._sync_nodes(key, ds, delete, create, revision)

    async def _pods_should_be_on_node(
        self, ds: DaemonSet, node: Node, by_node: NodePods, revision: str, surge: bool, wake: list[float]
    ) -> tuple[list[str], list[Pod]]:
        should_run, should_continue = node_should_run(node, ds)
        pods = by_node.get(node.name)
        if should_run and not pods:
            return [node.name], []
        if not should_continue:
            return [], [p for p in pods or [] if p.metadata.deletion_timestamp is None]
        delete: list[Pod] = []
        running: list[Pod] = []
        for pod in pods or []:
            if pod.metadata.deletion_timestamp is not None:
                continue
            phase = pod.status.phase if pod.status else None
            if phase == "Failed":
                # Kubelets that keep rejecting a pod must not be hot-looped against.
                backoff_key = f"{ds.metadata.uid}/{node.name}"
                if self.backoff.in_backoff_since_update(backoff_key):
                    wake.append(self.backoff.get(backoff_key))
                    continue
                self.backoff.next(backoff_key)
                where = f"{pod.metadata.namespace}/{pod.name} on node {node.name}"
                msg = f"Found failed daemon pod {where}, will try to kill it"
                await self._event(ds, "Warning", "FailedDaemonPod", msg)
                delete.append(pod)
            elif phase == "Succeeded":
                where = f"{pod.metadata.namespace}/{pod.name} on node {node.name}"
                msg = f"Found succeeded daemon pod {where}, will try to delete it"
                await self._event(ds, "Normal", "SucceededDaemonPod", msg)
                delete.append(pod)
            else:
                running.append(pod)
        running.sort(key=creation_order)
        if not surge:
            return [], delete + running[1:]  # keep the oldest; a new one comes once the failed are gone
        if len(running) <= 1:
            return ([node.name] if not running and should_run else []), delete
        # Surging: keep the oldest new-revision pod, and the oldest old one only while it is ready
        # and the new one not yet available.
        oldest_new = oldest_old = None
        for pod in running:
            if (pod.metadata.labels or {}).get(CONTROLLER_REVISION_HASH) == revision:
                if oldest_new is None:
                    oldest_new = pod
                    continue
            elif oldest_old is None:
                oldest_old = pod
                continue
            delete.append(pod)
        if (
            oldest_new is not None
            and oldest_old is not None
            and (not is_ready(oldest_old) or is_available(oldest_new, ds.spec.min_ready_seconds, self.clock.now()))
        ):
            delete.append(oldest_old)
        return [], delete

    async def _sync_nodes(self, key: str, ds: DaemonSet, delete: list[Pod], create: list[str], revision: str) -> bool:
        """Delete ``delete`` and create a pod on each of ``create`` (slow start); True if it wrote."""
        create = create[: self.burst_replicas]
        delete = delete[: self.burst_replicas]
        if not create and not delete:
            return False
        # Expect them all before the first request: its event may arrive before we return.
        self.expectations.expect(key, len(create), [p.name for p in delete])
        errors: list[Exception] = []
        if create:
            todo = iter(create)

            async def create_one() -> None:
                node_name = next(todo)
                try:
                    pod = await self.writer.create(new_daemon_pod(ds, node_name, revision))
                except Exception as exc:
                    self.expectations.creation_observed(key)  # never coming: do not wait for it
                    if not isinstance(exc, AlreadyExists):
                        await self._event(ds, "Warning", "FailedCreate", f"Error creating: {exc}")
                    raise
                await self._event(ds, "Normal", "SuccessfulCreate", f"Created pod: {pod.name}")

            _done, attempted, error = await slow_start(len(create), create_one)
            for _ in range(len(create) - attempted):
                self.expectations.creation_observed(key)  # skipped after a failed batch
            if error is not None:
                errors.append(error)

        async def delete_one(pod: Pod) -> None:
            try:
                await self.writer.delete(Pod, pod.name, pod.metadata.namespace)
            except NotFound:
                self.expectations.deletion_observed(key, pod.name)
                return
            except Exception as exc:
                self.expectations.deletion_observed(key, pod.name)
                await self._event(ds, "Warning", "FailedDelete", f"Error deleting: {exc}")
                raise
            await self._event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {pod.name}")

        results = await asyncio.gather(*(delete_one(p) for p in delete), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                if not isinstance(r, Exception):
                    raise r
                errors.append(r)
        if errors:
            raise errors[0]
        return True

    # ---- status ----

    async def _update_status(
        self, ds: DaemonSet, nodes: list[Node], by_node: NodePods, revision: str, *, observed: bool
    ) -> tuple[int, int]:
        old = ds.status or DaemonSetStatus()
        status = compute_status(ds, nodes, by_node, revision, self.clock.now())
        counts = (status.number_ready, status.number_available or 0)
        generation_seen = (old.observed_generation or 0) >= (ds.metadata.generation or 0)
        if observed:
            status.observed_generation = ds.metadata.generation
        if status == old and generation_seen:
            return counts
        changed = ds.model_copy(deep=True)
        changed.status = status
        try:
            await self.writer.update_status(changed)  # the resourceVersion read: a conflict requeues
        except NotFound:
            pass
        return counts


# ---- wiring ----


def orphan_mapper(manager: Manager) -> Callable[[Resource], list[Request]]:
    """A pod without a controller wakes every DaemonSet whose selector matches it (adoption)."""
    informer = manager.informer_for(DaemonSet)

    def mapper(pod: Resource) -> list[Request]:
        if controller_of(pod) is not None:
            return []
        labels = pod.metadata.labels or {}
        return [
            Request.for_object(ds)
            for ds in informer.cache.list(pod.metadata.namespace)
            if isinstance(ds, DaemonSet) and ds.spec.selector.matches(labels)
        ]

    return mapper


def node_handler(manager: Manager, controller: Controller) -> FuncHandler:
    """Node added or deleted: every DaemonSet; updated: those whose verdict on it changed."""
    informer = manager.informer_for(DaemonSet)

    def all_daemonsets() -> list[DaemonSet]:
        return [ds for ds in informer.cache.list() if isinstance(ds, DaemonSet)]

    def every(_node: Resource) -> None:
        for ds in all_daemonsets():
            controller.enqueue(Request.for_object(ds))

    def update(old: Resource, new: Resource) -> None:
        if not (isinstance(old, Node) and isinstance(new, Node)):
            return
        for ds in all_daemonsets():
            if node_should_run(old, ds) != node_should_run(new, ds):
                controller.enqueue(Request.for_object(ds))

    return FuncHandler(add=every, update=update, delete=every)


def build_daemonset_controller(
    manager: Manager,
    *,
    workers: int = 2,
    burst_replicas: int = BURST_REPLICAS,
    expectations_timeout: float = EXPECTATIONS_TIMEOUT,
) -> Controller:
    """Wire the DaemonSet controller into ``manager`` and return it."""
    expectations = DaemonSetExpectations(manager.clock, expectations_timeout)
    manager.informer_for(Pod).add_handler(expectations.handler())
    reconciler = DaemonSetReconciler(
        manager.reader,
        manager.writer,
        clock=manager.clock,
        expectations=expectations,
        burst_replicas=burst_replicas,
        recorder=manager.event_recorder("daemonset-controller"),
    )
    controller = (
        ControllerBuilder(manager)
        .named(NAME)
        .for_(DaemonSet)
        .owns(Pod)
        .watches(Pod, orphan_mapper(manager))
        .with_workers(workers)
        .complete(reconciler)
    )
    manager.informer_for(Node).add_handler(node_handler(manager, controller))
    return controller


def setup(manager: Manager, **options: object) -> None:
    """``deploy_controller("daemonset", "kray.actors.controllers.daemonset:setup", config)``.

    Options: ``workers`` (default 2), ``burst_replicas`` (most creates/deletes a pass issues, 250)."""
    workers = options.get("workers", 2)
    burst = options.get("burst_replicas", BURST_REPLICAS)
    build_daemonset_controller(
        manager,
        workers=workers if isinstance(workers, int) else 2,
        burst_replicas=burst if isinstance(burst, int) else BURST_REPLICAS,
    )


def build(manager: Manager) -> None:
    build_daemonset_controller(manager)
