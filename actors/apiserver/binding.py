"""Pod binding (``POST .../pods/{name}/binding``) as one optimistic etcd transaction (Omega-style).

Several scheduler shards bind concurrently from possibly stale caches, so the API server, not
the scheduler, is where "the node still has room" is decided. Each node has an allocation
record, one key per node::

    /registry/kray.io/nodeallocations/<node>
    {"node": "n1",
     "requested": {"cpu": 1500, "memory": 2147483648000, "nvidia.com/gpu": 2000},   # milli-units
     "pods": {"<pod uid>": {"pod": "ns/name", "requests": {"cpu": 500, ...}}, ...}}

``requested`` is the sum of the entries' requests (kept for readers; always recomputed from
``pods`` when written); the pod count is ``len(pods)``. An entry also lists the GPUs the pod
holds (``"devices": [...]``, from its ``kray.io/gpu-devices`` annotation), so two shards can
never bind two pods onto the same device either. A bind reads the pod, the node and the
record, checks in Python that the pod's requests fit the node's allocatable (cpu, memory, pods,
extended resources) and that its devices are free, then commits ONE transaction guarded by the
pod's and the record's mod revisions that writes the bound pod and the grown record. A lost race
re-reads and retries; a pod that no longer fits is a 409 Conflict.

The Binding's ``metadata.annotations`` (Kubernetes copies them onto the pod at bind; the
scheduler sends the GPUs it picked this way) are written onto the pod in the same transaction.

Release: pods are deleted through many paths (graceful delete, finalizers, deletecollection,
namespace and garbage collection), so instead of threading the record through each of them,
``AllocationReleaser`` watches the pod keys and removes a pod's entry (by uid, so it is
idempotent) when the pod is deleted or reaches Succeeded/Failed; it also adds pods created with
``spec.nodeName`` preset (they bypass binding). A full resync at start and periodically repairs
anything missed while no API server ran. Until a release lands the record over-counts, which
can only make a bind wait, never overcommit; and every write of a record is guarded by its mod
revision, so the releaser and binds never lose each other's updates.

The record itself (``Allocation``, ``pod_requests``, ``node_allocatable``, ``read_allocation``...)
lives in ``allocations`` and is re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic_core import from_json, to_json

from kray.actors.store.kv import CompactedError, Compare, KeyValue, RevisionConflictError
from kray.actors.store.objects import ObjectStore
from kray.crds.meta import Condition, Status
from kray.crds.registry import KindInfo

from . import errors
from .allocations import (
    ALLOCATIONS_PREFIX,
    DEFAULT_MAX_PODS,
    Allocation,
    allocation_entry,
    allocation_key,
    bound_share,
    milli,
    node_allocatable,
    pod_requests,
    read_allocation,
)

log = logging.getLogger(__name__)

_RETRIES = 16


def _annotations(pod_info: KindInfo, name: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise errors.invalid(
            pod_info, name, [("metadata.annotations", "must map strings to strings", "FieldValueInvalid")]
        )
    return value


class Bindings:
    """The binding subresource plus the allocation releaser (started on the first bind)."""

    def __init__(self, store: ObjectStore, clock: Callable[[], datetime], *, resync_period: float = 300.0) -> None:
        self.store = store
        self.clock = clock
        self.releaser = AllocationReleaser(store, resync_period=resync_period)

    def _infos(self) -> tuple[KindInfo, KindInfo]:
        reg = self.store.registry
        return reg.get("v1", "Pod"), reg.get("v1", "Node")

    async def bind(self, namespace: str, name: str, body: dict[str, Any], dry_run: bool = False) -> Status:
        """``POST /api/v1/namespaces/{ns}/pods/{name}/binding`` with a ``v1 Binding``."""
        pod_info, _ = self._infos()
        if body.get("kind") not in (None, "Binding"):
            raise errors.bad_request(f"expected a Binding, got kind {body.get('kind')!r}")
        target = body.get("target") or {}
        node = target.get("name")
        if not node or target.get("kind", "Node") != "Node":
            raise errors.invalid(pod_info, name, [("target.name", "Required value: a node name", "FieldValueRequired")])
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise errors.bad_request(f"the binding's name ({meta.get('name')}) does not match the pod ({name})")
        annotations = _annotations(pod_info, name, meta.get("annotations"))
        return await self.bind_many(namespace, [(name, meta.get("uid"), node, annotations)], dry_run)

    async def bind_gang(self, namespace: str, group: str, body: dict[str, Any], dry_run: bool = False) -> Status:
        """``POST /apis/scheduling.kray.io/v1alpha1/namespaces/{ns}/podgroups/{group}/binding``.

        Body: ``{"kind": "PodGroupBinding", "bindings": [{"podName", "podUID", "node"}, ...]}``.
        All members bind in one transaction or none does: two gangs racing from different
        scheduler shards can never both end up half placed.
        """
        pod_info, _ = self._infos()
        items = body.get("bindings")
        if body.get("kind") not in (None, "PodGroupBinding") or not isinstance(items, list) or not items:
            raise errors.bad_request("expected a PodGroupBinding with a non-empty bindings list")
        pairs = []
        for item in items:
            if not isinstance(item, dict) or not item.get("podName") or not item.get("node"):
                raise errors.invalid(
                    pod_info, group, [("bindings", "each needs podName and node", "FieldValueRequired")]
                )
            annotations = _annotations(pod_info, str(item["podName"]), item.get("annotations"))
            pairs.append((str(item["podName"]), item.get("podUID"), str(item["node"]), annotations))
        return await self.bind_many(namespace, pairs, dry_run)

    async def bind_many(
        self, namespace: str, pairs: list[tuple[str, str | None, str, dict[str, str]]], dry_run: bool = False
    ) -> Status:
        """Bind (pod name, expected uid or None, node, annotations to set) in ONE guarded transaction
        (``dry_run``: every check, then no transaction)."""
        pod_info, node_info = self._infos()
        await self.releaser.ensure_started()
        kv = self.store.kv
        pod_keys = [self.store.key(pod_info, namespace, name) for name, _, _, _ in pairs]
        nodes = sorted({node for _, _, node, _ in pairs})
        for _ in range(_RETRIES):
            # One read of everything, at one revision (one etcd round trip, not one per key).
            node_keys = [self.store.key(node_info, None, n) for n in nodes]
            reads = await kv.get_many([*pod_keys, *node_keys, *(allocation_key(n) for n in nodes)])
            pod_kvs, node_kvs, alloc_kvs = reads[: len(pairs)], reads[len(pairs) : -len(nodes)], reads[-len(nodes) :]
            allocs = {n: Allocation.load(n, a) for n, a in zip(nodes, alloc_kvs, strict=True)}
            capacity = {}
            for n, node_kv in zip(nodes, node_kvs, strict=True):
                if node_kv is None:
                    raise errors.not_found(node_info, n)
                capacity[n] = node_allocatable(from_json(node_kv.value))
            compares, puts = [], []
            for (name, uid, node, extra), key, pod_kv in zip(pairs, pod_keys, pod_kvs, strict=True):
                if pod_kv is None:
                    raise errors.not_found(pod_info, name)
                pod = from_json(pod_kv.value)
                pmeta, spec = pod.get("metadata") or {}, pod.setdefault("spec", {})
                if uid and uid != pmeta.get("uid"):
                    raise errors.conflict(pod_info, name, f"Precondition failed: UID in precondition: {uid}")
                if spec.get("nodeName"):
                    why = f'pod {name} is already assigned to node "{spec["nodeName"]}"'
                    raise errors.conflict(pod_info, name, why)
                if pmeta.get("deletionTimestamp"):
                    raise errors.conflict(pod_info, name, f"pod {name} is being deleted, cannot be assigned to a host")
                if extra:
                    pmeta["annotations"] = {**(pmeta.get("annotations") or {}), **extra}
                    pod["metadata"] = pmeta
                alloc, entry = allocs[node], allocation_entry(pod)
                reasons = alloc.misfit(entry["requests"], *capacity[node], entry.get("devices"))
                if reasons:
                    why = f"pod {namespace}/{name} does not fit: {'; '.join(reasons)}"
                    raise errors.conflict(node_info, node, why)
                alloc.pods[str(pmeta.get("uid") or key)] = entry  # later members see this one's share
                spec["nodeName"] = node
                self._mark_scheduled(pod)
                compares.append(Compare(key, pod_kv.mod_revision))
                puts.append((key, to_json(pod)))  # compact UTF-8, as the object store writes
            if dry_run:
                return Status(status="Success", code=201)
            for alloc in allocs.values():
                compares.append(alloc.guard())
                puts.append((alloc.guard().key, alloc.encode()))
            try:
                await kv.txn(compares, puts)
            except RevisionConflictError:
                continue  # another bind (or a pod write) won: re-read and decide again
            return Status(status="Success", code=201)
        raise errors.conflict(node_info, nodes[0], "too many concurrent bindings; try again")

    def _mark_scheduled(self, pod: dict[str, Any]) -> None:
        status = pod.setdefault("status", {})
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        cond = Condition(type="PodScheduled", status="True", last_transition_time=self.clock())
        conds.append(cond.model_dump(by_alias=True, exclude_none=True, mode="json"))
        status["conditions"] = conds

    def stop(self) -> None:
        self.releaser.stop()


class AllocationReleaser:
    """Keeps allocation records equal to the bound, non-terminal pods (see the module docstring)."""

    def __init__(self, store: ObjectStore, *, resync_period: float = 300.0) -> None:
        self.store = store
        self.resync_period = resync_period
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None

    @property
    def _pods_prefix(self) -> str:
        return self.store.prefix(self.store.registry.get("v1", "Pod"))

    async def ensure_started(self) -> None:
        """Start on first use, and wait for the first resync (so preset-nodeName pods count)."""
        if self._task is None or self._task.done():
            self._ready = asyncio.get_running_loop().create_future()
            self._task = asyncio.ensure_future(self._run())
        assert self._ready is not None
        await asyncio.shield(self._ready)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                revision = await self.resync()
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(None)
                await asyncio.wait_for(self._follow(revision), self.resync_period)
            except asyncio.TimeoutError:
                continue  # periodic full resync
            except asyncio.CancelledError:
                raise
            except CompactedError:
                continue
            except Exception:
                log.exception("allocation releaser failed; resyncing")
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(None)  # binds still work; records may over-count
                await asyncio.sleep(1.0)

    async def resync(self) -> int:
        """Recompute every record from the pods; returns the pod list's revision.

        Records are read BEFORE the pods: every entry was then written by a bind of a pod that
        existed by the pod read, so an entry whose pod is missing there was really deleted.
        Each rewrite is guarded by the record's mod revision: a bind in between wins.
        """
        kv = self.store.kv
        recs, _ = await kv.range(ALLOCATIONS_PREFIX)
        pods, revision = await kv.range(self._pods_prefix)
        records = {r.key[len(ALLOCATIONS_PREFIX) :]: Allocation.load(r.key[len(ALLOCATIONS_PREFIX) :], r) for r in recs}
        want: dict[str, dict[str, dict[str, Any]]] = {}
        for p in pods:
            pod = from_json(p.value)
            held = bound_share(pod)
            if held is not None:
                want.setdefault(held[0], {})[held[1]] = allocation_entry(pod)
        for node in set(records) | set(want):
            alloc = records.get(node) or Allocation(node)
            desired = want.get(node, {})
            fixed = {uid: alloc.pods.get(uid, e) for uid, e in desired.items()}
            if fixed != alloc.pods:
                new = Allocation(node, fixed, alloc.mod_revision)
                with contextlib.suppress(RevisionConflictError):
                    await kv.txn([alloc.guard()], [(alloc.guard().key, new.encode())])
        return revision

    async def _follow(self, revision: int) -> None:
        async for batch in self.store.kv.watch(self._pods_prefix, start_revision=revision + 1):
            for ev in batch:
                await self._on_event(ev.type, ev.kv, ev.prev_kv)

    async def _on_event(self, type_: str, kv: KeyValue, prev_kv: KeyValue | None) -> None:
        before = bound_share(from_json(prev_kv.value)) if prev_kv is not None else None
        if type_ == "DELETE":
            if before is not None:
                await self._modify(before[0], lambda a: a.pods.pop(before[1], None) is not None)
            return
        pod = from_json(kv.value)
        after = bound_share(pod)
        if before is not None and after is None:  # went terminal
            await self._modify(before[0], lambda a: a.pods.pop(before[1], None) is not None)
        elif after is not None and prev_kv is None:  # created with spec.nodeName preset
            entry = allocation_entry(pod)
            await self._modify(after[0], lambda a: a.pods.setdefault(after[1], entry) is entry)

    async def _modify(self, node: str, change: Callable[[Allocation], bool]) -> None:
        kv = self.store.kv
        for _ in range(_RETRIES):
            alloc = Allocation.load(node, await kv.get(allocation_key(node)))
            if not change(alloc):
                return  # already as wanted: idempotent
            try:
                await kv.txn([alloc.guard()], [(alloc.guard().key, alloc.encode())])
                return
            except RevisionConflictError:
                continue
        log.warning("allocation of node %s: gave up after %d conflicts; the resync will fix it", node, _RETRIES)


__all__ = [
    "ALLOCATIONS_PREFIX",
    "DEFAULT_MAX_PODS",
    "Allocation",
    "AllocationReleaser",
    "Bindings",
    "allocation_entry",
    "allocation_key",
    "bound_share",
    "milli",
    "node_allocatable",
    "pod_requests",
    "read_allocation",
]
