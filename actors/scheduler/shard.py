"""One scheduler shard as a plain class: informers in, scheduling cycles, concurrent bindings out.

``ShardCore`` is handed its ports (list-watchers for Pods, Nodes and PodGroups; a Binder; a
StatusReporter; an Evictor; a clock) and feeds informer events into ``Scheduler``. Scheduling
cycles run one at a time on the loop (they are synchronous: the snapshot cannot change under
one); binding cycles run as asyncio tasks, so a slow API round trip never stalls the next
cycle. Each shard owns the pods with ``shard_of(pod, count) == index`` but sees every bound pod,
so its cache knows the whole cluster's load; the API server's binding transaction settles the
races between shards (a lost race is a failed bind: the pod is unreserved and requeued).

State is only a cache of the API: a shard that dies is restarted (by ``run()`` in-process, by
Ray for the actor) and rebuilds itself from list + watch. ``reshard(count)`` re-hashes the
pending pods when the number of shards changes, so each pod is picked up by its new owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from kray.actors.framework.informer import FuncHandler, Informer
from kray.actors.framework.ports import ListWatcher
from kray.crds import Node, Pod
from kray.crds.core.storage import PersistentVolume, PersistentVolumeClaim, StorageClass
from kray.crds.devices import NodeDevices
from kray.crds.meta import Resource
from kray.crds.registry import REGISTRY
from kray.crds.scheduling import PodGroup

from .ports import Binder, Clock, Evictor, StatusReporter
from .profile import Profile
from .scheduler import Binding, Scheduler
from .sharding import Shard
from .volumes import VolumeClient

log = logging.getLogger(__name__)

_TERMINAL = ("Succeeded", "Failed")


def _node_signature(node: Node) -> tuple[Any, ...]:
    """What scheduling depends on; a heartbeat that changes nothing here is not an event."""
    status = node.status
    ready = node.is_ready()
    alloc = dict((status.allocatable or status.capacity or {}) if status else {})
    taints = tuple((t.key, t.value, t.effect) for t in node.spec.taints or ())
    images = frozenset(n for img in (status.images if status else None) or [] for n in img.names or [])
    return (dict(node.metadata.labels or {}), taints, bool(node.spec.unschedulable), alloc, ready, images)


class ShardCore:
    def __init__(
        self,
        index: int,
        count: int,
        *,
        pods: ListWatcher,
        nodes: ListWatcher,
        pod_groups: ListWatcher | None,
        binder: Binder,
        node_devices: ListWatcher | None = None,
        pvcs: ListWatcher | None = None,
        pvs: ListWatcher | None = None,
        storage_classes: ListWatcher | None = None,
        volume_client: VolumeClient | None = None,
        reporter: StatusReporter | None = None,
        evictor: Evictor | None = None,
        clock: Clock | None = None,
        profile: Profile | None = None,
        profiles: list[Profile] | None = None,
        seed: int | None = None,
        max_binds: int = 256,
        idle_tick: float = 0.05,
        restart_delay: float = 1.0,
    ) -> None:
        self.shard = Shard(index, count)
        self.pods_lw, self.nodes_lw, self.groups_lw = pods, nodes, pod_groups
        self.devices_lw = node_devices
        # PVCs, PVs and StorageClasses for VolumeBinding; the client writes its PreBind updates.
        self.volume_lws = (pvcs, pvs, storage_classes)
        self.volume_client = volume_client
        self.binder, self.reporter, self.evictor = binder, reporter, evictor
        self.clock, self.profile, self.profiles, self.seed = clock, profile, profiles, seed
        self.max_binds = max_binds
        self.idle_tick = idle_tick
        self.restart_delay = restart_delay
        self.bound = 0
        self.bind_failures = 0
        self.restarts = 0
        self.scheduler = self._new_scheduler()
        self.informers: list[Informer] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._node_sigs: dict[str, tuple[Any, ...]] = {}

    def _new_scheduler(self) -> Scheduler:
        return Scheduler(
            self.binder,
            self.reporter,
            clock=self.clock,
            profile=self.profile,
            shard=self.shard,
            evictor=self.evictor,
            seed=self.seed,
            profiles=self.profiles,
            volume_client=self.volume_client,
        )

    # ---- informer events -------------------------------------------------------------------

    def _wakeup(self) -> None:
        self._wake.set()

    def _pod_changed(self, pod: Resource) -> None:
        assert isinstance(pod, Pod)
        phase = pod.status.phase if pod.status else None
        if phase in _TERMINAL or (not pod.spec.node_name and pod.metadata.deletion_timestamp is not None):
            # Ended pods hold nothing; an unbound pod being deleted must not be placed.
            self.scheduler.on_pod_delete(pod)
        else:
            self.scheduler.on_pod_update(pod)
        self._wakeup()

    def _pod_updated(self, old: Resource, pod: Resource) -> None:
        assert isinstance(old, Pod) and isinstance(pod, Pod)
        node = pod.spec.node_name
        phase = pod.status.phase if pod.status else None
        if node and node == old.spec.node_name and phase not in _TERMINAL:
            # A bound pod's status moved (the kubelet marked it Running): its share of the node
            # is unchanged, so no pending pod could fit now that did not before. Requeueing them
            # all on every such update would only burn cycles.
            self.scheduler.cache.update_pod(pod)
            return
        self._pod_changed(pod)

    def _pod_deleted(self, pod: Resource) -> None:
        assert isinstance(pod, Pod)
        self.scheduler.on_pod_delete(pod)
        self._wakeup()

    def _node_added(self, node: Resource) -> None:
        assert isinstance(node, Node)
        self._node_sigs[node.metadata.name or ""] = _node_signature(node)
        self.scheduler.on_node_add(node)
        self._wakeup()

    def _node_updated(self, old: Resource, node: Resource) -> None:
        assert isinstance(node, Node)
        sig = _node_signature(node)
        name = node.metadata.name or ""
        if self._node_sigs.get(name) == sig:
            return
        self._node_sigs[name] = sig
        self.scheduler.on_node_update(node)
        self._wakeup()

    def _node_deleted(self, node: Resource) -> None:
        name = node.metadata.name or ""
        self._node_sigs.pop(name, None)
        self.scheduler.on_node_delete(name)
        self._wakeup()

    def _devices_changed(self, nd: Resource) -> None:
        assert isinstance(nd, NodeDevices)
        self.scheduler.on_node_devices(nd)  # a no-op update (same inventory) requeues nothing
        self._wakeup()

    def _devices_deleted(self, nd: Resource) -> None:
        assert isinstance(nd, NodeDevices)
        self.scheduler.on_node_devices_delete(nd)
        self._wakeup()

    def _volume_handler(self, kind: str) -> FuncHandler:
        """Informer callbacks feeding ``Scheduler.on_<kind>_{add,update,delete}``."""

        def added(obj: Resource) -> None:
            getattr(self.scheduler, f"on_{kind}_add")(obj)
            self._wakeup()

        def updated(_old: Resource, obj: Resource) -> None:
            getattr(self.scheduler, f"on_{kind}_update")(obj)
            self._wakeup()

        def deleted(obj: Resource) -> None:
            getattr(self.scheduler, f"on_{kind}_delete")(obj)
            self._wakeup()

        return FuncHandler(added, updated, deleted)

    def _group_changed(self, group: Resource) -> None:
        assert isinstance(group, PodGroup)
        self.scheduler.on_pod_group_add(group)
        self._wakeup()

    def _group_deleted(self, group: Resource) -> None:
        assert isinstance(group, PodGroup)
        self.scheduler.cache.remove_pod_group(group)

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self, sync_timeout: float | None = 60.0) -> None:
        """Start the informers and wait until nodes, groups and pods are listed."""
        self.scheduler = self._new_scheduler()
        self._node_sigs.clear()
        nodes = Informer(self.nodes_lw, REGISTRY.get("v1", "Node"))
        nodes.add_handler(
            FuncHandler(self._node_added, self._node_updated, self._node_deleted)  # type: ignore[arg-type]
        )
        self.informers = [nodes]
        if self.devices_lw is not None:
            devices = Informer(
                self.devices_lw, REGISTRY.get(f"{NodeDevices.GROUP}/{NodeDevices.VERSION}", "NodeDevices")
            )
            devices.add_handler(
                FuncHandler(self._devices_changed, lambda _o, n: self._devices_changed(n), self._devices_deleted)
            )
            self.informers.append(devices)
        groups_lw = self.groups_lw
        if groups_lw is not None:
            groups = Informer(groups_lw, REGISTRY.get(f"{PodGroup.GROUP}/{PodGroup.VERSION}", "PodGroup"))
            groups.add_handler(
                FuncHandler(self._group_changed, lambda _o, n: self._group_changed(n), self._group_deleted)
            )
            self.informers.append(groups)
        volume_kinds: tuple[tuple[str, type[Resource]], ...] = (
            ("pvc", PersistentVolumeClaim),
            ("pv", PersistentVolume),
            ("storage_class", StorageClass),
        )
        for lw, (kind, cls) in zip(self.volume_lws, volume_kinds, strict=True):
            if lw is not None:
                informer = Informer(lw, REGISTRY.get(cls.api_version_str(), cls.KIND))
                informer.add_handler(self._volume_handler(kind))
                self.informers.append(informer)
        pods = Informer(self.pods_lw, REGISTRY.get("v1", "Pod"))
        pods.add_handler(FuncHandler(self._pod_changed, self._pod_updated, self._pod_deleted))
        self.informers.append(pods)
        # Nodes, devices, groups and volumes first: pods listed before any node would all fail "0/0 nodes",
        # and bound pods' GPU annotations must land on a known inventory.
        for informer in self.informers:
            informer.start()
            if not await informer.wait_for_sync(sync_timeout):
                raise TimeoutError(f"{informer!r} did not sync in {sync_timeout}s")

    async def stop(self) -> None:
        for informer in self.informers:
            await informer.stop()
        self.informers = []
        tasks, self._inflight = list(self._inflight), set()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    def reshard(self, count: int) -> None:
        """The number of shards changed: re-hash every pending pod we know about."""
        if count == self.shard.count:
            return
        self.shard = Shard(self.shard.index, count)
        self.scheduler.shard = self.shard
        pods = self.informers[-1].cache.list() if self.informers else []
        for pod in pods:
            assert isinstance(pod, Pod)
            if pod.spec.node_name:
                continue
            if self.shard.owns(pod):
                self._pod_changed(pod)
            else:
                self.scheduler.queue.delete(f"{pod.metadata.namespace or 'default'}/{pod.metadata.name}")
        self._wakeup()

    # ---- the loop --------------------------------------------------------------------------

    async def _bind(self, b: Binding) -> None:
        status = await self.scheduler.bind(b)
        if status.ok:
            self.bound += 1
        else:
            self.bind_failures += 1
        self._wakeup()

    async def _bind_gang(self, bindings: list[Binding]) -> None:
        status = await self.scheduler.bind_gang(bindings, self.binder.bind_gang)  # type: ignore[attr-defined]
        if status.ok:
            self.bound += len(bindings)
        else:
            self.bind_failures += 1
        self._wakeup()

    def _jobs(self, bindings: list[Binding]) -> list[Any]:
        """One binding cycle per pod, except gang members permitted together: one cycle per gang."""
        gangs: dict[str, list[Binding]] = {}
        jobs: list[Any] = []
        for b in bindings:
            gk = b.queued.info.group_key
            if gk is not None and hasattr(self.binder, "bind_gang"):
                gangs.setdefault(gk, []).append(b)
            else:
                jobs.append(self._bind(b))
        for members in gangs.values():
            jobs.append(self._bind_gang(members) if len(members) > 1 else self._bind(members[0]))
        return jobs

    def _spawn(self, bindings: list[Binding]) -> None:
        for job in self._jobs(bindings):
            task = asyncio.ensure_future(job)
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def step(self) -> bool:
        """One scheduling cycle and the bindings it made ready, awaited (tests). False if idle."""
        bindings = self.scheduler.schedule_one()
        if bindings:
            await asyncio.gather(*self._jobs(bindings))
        return bool(bindings) or bool(self.scheduler.queue.active)

    async def run_until_idle(self, max_steps: int = 100_000) -> int:
        steps = 0
        while steps < max_steps and await self.step():
            steps += 1
        return steps

    async def _loop(self) -> None:
        sched = self.scheduler
        while True:
            if len(self._inflight) >= self.max_binds:
                await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
            bindings = sched.schedule_one()
            self._spawn(bindings)
            if bindings or sched.queue.active:
                await asyncio.sleep(0)  # let watch events and binding replies in between cycles
                continue
            # Idle: sleep until an event, or a tick (back-offs and Permit timeouts expire by time).
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for loses a cancel that lands just as
            # the wake comes, and the shard then never stops (a stop or test teardown hangs).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.idle_tick):
                    await self._wake.wait()

    async def run(self) -> None:
        """Schedule until cancelled. Never dies: any failure restarts from list + watch."""
        while True:
            try:
                await self.start()
                await self._loop()
            except asyncio.CancelledError:
                await self.stop()
                raise
            except Exception:
                log.exception("scheduler shard %d/%d failed; rebuilding", self.shard.index, self.shard.count)
            self.restarts += 1
            await self.stop()
            await asyncio.sleep(self.restart_delay)

    def stats(self) -> dict[str, Any]:
        q = self.scheduler.queue
        return {
            "shard": self.shard.index,
            "shards": self.shard.count,
            "bound": self.bound,
            "bind_failures": self.bind_failures,
            "restarts": self.restarts,
            "active": len(q.active),
            "backoff": len(q.backoff),
            "unschedulable": len(q.unschedulable),
            "in_flight": len(self._inflight),
            "nodes": len(self.scheduler.cache.nodes) if hasattr(self.scheduler.cache, "nodes") else None,
            # The reporter's "Scheduled" events: on or off, written, dropped (queue full), failed.
            "events": report() if callable(report := getattr(self.reporter, "stats", None)) else None,
        }
