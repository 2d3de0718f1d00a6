"""The ReplicaSet controller: keep ``spec.replicas`` active Pods matching the selector.

Like kube-controller-manager's ReplicaSetController:
- pods are created from the template (``<rs>-<5 random>`` through generateName) with a
  controller ownerReference, in slow-start batches (1, 2, 4, ...) so a failing create (quota,
  a terminating namespace) costs one request, not hundreds;
- orphans that match the selector are adopted, owned pods that stop matching are released
  (both by patching ownerReferences with the resourceVersion read, so a concurrent change wins);
- **expectations**: after issuing N creates/deletes for a ReplicaSet it does nothing more for
  it until the informer has observed them (or ``expectations_timeout`` passes), so a lagging
  watch never makes it create or delete twice;
- surplus pods are deleted in Kubernetes' preference order (``podutil.delete_rank``);
- status (replicas, fullyLabeled, ready, available after minReadySeconds, observedGeneration).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

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
    set_condition,
)
from kray.client.errors import AlreadyExists, Conflict, NotFound
from kray.crds.apps import ReplicaSet, ReplicaSetStatus
from kray.crds.core import Pod
from kray.crds.meta import Resource
from kray.crds.selectors import Selector

from .podutil import is_active, is_available, is_ready, pod_from_template, pods_to_delete

log = logging.getLogger(__name__)

NAME = "replicaset"
BURST_REPLICAS = 500  # most creates/deletes one sync issues (kube's burstReplicas)
EXPECTATIONS_TIMEOUT = 300.0  # kube's ExpectationsTimeout: a lost watch event cannot wedge an RS


# ---- expectations ----


@dataclass
class _Expected:
    adds: int
    deletes: set[str] = field(default_factory=set)
    stamp: float = 0.0


class Expectations:
    """Kube's UIDTrackingControllerExpectations: creates by count, deletes by pod name.

    Deletes are tracked by name because a graceful delete is seen twice (deletionTimestamp set,
    then the DELETED event) and must be counted once. ``owner_kind``: the apps/v1 kind whose pods
    feed these expectations (the DaemonSet controller reuses them).
    """

    owner_kind = "ReplicaSet"

    def __init__(self, clock: Clock | None = None, timeout: float = EXPECTATIONS_TIMEOUT) -> None:
        self.clock: Clock = clock or SystemClock()
        self.timeout = timeout
        self._by_key: dict[str, _Expected] = {}

    def satisfied(self, key: str) -> bool:
        e = self._by_key.get(key)
        if e is None or (e.adds <= 0 and not e.deletes):
            return True
        if self.clock.monotonic() - e.stamp > self.timeout:
            log.warning("expectations for %s timed out (adds=%d deletes=%d); syncing", key, e.adds, len(e.deletes))
            return True
        return False

    def pending(self, key: str) -> tuple[int, int]:
        e = self._by_key.get(key)
        return (max(e.adds, 0), len(e.deletes)) if e else (0, 0)

    def expect_creations(self, key: str, count: int) -> None:
        self._by_key[key] = _Expected(count, set(), self.clock.monotonic())

    def expect_deletions(self, key: str, names: list[str]) -> None:
        self._by_key[key] = _Expected(0, set(names), self.clock.monotonic())

    def creation_observed(self, key: str) -> None:
        e = self._by_key.get(key)
        if e is not None:
            e.adds -= 1

    def deletion_observed(self, key: str, name: str) -> None:
        e = self._by_key.get(key)
        if e is not None:
            e.deletes.discard(name)

    def delete(self, key: str) -> None:
        self._by_key.pop(key, None)

    # ---- fed by the pod informer ----

    def handler(self) -> FuncHandler:
        def owner_key(pod: Resource) -> str | None:
            ref = controller_of(pod)
            if ref is None or ref.kind != self.owner_kind or not ref.api_version.startswith("apps/"):
                return None
            return f"{pod.metadata.namespace}/{ref.name}"

        def on_add(pod: Resource) -> None:
            key = owner_key(pod)
            if key is None:
                return
            if pod.metadata.deletion_timestamp is not None:
                self.deletion_observed(key, pod.name)  # e.g. seen first on a re-list
            else:
                self.creation_observed(key)

        def on_update(old: Resource, new: Resource) -> None:
            key = owner_key(new)
            if (
                key is not None
                and new.metadata.deletion_timestamp is not None
                and old.metadata.deletion_timestamp is None
            ):
                self.deletion_observed(key, new.name)

        def on_delete(pod: Resource) -> None:
            key = owner_key(pod)
            if key is not None:
                self.deletion_observed(key, pod.name)

        return FuncHandler(add=on_add, update=on_update, delete=on_delete)


async def slow_start(
    count: int, fn: Callable[[], Awaitable[None]], initial: int = 1
) -> tuple[int, int, Exception | None]:
    """Call ``fn`` ``count`` times in batches 1, 2, 4...; stop after a batch with a failure.

    Returns (successes, calls made, first error): calls never made are the caller's to account for.
    """
    done = attempted = 0
    batch = min(initial, count)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        attempted += batch
        errors = [r for r in results if isinstance(r, BaseException)]
        done += batch - len(errors)
        if errors:
            first = errors[0]
            if not isinstance(first, Exception):
                raise first  # cancellation: not ours to swallow
            return done, attempted, first
        batch = min(2 * batch, count - attempted)
    return done, attempted, None


# ---- the reconciler ----


class ReplicaSetReconciler:
    def __init__(
        self,
        reader: Reader,
        writer: Writer,
        *,
        clock: Clock | None = None,
        expectations: Expectations | None = None,
        burst_replicas: int = BURST_REPLICAS,
        recorder: EventRecorder | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.clock: Clock = clock or SystemClock()
        self.expectations = expectations or Expectations(self.clock)
        self.burst_replicas = burst_replicas
        self.recorder = recorder

    async def reconcile(self, request: Request) -> Result:
        key = f"{request.namespace}/{request.name}"
        try:
            rs = await self.reader.get(ReplicaSet, request.name, request.namespace)
        except NotFound:
            self.expectations.delete(key)
            return Result()
        # Read before listing pods: an event observed in between only makes us wait longer.
        needs_sync = self.expectations.satisfied(key)
        selector = rs.spec.selector.to_selector()
        all_pods = [p for p in await self.reader.list(Pod, request.namespace) if is_active(p)]
        pods = await self._claim(rs, selector, all_pods)

        deleted: set[str] = set()
        error: Exception | None = None
        if needs_sync and rs.metadata.deletion_timestamp is None:
            try:
                deleted = await self._manage(key, rs, pods)
            except Exception as exc:  # status first, then retry with back-off
                error = exc
        remaining = [p for p in pods if p.name not in deleted]
        await self._update_status(rs, remaining, error)
        if error is not None:
            raise error
        min_ready = rs.spec.min_ready_seconds
        if min_ready > 0 and any(is_ready(p) and not is_available(p, min_ready, self.clock.now()) for p in remaining):
            return Result(requeue_after=float(min_ready))  # wake when they become available
        return Result()

    # ---- adoption and release ----

    async def _claim(self, rs: ReplicaSet, selector: Selector, pods: list[Pod]) -> list[Pod]:
        uid = rs.metadata.uid
        owned: list[Pod] = []
        can_adopt: bool | None = None
        for pod in pods:
            ref = controller_of(pod)
            labels = pod.metadata.labels or {}
            if ref is not None:
                if ref.uid != uid:
                    continue
                if selector.matches(labels):
                    owned.append(pod)
                else:
                    await self._set_owners(pod, [r for r in pod.metadata.owner_references or () if r.uid != uid])
                continue
            if rs.metadata.deletion_timestamp is not None or not selector.matches(labels):
                continue
            if can_adopt is None:
                can_adopt = await self._still_current(rs)
            if can_adopt:
                refs = [*(pod.metadata.owner_references or ()), owner_reference(rs)]
                adopted = await self._set_owners(pod, refs)
                if adopted is not None:
                    owned.append(adopted)
        return owned

    async def _still_current(self, rs: ReplicaSet) -> bool:
        """Kube re-reads the owner uncached before adopting: never adopt for a deleted RS."""
        try:
            live = await self.writer.get(ReplicaSet, rs.name, rs.metadata.namespace)
        except NotFound:
            return False
        return bool(live.metadata.uid == rs.metadata.uid and live.metadata.deletion_timestamp is None)

    async def _set_owners(self, pod: Pod, refs: list) -> Pod | None:  # type: ignore[type-arg]
        patch = {
            "metadata": {
                "ownerReferences": [r.to_dict() for r in refs] or None,
                # A precondition: if the pod changed since we read it, its next event retries us.
                "resourceVersion": pod.metadata.resource_version,
            }
        }
        try:
            result: Pod = await self.writer.patch(Pod, pod.name, patch, pod.metadata.namespace)
            return result
        except (Conflict, NotFound):
            return None

    # ---- creating and deleting ----

    async def _manage(self, key: str, rs: ReplicaSet, pods: list[Pod]) -> set[str]:
        diff = len(pods) - rs.spec.replicas
        if diff < 0:
            await self._create(key, rs, min(-diff, self.burst_replicas))
            return set()
        if diff > 0:
            return await self._delete(key, rs, pods_to_delete(pods, min(diff, self.burst_replicas)))
        return set()

    async def _create(self, key: str, rs: ReplicaSet, count: int) -> None:
        template = rs.spec.template
        if template is None:
            return
        # Expect them all before the first request: its ADDED event may arrive before we return.
        self.expectations.expect_creations(key, count)

        async def create_one() -> None:
            try:
                await self.writer.create(pod_from_template(template, rs, f"{rs.name}-"))
            except Exception:
                self.expectations.creation_observed(key)  # never coming: do not wait for it
                raise

        done, attempted, error = await slow_start(count, create_one)
        for _ in range(count - attempted):
            self.expectations.creation_observed(key)  # skipped after a failed batch
        if error is not None and not isinstance(error, AlreadyExists):
            if self.recorder:
                await self.recorder.event(rs, "Warning", "FailedCreate", f"Error creating: {error}")
            raise error
        if done and self.recorder:
            await self.recorder.event(rs, "Normal", "SuccessfulCreate", f"Created {done} pod(s)")

    async def _delete(self, key: str, rs: ReplicaSet, victims: list[Pod]) -> set[str]:
        self.expectations.expect_deletions(key, [p.name for p in victims])

        async def delete_one(pod: Pod) -> str:
            try:
                await self.writer.delete(Pod, pod.name, pod.metadata.namespace)
            except NotFound:
                self.expectations.deletion_observed(key, pod.name)
            except Exception:
                self.expectations.deletion_observed(key, pod.name)
                raise
            return pod.name

        results = await asyncio.gather(*(delete_one(p) for p in victims), return_exceptions=True)
        deleted = {r for r in results if isinstance(r, str)}
        errors = [r for r in results if isinstance(r, BaseException)]
        if deleted and self.recorder:
            await self.recorder.event(rs, "Normal", "SuccessfulDelete", f"Deleted {len(deleted)} pod(s)")
        if errors:
            raise errors[0]
        return deleted

    # ---- status ----

    def _status(self, rs: ReplicaSet, pods: list[Pod], error: Exception | None) -> ReplicaSetStatus:
        now = self.clock.now()
        wanted = (rs.spec.template.metadata.labels if rs.spec.template and rs.spec.template.metadata else None) or {}
        status = ReplicaSetStatus(
            replicas=len(pods),
            fully_labeled_replicas=sum(
                1 for p in pods if all((p.metadata.labels or {}).get(k) == v for k, v in wanted.items())
            ),
            ready_replicas=sum(1 for p in pods if is_ready(p)),
            available_replicas=sum(1 for p in pods if is_available(p, rs.spec.min_ready_seconds, now)),
            observed_generation=rs.metadata.generation,
            conditions=list(rs.status.conditions or []) if rs.status and rs.status.conditions else None,
        )
        if error is not None and not isinstance(error, Conflict):
            verb = "FailedCreate" if len(pods) < rs.spec.replicas else "FailedDelete"
            set_condition(status, "ReplicaFailure", "True", verb, str(error)[:512], now=now)
        elif status.conditions:
            status.conditions = [c for c in status.conditions if c.type != "ReplicaFailure"] or None
        return status

    async def _update_status(self, rs: ReplicaSet, pods: list[Pod], error: Exception | None) -> None:
        status = self._status(rs, pods, error)
        if rs.status == status:
            return
        updated = rs.model_copy(deep=True)
        updated.status = status
        try:
            await self.writer.update_status(updated)
        except NotFound:
            pass  # deleted meanwhile


def orphan_mapper(manager: Manager) -> Callable[[Resource], list[Request]]:
    """Map a pod without a controller to every ReplicaSet whose selector matches it (adoption)."""
    informer = manager.informer_for(ReplicaSet)

    def mapper(pod: Resource) -> list[Request]:
        if controller_of(pod) is not None:
            return []
        labels = pod.metadata.labels or {}
        return [
            Request.for_object(rs)
            for rs in informer.cache.list(pod.metadata.namespace)
            if isinstance(rs, ReplicaSet) and rs.spec.selector.matches(labels)
        ]

    return mapper


def build_replicaset_controller(
    manager: Manager,
    *,
    workers: int = 4,
    burst_replicas: int = BURST_REPLICAS,
    expectations_timeout: float = EXPECTATIONS_TIMEOUT,
) -> Controller:
    """Wire the ReplicaSet controller into ``manager`` and return it."""
    expectations = Expectations(manager.clock, expectations_timeout)
    manager.informer_for(Pod).add_handler(expectations.handler())
    reconciler = ReplicaSetReconciler(
        manager.reader,
        manager.writer,
        clock=manager.clock,
        expectations=expectations,
        burst_replicas=burst_replicas,
        recorder=manager.event_recorder("replicaset-controller"),
    )
    return (
        ControllerBuilder(manager)
        .named(NAME)
        .for_(ReplicaSet)
        .owns(Pod)
        .watches(Pod, orphan_mapper(manager))
        .with_workers(workers)
        .complete(reconciler)
    )


def build(manager: Manager) -> None:
    """``deploy_controller("replicaset", "kray.actors.controllers.replicaset:build", config)``."""
    build_replicaset_controller(manager)
