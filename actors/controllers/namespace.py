"""The namespace controller: empties a Terminating namespace, then lets it go.

Deletion goes through the ``kubernetes`` entry of ``spec.finalizers``: while it is there the
API server only marks the namespace Terminating (and refuses new content). This controller
puts that finalizer on every active namespace (through ``/finalize``, as Kubernetes' API server
does at creation), and for a Terminating one deletes every object of every namespaced kind in
the registry, reports what is left in the namespace's conditions, and removes the finalizer
once nothing is left, which makes the API server delete the namespace.

Content is listed live from the API server when the writer can list (``AsyncClient`` can), so
an object the cache has not seen yet is not left behind. A namespace that vanished without the
finalizer (deleted before this controller saw it) has its leftover content removed too, once a
live GET confirms it is gone.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol, cast, runtime_checkable

from kray.actors.framework import (
    Clock,
    ControllerBuilder,
    EventRecorder,
    Manager,
    Reader,
    Request,
    Result,
    Writer,
    set_condition,
)
from kray.client.errors import NotFound
from kray.crds.core import Namespace, NamespaceStatus, Pod
from kray.crds.meta import Resource
from kray.crds.registry import KindInfo, Registry

log = logging.getLogger(__name__)

FINALIZER = "kubernetes"
CONTENT_REMAINING = "NamespaceContentRemaining"
FINALIZERS_REMAINING = "NamespaceFinalizersRemaining"
CONTENT_FAILURE = "NamespaceDeletionContentFailure"


@runtime_checkable
class LiveLister(Protocol):
    async def list(self, kind: Any, namespace: str | None = None) -> Any: ...


class NamespaceReconciler:
    def __init__(
        self,
        reader: Reader,
        writer: Writer,
        registry: Registry,
        clock: Clock,
        recorder: EventRecorder | None = None,
        *,
        recheck_seconds: float = 2.0,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.registry = registry
        self.clock = clock
        self.recorder = recorder
        self.recheck_seconds = recheck_seconds

    async def reconcile(self, request: Request) -> Result:
        try:
            ns = await self.reader.get(Namespace, request.name)
        except NotFound:
            return await self._vanished(request.name)
        if ns.metadata.deletion_timestamp is None:
            await self._ensure_finalizer(ns)
            return Result()
        if FINALIZER not in (ns.spec.finalizers or []):
            return Result()  # not ours to finish (another finalizer or metadata.finalizers)
        remaining, failures = await self._delete_content(ns.name)
        now = self.clock.now()
        if not remaining and not failures:
            await self._finalize(ns, [f for f in ns.spec.finalizers or [] if f != FINALIZER])
            return Result()
        await self._report(ns, remaining, failures, now)
        return Result(requeue_after=self.recheck_seconds)

    # ---- content ----

    def _namespaced_kinds(self) -> list[KindInfo]:
        return sorted((i for i in self.registry.all() if i.namespaced), key=lambda i: (i.group, i.kind))

    async def _list(self, info: KindInfo, namespace: str) -> list[Resource]:
        if isinstance(self.writer, LiveLister):
            return list((await cast(LiveLister, self.writer).list(info, namespace)).items)
        return list(await self.reader.list(info.model, namespace))

    async def _delete_content(self, namespace: str) -> tuple[dict[str, list[Resource]], list[str]]:
        """Delete what is in the namespace; returns what is still there (by resource) and errors."""
        remaining: dict[str, list[Resource]] = {}
        failures: list[str] = []
        for info in self._namespaced_kinds():
            try:
                items = await self._list(info, namespace)
            except NotFound:
                continue  # a kind being unregistered (CRD deleted)
            except Exception as exc:  # one kind's failure must not block the others
                failures.append(f"{info.resource}: {exc}")
                continue
            if not items:
                continue
            remaining[info.resource] = items
            for obj in items:
                if obj.metadata.deletion_timestamp is not None:
                    continue  # going already (graceful pods, finalizers)
                try:
                    await self.writer.delete(info, obj.name, namespace)
                except NotFound:
                    pass
                except Exception as exc:
                    failures.append(f"{info.resource} {obj.name}: {exc}")
        return remaining, failures

    async def _vanished(self, name: str) -> Result:
        try:
            await self.writer.get(Namespace, name)
            return Result()  # the cache lags: it exists
        except NotFound:
            pass
        remaining, failures = await self._delete_content(name)
        if remaining or failures:
            log.info("namespace %s is gone; removing what was left in it: %s", name, sorted(remaining))
            return Result(requeue_after=self.recheck_seconds)
        return Result()

    # ---- writes ----

    async def _ensure_finalizer(self, ns: Namespace) -> None:
        if FINALIZER not in (ns.spec.finalizers or []):
            await self._finalize(ns, [*(ns.spec.finalizers or []), FINALIZER])

    async def _finalize(self, ns: Namespace, finalizers: list[str]) -> None:
        """PUT /finalize: the only way to change spec.finalizers, guarded by the resourceVersion read."""
        updated = ns.model_copy(deep=True)
        updated.spec.finalizers = finalizers
        if not isinstance(self.writer, _RawUpdater):
            log.warning("the writer cannot PUT /finalize; namespace %s keeps its finalizers", ns.name)
            return
        try:
            await self.writer.update_raw(updated.to_dict(), Namespace, subresource="finalize")
        except NotFound:
            return
        if FINALIZER not in finalizers and ns.metadata.deletion_timestamp is not None and self.recorder:
            await self.recorder.event(ns, "Normal", "NamespaceFinalized", "all content deleted; namespace finalized")

    async def _report(
        self, ns: Namespace, remaining: dict[str, list[Resource]], failures: list[str], now: datetime
    ) -> None:
        status = ns.status.model_copy(deep=True) if ns.status else NamespaceStatus(phase="Terminating")
        counts = ", ".join(f"{res} has {len(items)} resource instances" for res, items in sorted(remaining.items()))
        finalizers: dict[str, int] = {}
        for items in remaining.values():
            for obj in items:
                for f in obj.metadata.finalizers or []:
                    finalizers[f] = finalizers.get(f, 0) + 1
        if remaining:
            set_condition(
                status,
                CONTENT_REMAINING,
                "True",
                "SomeResourcesRemain",
                f"Some resources are remaining: {counts}",
                now=now,
            )
        else:
            set_condition(
                status, CONTENT_REMAINING, "False", "ContentDeleted", "All content successfully removed", now=now
            )
        if finalizers:
            text = ", ".join(f"{f} in {n} resource instances" for f, n in sorted(finalizers.items()))
            set_condition(
                status,
                FINALIZERS_REMAINING,
                "True",
                "SomeFinalizersRemain",
                f"Some content in the namespace has finalizers remaining: {text}",
                now=now,
            )
        else:
            set_condition(
                status,
                FINALIZERS_REMAINING,
                "False",
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished",
                now=now,
            )
        if failures:
            set_condition(status, CONTENT_FAILURE, "True", "ContentDeletionFailed", "; ".join(failures)[:1000], now=now)
        else:
            set_condition(
                status, CONTENT_FAILURE, "False", "ContentDeleted", "All content successfully deleted", now=now
            )
        if status != ns.status:
            updated = ns.model_copy(deep=True)
            updated.status = status
            await self.writer.update_status(updated)


@runtime_checkable
class _RawUpdater(Protocol):
    async def update_raw(self, obj: Any, ref: Any = None, subresource: str | None = None) -> Any: ...


def setup(manager: Manager, **options: object) -> None:
    """Register the namespace controller (options: ``recheck_seconds`` while content remains, default 2)."""
    recheck = options.get("recheck_seconds", 2.0)
    reconciler = NamespaceReconciler(
        manager.reader,
        manager.writer,
        manager.registry,
        manager.clock,
        manager.event_recorder("namespace-controller"),
        recheck_seconds=float(recheck) if isinstance(recheck, (int, float)) else 2.0,
    )
    namespaces = manager.informer_for(Namespace)

    def terminating_namespace(pod: Resource) -> list[Request]:
        # Pods leave gracefully, later than the pass that deleted them: wake their namespace then.
        ns = namespaces.cache.get_by_name(None, pod.metadata.namespace or "")
        if ns is not None and ns.metadata.deletion_timestamp is not None:
            return [Request(None, ns.name)]
        return []

    builder = ControllerBuilder(manager).named("namespace").for_(Namespace).watches(Pod, terminating_namespace)
    builder.complete(reconciler)
