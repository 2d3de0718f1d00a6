"""The resourcequota controller: keep each ResourceQuota's status from the live objects.

Level-based, like kube-controller-manager's ResourceQuotaController: every pass re-reads the
quota and, from the informer caches, the objects of its namespace that it limits, and sets

    status.hard  = spec.hard
    status.used  = for every hard resource, the sum over the objects its scopes select (pods not
                   in a terminal phase for compute resources and ``pods``; every stored object for
                   count/<resource> and the legacy counts); a kind this controller does not know
                   keeps the value the API server charged

then writes the status with the resourceVersion it read (a charge in between is a 409 and the pass
is redone). Passes run on quota changes, on pod adds, deletes and terminal transitions, on adds and
deletes of any other kind a quota counts (watched from the first pass that needs it), and every
``resync_seconds`` (kube's full resync), which also repairs charges whose create failed.

The API server charges status.used BEFORE it writes the object (see ``apiserver.quota``), so for
a moment a charge has no object to show for it yet; a recount then would hand the charge back and
let the next create overcommit (it does, without what follows: 3 of 6 racing 2-GPU creates got in
under a 4-GPU quota). So every rise of status.used this controller sees is remembered for
``settle_seconds`` (far longer than a create takes), and a recount may lower a value only down to
``recount + the rises of that window`` (never below the recount, never above the old value): the
charges possibly still in flight stay, while usage released by deletions is handed back at once,
even in a namespace where creates never pause. Increases and status.hard are written at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from kray.actors.framework import ControllerBuilder, FuncHandler, Manager, Reader, Request, Result, Writer
from kray.actors.framework.ports import Clock
from kray.client.errors import NotFound
from kray.crds.core import Pod
from kray.crds.core.quota import (
    ResourceQuota,
    ResourceQuotaStatus,
    add,
    kind_of_count,
    matches_scopes,
    matching_resources,
    object_usage,
)
from kray.crds.meta import Resource
from kray.crds.quantity import Quantity, ResourceList
from kray.crds.registry import REGISTRY, KindInfo, Registry

log = logging.getLogger(__name__)

NAME = "resourcequota"
RESYNC_SECONDS = 300.0  # kube-controller-manager's --resource-quota-sync-period
SETTLE_SECONDS = 2.0
Kinds = Mapping[tuple[str, str], list[Resource]]  # (group, plural) -> objects of the namespace


def kinds_for(hard: Mapping[str, Quantity], registry: Registry) -> list[KindInfo]:
    """The kinds whose objects consume something ``hard`` names."""
    wanted = {kind_of_count(name) for name in hard} - {None}
    if matching_resources("", "pods", hard):
        wanted.add(("", "pods"))
    return sorted(
        (info for info in registry.all() if (info.group, info.plural) in wanted and info.namespaced),
        key=lambda i: (i.group, i.plural),
    )


def recount(quota: ResourceQuota, objects: Kinds, now: datetime) -> ResourceList:
    """status.used from the objects of the namespace (kube's CalculateUsage)."""
    hard = quota.spec.hard or {}
    previous = (quota.status.used if quota.status else None) or {}
    used: ResourceList = {}
    counted: set[str] = set()
    for (group, plural), items in objects.items():
        names = matching_resources(group, plural, hard)
        counted |= names
        for obj in items:
            if matches_scopes(quota.spec, obj):
                used = add(used, {k: v for k, v in object_usage(group, plural, obj, now).items() if k in names})
    out: ResourceList = {}
    for name in hard:
        if name in used:
            out[name] = used[name]
        elif name in counted:
            out[name] = Quantity(0)
        else:  # a kind unknown here (a CRD this process has not loaded): keep the API server's charge
            out[name] = previous.get(name, Quantity(0))
    return out


def settle(old: ResourceList | None, new: ResourceList, recent: ResourceList) -> tuple[ResourceList, bool]:
    """``new`` (the recount), except that no value drops below ``new + recent`` (the charges seen
    lately, whose objects may not be written yet) unless ``old`` was lower; True when something
    was held back."""
    if old is None:
        return new, False
    out, held = dict(new), False
    for name, q in new.items():
        before = old.get(name)
        if before is None or q >= before or name not in recent:
            continue
        floor = q + recent[name]
        out[name] = before if before < floor else floor
        held = held or out[name] != q
    return out, held


def next_release(pods: list[Resource], now: datetime) -> float | None:
    """Seconds until a terminating pod's grace runs out and its usage is released."""
    waits = []
    for pod in pods:
        meta = pod.metadata
        if meta.deletion_timestamp is not None and meta.deletion_grace_period_seconds is not None:
            due = meta.deletion_timestamp + timedelta(seconds=meta.deletion_grace_period_seconds)
            if due >= now:
                waits.append((due - now).total_seconds())
    return min(waits) if waits else None


def _same(a: ResourceQuotaStatus | None, b: ResourceQuotaStatus) -> bool:
    return a is not None and a.to_dict() == b.to_dict()


class ResourceQuotaReconciler:
    """``watch_kind(info)`` makes events on that kind wake the quotas of their namespace."""

    def __init__(
        self,
        reader: Reader,
        writer: Writer,
        clock: Clock,
        watch_kind: Callable[[KindInfo], None],
        registry: Registry = REGISTRY,
        *,
        resync_seconds: float = RESYNC_SECONDS,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.clock = clock
        self.watch_kind = watch_kind
        self.registry = registry
        self.resync_seconds = resync_seconds
        self.settle_seconds = settle_seconds
        # Per quota: (monotonic time, what status.used rose by) for the rises seen lately.
        self.charges: dict[Request, list[tuple[float, ResourceList]]] = {}

    def observe(self, old: ResourceQuota | None, new: ResourceQuota) -> None:
        """Remember a rise of status.used (all of it for a quota seen for the first time: this
        process cannot know which of its charges are still in flight)."""
        before = (old.status.used if old is not None and old.status else None) or {}
        after = (new.status.used if new.status else None) or {}
        rise = {k: q - before[k] if k in before else q for k, q in after.items() if q > before.get(k, Quantity(0))}
        if rise:
            self.charges.setdefault(Request.for_object(new), []).append((self.clock.monotonic(), rise))

    def _recent(self, request: Request) -> tuple[ResourceList, float | None]:
        """The rises of the last settle_seconds, summed, and when the oldest of them expires."""
        now = self.clock.monotonic()
        kept = [(t, rise) for t, rise in self.charges.get(request, []) if now - t < self.settle_seconds]
        if kept:
            self.charges[request] = kept
        else:
            self.charges.pop(request, None)
        total: ResourceList = {}
        for _, rise in kept:
            total = add(total, rise)
        return total, (kept[0][0] + self.settle_seconds - now) if kept else None

    async def reconcile(self, request: Request) -> Result:
        try:
            quota = await self.reader.get(ResourceQuota, request.name, request.namespace)
        except NotFound:
            self.charges.pop(request, None)
            return Result()
        if quota.metadata.deletion_timestamp is not None:
            return Result()
        now = self.clock.now()
        objects: dict[tuple[str, str], list[Resource]] = {}
        for info in kinds_for(quota.spec.hard or {}, self.registry):
            self.watch_kind(info)
            objects[(info.group, info.plural)] = list(await self.reader.list(info.model, quota.namespace))
        recent, expires = self._recent(request)
        old_used = quota.status.used if quota.status else None
        used, held = settle(old_used, recount(quota, objects, now), recent)
        after = self.resync_seconds
        release = next_release(objects.get(("", "pods"), []), now)
        if release is not None:
            after = min(after, release + 0.5)
        if held and expires is not None:
            after = min(after, expires + 0.05)
        status = ResourceQuotaStatus(hard=dict(quota.spec.hard or {}), used=used)
        if _same(quota.status, status):
            return Result(requeue_after=after)
        updated = quota.model_copy(deep=True)  # cached objects are shared
        updated.status = status
        await self.writer.update_status(updated)  # the resourceVersion read: a charge since -> 409 -> requeued
        log.debug("quota %s/%s: used %s", quota.namespace, quota.name, {k: str(v) for k, v in used.items()})
        return Result(requeue_after=after)


def _usage_changed(old: Resource, new: Resource) -> bool:
    """A pod update that can change what it is charged: phase, deletion, or the spec."""
    if old is new:  # an informer resync: recount anyway (the level-based safety net)
        return True
    assert isinstance(old, Pod) and isinstance(new, Pod)
    phase = (old.status.phase if old.status else None) != (new.status.phase if new.status else None)
    deleting = old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
    return phase or deleting or old.metadata.generation != new.metadata.generation


def setup(manager: Manager, **options: object) -> None:
    """Register the resourcequota controller (options: ``workers``, ``resync_seconds``,
    ``settle_seconds``)."""
    workers = options.get("workers", 2)
    quotas = manager.informer_for(ResourceQuota)
    watched: set[tuple[str, str]] = set()

    def enqueue_namespace(obj: Resource) -> None:
        for q in quotas.cache.list(obj.metadata.namespace):
            controller.enqueue(Request.for_object(q))

    def pod_updated(old: Resource, new: Resource) -> None:
        if _usage_changed(old, new):
            enqueue_namespace(new)

    def watch_kind(info: KindInfo) -> None:
        key = (info.group, info.plural)
        if key in watched:
            return
        watched.add(key)
        # Counts change on adds and deletes only; pods also on the updates _usage_changed names.
        update = pod_updated if key == ("", "pods") else None
        manager.informer_for(info).add_handler(
            FuncHandler(add=enqueue_namespace, update=update, delete=enqueue_namespace)
        )

    def float_option(name: str, default: float) -> float:
        value = options.get(name, default)
        return float(value) if isinstance(value, (int, float)) else default

    reconciler = ResourceQuotaReconciler(
        manager.reader,
        manager.writer,
        manager.clock,
        watch_kind,
        manager.registry,
        resync_seconds=float_option("resync_seconds", RESYNC_SECONDS),
        settle_seconds=float_option("settle_seconds", SETTLE_SECONDS),
    )
    builder = ControllerBuilder(manager).named(NAME).for_(ResourceQuota)
    controller = builder.with_workers(workers if isinstance(workers, int) else 2).complete(reconciler)

    def observe(old: Resource | None, new: Resource) -> None:
        if isinstance(new, ResourceQuota):
            reconciler.observe(old if isinstance(old, ResourceQuota) else None, new)

    quotas.add_handler(FuncHandler(add=lambda q: observe(None, q), update=observe))
    watch_kind(manager.info_for(Pod))  # pods from the start: most quotas are about them


build = setup  # deploy_controller("resourcequota", "kray.actors.controllers.resourcequota:setup", config)
