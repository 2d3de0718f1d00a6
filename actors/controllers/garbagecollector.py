"""The garbage collector: deletes dependents whose owners are gone, and carries out Foreground
and Orphan deletion (Kubernetes' garbage collector, built on the framework's informers).

The owner graph is the informers' caches: one informer per registered kind (Events excepted,
as in Kubernetes), whose built-in ``owner-uid`` index maps an owner's uid to its dependents.
Kinds registered later (CRDs) are picked up by a periodic re-scan of the registry.

Work items are objects of any kind, keyed ``Request(namespace, "<apiVersion>|<Kind>|<name>")``:

- a dependent whose owners are all absent is deleted (Background; Foreground when an owner
  waits for it in foreground deletion and it has dependents itself). Absence is confirmed by a
  live GET (uid compared) before anything is deleted, so a stale cache never deletes live
  children; the dependent itself is re-read live and deleted with a uid precondition.
- an owner with the ``foregroundDeletion`` finalizer has its dependents deleted; the finalizer
  is removed once no dependent with ``blockOwnerDeletion`` remains.
- an owner with the ``orphan`` finalizer has its references removed from every dependent, then
  the finalizer removed.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, cast

from kray.actors.framework import (
    OWNER_UID_INDEX,
    ControllerBuilder,
    FuncHandler,
    Manager,
    Request,
    Result,
    Writer,
    remove_finalizer,
)
from kray.client.errors import Conflict, NotFound
from kray.crds.core import Namespace
from kray.crds.meta import OwnerReference, Resource
from kray.crds.registry import KindInfo, Registry, UnknownKindError

log = logging.getLogger(__name__)

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
# Events are never owners and are the most numerous objects: Kubernetes' GC ignores them too.
IGNORED_KINDS = frozenset({("v1", "Event"), ("events.k8s.io/v1", "Event")})
RESCAN_KEY = Request(None, "<rescan>")
_SEP = "|"


class DeleteWriter(Writer, Protocol):
    """The delete options the collector needs (``AsyncClient`` has them)."""

    async def delete(  # type: ignore[override]
        self,
        kind: Any,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: str | None = None,
        preconditions: dict[str, str] | None = None,
    ) -> Any: ...


def item_key(info: KindInfo, namespace: str | None, name: str) -> Request:
    return Request(namespace or None, f"{info.api_version}{_SEP}{info.kind}{_SEP}{name}")


def owner_key(registry: Registry, obj: Resource, ref: OwnerReference) -> Request | None:
    try:
        info = registry.get(ref.api_version, ref.kind)
    except UnknownKindError:
        return None
    return item_key(info, obj.metadata.namespace if info.namespaced else None, ref.name)


class GarbageCollector:
    def __init__(self, manager: Manager, *, rescan_period: float = 30.0) -> None:
        self.manager = manager
        self.registry = manager.registry
        self.writer = cast(DeleteWriter, manager.writer)
        self.rescan_period = rescan_period
        self.recorder = manager.event_recorder("garbage-collector-controller")
        self.controller: Any = None  # set by setup(); handlers enqueue on it
        self._watched: set[tuple[str, str]] = set()

    # ---- the graph ----

    def watch_all(self) -> None:
        """Watch every registered kind not watched yet (called at setup and on each re-scan)."""
        for info in self.registry.all():
            ident = (info.api_version, info.kind)
            if ident in self._watched or ident in IGNORED_KINDS:
                continue
            self._watched.add(ident)
            self.manager.informer_for(info).add_handler(self._handler(info))

    def _handler(self, info: KindInfo) -> FuncHandler:
        def changed(obj: Resource) -> None:
            # The object itself (its owners may be gone, or it may be deleting with a GC
            # finalizer), and its owners (a foreground/orphan owner waits on its dependents).
            keys = [item_key(info, obj.metadata.namespace, obj.name)] if self._interesting(obj) else []
            keys += [k for ref in obj.metadata.owner_references or () if (k := owner_key(self.registry, obj, ref))]
            self._enqueue(keys)

        def updated(old: Resource, new: Resource) -> None:
            changed(new)
            if old is not new and old.metadata.owner_references != new.metadata.owner_references:
                changed(old)  # a removed reference wakes the old owner

        def deleted(obj: Resource) -> None:
            changed(obj)
            self._enqueue(self._dependent_keys(obj.metadata.uid or ""))

        return FuncHandler(add=changed, update=updated, delete=deleted)

    @staticmethod
    def _interesting(obj: Resource) -> bool:
        meta = obj.metadata
        return bool(meta.owner_references) or (
            meta.deletion_timestamp is not None and bool({FOREGROUND, ORPHAN} & set(meta.finalizers or ()))
        )

    def _enqueue(self, keys: list[Request]) -> None:
        if self.controller is not None:
            for key in keys:
                self.controller.enqueue(key)

    def dependents(self, uid: str) -> list[tuple[KindInfo, Resource]]:
        found: list[tuple[KindInfo, Resource]] = []
        if not uid:
            return found
        for informer in list(self.manager.informers.values()):
            if (informer.info.api_version, informer.info.kind) in self._watched:
                found += [(informer.info, o) for o in informer.cache.by_index(OWNER_UID_INDEX, uid)]
        return found

    def _dependent_keys(self, uid: str) -> list[Request]:
        return [item_key(info, o.metadata.namespace, o.name) for info, o in self.dependents(uid)]

    def _cached(self, info: KindInfo, namespace: str | None, name: str) -> Resource | None:
        return self.manager.informer_for(info).cache.get_by_name(namespace if info.namespaced else None, name)

    # ---- reconcile ----

    async def reconcile(self, request: Request) -> Result:
        if request == RESCAN_KEY:
            self.watch_all()
            return Result(requeue_after=self.rescan_period)
        api_version, kind, name = request.name.split(_SEP, 2)
        try:
            info = self.registry.get(api_version, kind)
        except UnknownKindError:
            return Result()  # the kind went away (CRD deleted): so did its objects
        obj = self._cached(info, request.namespace, name)
        if obj is None:
            return Result()  # gone: the delete handler already woke its dependents
        finalizers = set(obj.metadata.finalizers or ())
        if obj.metadata.deletion_timestamp is not None and ORPHAN in finalizers:
            return await self._orphan_dependents(info, obj)
        if obj.metadata.deletion_timestamp is not None and FOREGROUND in finalizers:
            return await self._delete_dependents(info, obj)
        if obj.metadata.owner_references:
            return await self._check_owners(info, obj)
        return Result()

    async def _owner_state(self, obj: Resource, ref: OwnerReference) -> str:
        """'solid', 'waiting' (in foreground deletion), 'absent', or 'unknown' (kind not known)."""
        try:
            info = self.registry.get(ref.api_version, ref.kind)
        except UnknownKindError:
            return "unknown"
        namespace = obj.metadata.namespace if info.namespaced else None
        if info.namespaced and not namespace:
            return "absent"  # a cluster-scoped object cannot have a namespaced owner
        owner = self._cached(info, namespace, ref.name)
        if owner is None or owner.metadata.uid != ref.uid:
            # The cache may lag (an owner created a moment ago): ask the API server.
            try:
                owner = await self.writer.get(info, ref.name, namespace)
            except NotFound:
                return "absent"
            if owner.metadata.uid != ref.uid:
                return "absent"  # same name, another object: the owner we knew is gone
        if owner.metadata.deletion_timestamp is not None and FOREGROUND in (owner.metadata.finalizers or ()):
            return "waiting"
        return "solid"

    async def _check_owners(self, info: KindInfo, obj: Resource) -> Result:
        states = {ref.uid: await self._owner_state(obj, ref) for ref in obj.metadata.owner_references or ()}
        if "unknown" in states.values():
            return Result(requeue_after=self.rescan_period)  # cannot tell yet: never guess and delete
        if "solid" in states.values():
            drop = {uid for uid, s in states.items() if s != "solid"}
            if drop:
                await self._remove_refs(info, obj, drop)
            return Result()
        if obj.metadata.deletion_timestamp is not None:
            return Result()  # already going
        # No owner left (or all are waiting for their dependents): delete it.
        waiting = "waiting" in states.values()
        policy = "Foreground" if waiting and self.dependents(obj.metadata.uid or "") else "Background"
        await self._delete(info, obj, policy)
        return Result()

    async def _delete_dependents(self, info: KindInfo, owner: Resource) -> Result:
        blocking = 0
        for dep_info, dep in self.dependents(owner.metadata.uid or ""):
            ref = next(r for r in dep.metadata.owner_references or () if r.uid == owner.metadata.uid)
            if ref.block_owner_deletion:
                blocking += 1
            if dep.metadata.deletion_timestamp is None:
                # Its other owners may keep it; _check_owners decides (and deletes it if not).
                await self._check_owners(dep_info, dep)
        if blocking:
            return Result()  # woken again as each blocking dependent changes or goes
        await self._remove_finalizer(info, owner, FOREGROUND)
        return Result()

    async def _orphan_dependents(self, info: KindInfo, owner: Resource) -> Result:
        uid = owner.metadata.uid or ""
        for dep_info, dep in self.dependents(uid):
            await self._remove_refs(dep_info, dep, {uid})
        await self._remove_finalizer(info, owner, ORPHAN)
        return Result()

    # ---- writes: always against the resourceVersion read, 409 -> requeue ----

    async def _remove_refs(self, info: KindInfo, obj: Resource, uids: set[str]) -> None:
        updated = obj.model_copy(deep=True)
        refs = [r for r in updated.metadata.owner_references or () if r.uid not in uids]
        updated.metadata.owner_references = refs or None
        try:
            await self.writer.update(updated)
        except NotFound:
            pass

    async def _remove_finalizer(self, info: KindInfo, obj: Resource, finalizer: str) -> None:
        updated = obj.model_copy(deep=True)
        if remove_finalizer(updated, finalizer):
            try:
                await self.writer.update(updated)
            except NotFound:
                pass

    async def _delete(self, info: KindInfo, obj: Resource, policy: str) -> None:
        # Re-read it live: its cached owner references may be stale (e.g. it was just orphaned).
        namespace = obj.metadata.namespace if info.namespaced else None
        try:
            current = await self.writer.get(info, obj.name, namespace)
        except NotFound:
            return
        if current.metadata.uid != obj.metadata.uid:
            return
        if current.metadata.owner_references != obj.metadata.owner_references:
            raise Conflict(409, "Conflict", f"{info.kind} {obj.name} changed; re-checking its owners")
        try:
            await self.writer.delete(
                info,
                obj.name,
                namespace,
                propagation_policy=policy,
                preconditions={"uid": obj.metadata.uid or "", "resourceVersion": current.metadata.resource_version},
            )
        except NotFound:
            return
        log.info("garbage collector: deleted %s %s/%s (%s)", info.kind, namespace or "", obj.name, policy)


def setup(manager: Manager, **options: object) -> None:
    """Register the garbage collector (options: ``rescan_period`` seconds, default 30; ``workers``)."""
    period = options.get("rescan_period", 30.0)
    workers = options.get("workers", 1)
    gc = GarbageCollector(manager, rescan_period=float(period) if isinstance(period, (int, float)) else 30.0)
    # Every key comes from gc's own handlers; the builder's watch on a first kind is only the
    # registration (its mapper adds nothing).
    builder = ControllerBuilder(manager).named("garbage-collector")
    builder.watches(Namespace, lambda _obj: [])
    gc.controller = builder.with_workers(workers if isinstance(workers, int) else 1).complete(gc)
    gc.watch_all()
    gc.controller.enqueue(RESCAN_KEY)
