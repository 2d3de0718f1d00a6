"""The scheduling loop: a serial scheduling cycle per pod, then a binding cycle.

Scheduling cycle (sync, no awaits, so the snapshot cannot change under it): pop -> PreFilter ->
Filter over nodes (stopping after enough feasible ones) -> PostFilter if none -> PreScore/Score ->
pick the best node -> assume into the cache -> Reserve -> Permit. Binding cycle (async): PreBind
-> Bind through the Binder port; on failure Unreserve, forget the assumed pod, and requeue.

Informer events come in through the ``on_*`` methods; the actor wrapping this class feeds them
from watches. Nothing here does I/O except through the ports.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kray.crds import Node, Pod
from kray.crds.core.storage import PersistentVolume, PersistentVolumeClaim, StorageClass
from kray.crds.devices import NodeDevices
from kray.crds.scheduling import PodGroup

from .cache import SchedulerCache, Snapshot
from .cycle_state import CycleState, bind_annotations
from .devices import DeviceTopology
from .framework import Framework
from .node_info import NodeInfo
from .pod_info import PodInfo, pod_key
from .ports import Binder, Clock, Evictor, StatusReporter, SystemClock
from .profile import Profile
from .queue import (
    NODE_ADD,
    NODE_DELETE,
    NODE_DEVICES_CHANGE,
    NODE_UPDATE,
    POD_ADD,
    POD_DELETE,
    POD_GROUP_ADD,
    PV_ADD,
    PV_DELETE,
    PV_UPDATE,
    PVC_ADD,
    PVC_DELETE,
    PVC_UPDATE,
    STORAGE_CLASS_ADD,
    STORAGE_CLASS_DELETE,
    STORAGE_CLASS_UPDATE,
    UNSCHEDULED_POD_ADD,
    ClusterEvent,
    QueuedPodInfo,
    SchedulingQueue,
)
from .sharding import Shard
from .status import Code, Status
from .volumes import VolumeClient

# Binds (pod, node, annotations) all-or-nothing (a gang); see ``Scheduler.bind_gang``.
GangMember = tuple[Pod, str, dict[str, str]]
GangBind = Callable[[list[GangMember]], Awaitable[Status]]

MIN_FEASIBLE_NODES = 100
MIN_PERCENTAGE = 5


@dataclass
class Binding:
    """A pod through Permit, ready for its binding cycle."""

    queued: QueuedPodInfo
    cycle: int
    state: CycleState
    node_name: str


def fit_error_message(total: int, statuses: dict[str, Status], pre_filter: str = "") -> str:
    """``0/5 nodes are available: 3 Insufficient nvidia.com/gpu, 2 node(s) had untolerated taint {gpu: bad}.``

    A node with several reasons counts under each; most common first, then alphabetical.
    """
    if pre_filter:
        return f"0/{total} nodes are available: {pre_filter}."
    counts = Counter(r for s in statuses.values() for r in s.reasons)
    parts = [f"{n} {reason}" for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return f"0/{total} nodes are available: {', '.join(parts)}." if parts else f"0/{total} nodes are available."


class Scheduler:
    def __init__(
        self,
        binder: Binder,
        reporter: StatusReporter | None = None,
        clock: Clock | None = None,
        profile: Profile | None = None,
        shard: Shard | None = None,
        evictor: Evictor | None = None,
        seed: int | None = None,
        profiles: list[Profile] | None = None,
        volume_client: VolumeClient | None = None,
    ) -> None:
        self.clock = clock or SystemClock()
        # One framework per profile, all over one cache and queue (kube-scheduler's profiles): a
        # pod goes through the framework its spec.schedulerName names; other pods are not ours.
        self.profiles = {p.scheduler_name: p for p in profiles or [profile or Profile.default()]}
        self.profile = next(iter(self.profiles.values()))
        self.shard = shard or Shard()
        self.reporter, self.evictor = reporter, evictor
        self.cache = SchedulerCache(self.clock)
        self.snapshot = Snapshot()
        self.frameworks = {
            name: p.build(Framework(self.cache, self.snapshot, self.clock, binder, volume_client))
            for name, p in self.profiles.items()
        }
        self.framework = self.frameworks[self.profile.scheduler_name]
        self._group_since: dict[str, float] = {}
        events: dict[str, list[ClusterEvent]] = {}
        for fw in self.frameworks.values():
            for plugin, registered in fw.events_to_register().items():
                events.setdefault(plugin, []).extend(e for e in registered if e not in events.get(plugin, []))
        self.queue = SchedulingQueue(self.clock, events, sort_key=self._sort_key)
        self._waiting: dict[str, tuple[QueuedPodInfo, int]] = {}
        self._next_start = 0
        self._rng = random.Random(seed)

    def _sort_key(self, q: QueuedPodInfo) -> tuple:
        # Gang members sort together (by when the gang was first seen) so they reserve back to back.
        gk = q.info.group_key
        since = self._group_since.get(gk, q.timestamp) if gk else q.timestamp
        return (-q.info.priority, since, gk or "", q.timestamp)

    # --- informer events --------------------------------------------------------------------
    def on_node_add(self, node: Node) -> None:
        self.cache.add_node(node)
        self.queue.move_all_to_active_or_backoff(NODE_ADD)

    def on_node_update(self, node: Node) -> None:
        self.cache.update_node(node)
        self.queue.move_all_to_active_or_backoff(NODE_UPDATE)

    def on_node_delete(self, name: str) -> None:
        self.cache.remove_node(name)
        self.queue.move_all_to_active_or_backoff(NODE_DELETE)

    def on_node_devices(self, nd: NodeDevices) -> None:
        if self.cache.set_node_devices(nd.spec.node_name, DeviceTopology.of(nd)):
            self.queue.move_all_to_active_or_backoff(NODE_DEVICES_CHANGE)

    def on_node_devices_delete(self, nd: NodeDevices) -> None:
        if self.cache.set_node_devices(nd.spec.node_name, None):
            self.queue.move_all_to_active_or_backoff(NODE_DEVICES_CHANGE)

    def on_pvc_add(self, pvc: PersistentVolumeClaim) -> None:
        self.cache.volumes.set_pvc(pvc)
        self.queue.move_all_to_active_or_backoff(PVC_ADD)

    def on_pvc_update(self, pvc: PersistentVolumeClaim) -> None:
        self.cache.volumes.set_pvc(pvc)
        self.queue.move_all_to_active_or_backoff(PVC_UPDATE)

    def on_pvc_delete(self, pvc: PersistentVolumeClaim) -> None:
        self.cache.volumes.delete_pvc(pvc)
        self.queue.move_all_to_active_or_backoff(PVC_DELETE)

    def on_pv_add(self, pv: PersistentVolume) -> None:
        self.cache.volumes.set_pv(pv)
        self.queue.move_all_to_active_or_backoff(PV_ADD)

    def on_pv_update(self, pv: PersistentVolume) -> None:
        self.cache.volumes.set_pv(pv)
        self.queue.move_all_to_active_or_backoff(PV_UPDATE)

    def on_pv_delete(self, pv: PersistentVolume) -> None:
        self.cache.volumes.delete_pv(pv)
        self.queue.move_all_to_active_or_backoff(PV_DELETE)

    def on_storage_class_add(self, sc: StorageClass) -> None:
        self.cache.volumes.set_class(sc)
        self.queue.move_all_to_active_or_backoff(STORAGE_CLASS_ADD)

    def on_storage_class_update(self, sc: StorageClass) -> None:
        self.cache.volumes.set_class(sc)
        self.queue.move_all_to_active_or_backoff(STORAGE_CLASS_UPDATE)

    def on_storage_class_delete(self, sc: StorageClass) -> None:
        self.cache.volumes.delete_class(sc)
        self.queue.move_all_to_active_or_backoff(STORAGE_CLASS_DELETE)

    def responsible_for(self, pod: Pod) -> bool:
        return pod.spec.scheduler_name in self.frameworks and self.shard.owns(pod)

    def framework_for(self, pod: PodInfo) -> Framework:
        return self.frameworks.get(pod.pod.spec.scheduler_name) or self.framework

    def on_pod_add(self, pod: Pod) -> None:
        if pod.spec.node_name:
            key = pod_key(pod)
            self.queue.delete(key)
            self.cache.add_pod(pod)  # confirms our own assumed pod, or records another shard's
            self.queue.move_all_to_active_or_backoff(POD_ADD)
            return
        info = PodInfo.of(pod)
        self.cache.note_pod(info)
        if not self.responsible_for(pod):
            return
        if info.group_key:
            self._group_since.setdefault(info.group_key, self.clock.now())
        if info.key in self._waiting or self.cache.is_assumed(info.key):
            return  # in flight: the update is picked up after the bind
        self.queue.add(info)
        if info.group_key:
            self.queue.move_all_to_active_or_backoff(UNSCHEDULED_POD_ADD)

    on_pod_update = on_pod_add

    def on_pod_delete(self, pod: Pod) -> None:
        info = PodInfo.of(pod)
        self.queue.delete(info.key)
        self.cache.drop_pod(info)
        wp = self.framework_for(info).get_waiting_pod(info.key)
        if wp is not None:
            wp.reject("", "pod deleted")
        if self.cache.node_of(info.key) is not None:
            self.cache.remove_pod(info.key)
            self.queue.move_all_to_active_or_backoff(POD_DELETE)

    def on_pod_group_add(self, group: PodGroup) -> None:
        self.cache.add_pod_group(group)
        self.queue.move_all_to_active_or_backoff(POD_GROUP_ADD)

    # --- scheduling cycle -------------------------------------------------------------------
    def schedule_one(self) -> list[Binding]:
        """One scheduling cycle (if a pod is ready). Returns the pods now ready to bind."""
        ready = self._collect_waiting()
        self.cache.cleanup_expired()
        q = self.queue.pop()
        if q is None:
            return ready
        cycle, pod = self.queue.scheduling_cycle, q.info
        self.cache.update_snapshot(self.snapshot)
        state, fw = CycleState(), self.framework_for(pod)
        node_name, status, statuses = self._schedule_pod(fw, state, pod)
        if node_name is None:
            if status.rejected:
                result, post = fw.run_post_filter(state, pod, statuses)
                if post.ok and result is not None and result.nominated_node:
                    self._preempt(pod, result.victims)
            self._fail(q, cycle, status, statuses)
            return ready + self._collect_waiting()
        self.cache.assume_pod(pod, node_name)
        status = fw.run_reserve(state, pod, node_name)
        if status.ok:
            status = fw.run_permit(state, pod, node_name)
        if status.code is Code.WAIT:
            self._waiting[pod.key] = (q, cycle)
        elif status.ok:
            ready.append(Binding(q, cycle, state, node_name))
        else:
            self._unreserve_and_fail(q, cycle, state, node_name, status)
        return ready + self._collect_waiting()

    def _schedule_pod(
        self, fw: Framework, state: CycleState, pod: PodInfo
    ) -> tuple[str | None, Status, dict[str, Status]]:
        snap = self.snapshot
        total = len(snap.node_list)
        if total == 0:
            return None, Status.unschedulable("no nodes available to schedule pods"), {}
        status = fw.run_pre_filter(state, pod)
        if not status.ok:
            return None, status, {}
        feasible, statuses = self._find_feasible(fw, state, pod)
        errors = [s for s in statuses.values() if s.code is Code.ERROR]
        if errors:
            return None, errors[0], statuses
        if not feasible:
            return None, Status.unschedulable(fit_error_message(total, statuses)), statuses
        if len(feasible) == 1:
            return feasible[0].name, Status(), statuses
        status = fw.run_pre_score(state, pod, feasible)
        if not status.ok:
            return None, status, statuses
        scores = fw.run_score(state, pod, feasible)
        if isinstance(scores, Status):
            return None, scores, statuses
        return self._select_host(scores), Status(), statuses

    def num_feasible_to_find(self, total: int, profile: Profile | None = None) -> int:
        if total < MIN_FEASIBLE_NODES:
            return total
        pct = (profile or self.profile).percentage_of_nodes_to_score
        if pct is None:
            pct = max(50 - total // 125, MIN_PERCENTAGE)
        if pct >= 100:
            return total
        return max(total * pct // 100, MIN_FEASIBLE_NODES)

    def _find_feasible(
        self, fw: Framework, state: CycleState, pod: PodInfo
    ) -> tuple[list[NodeInfo], dict[str, Status]]:
        snap = self.snapshot
        filters = fw.filters(state)
        run = fw.run_filters
        if pod.node_name:  # NodeName: only one node can do, don't walk the rest
            node = snap.get(pod.node_name)
            nodes, start = ([node] if node else []), 0
        else:
            nodes, start = snap.node_list, self._next_start % len(snap.node_list)
        n, want = len(nodes), self.num_feasible_to_find(len(nodes), self.profiles.get(pod.pod.spec.scheduler_name))
        feasible: list[NodeInfo] = []
        statuses: dict[str, Status] = {}
        seen = 0
        for i in range(n):
            node = nodes[(start + i) % n]
            seen += 1
            s = run(filters, state, pod, node)
            if s.code is Code.SUCCESS:
                feasible.append(node)
                if len(feasible) >= want:
                    break
            else:
                statuses[node.name] = s
                if s.code is Code.ERROR:
                    break
        if not pod.node_name:
            # Next pod starts where this one stopped, so all nodes get looked at over time.
            self._next_start = (start + seen) % n
        return feasible, statuses

    def _select_host(self, scores: dict[str, int]) -> str:
        best, best_score, ties = "", -1, 0
        for name, score in scores.items():
            if score > best_score:
                best, best_score, ties = name, score, 1
            elif score == best_score:
                ties += 1  # reservoir sampling: each tied node equally likely
                if self._rng.randrange(ties) == 0:
                    best = name
        return best

    def _preempt(self, pod: PodInfo, victims: list[PodInfo]) -> None:
        if self.evictor is None:
            return
        for v in victims:
            self.evictor.evict(v.pod, f"preempted by {pod.key}")

    # --- permit / binding -------------------------------------------------------------------
    def _collect_waiting(self) -> list[Binding]:
        out: list[Binding] = []
        # Rejecting one waiting pod can reject its siblings (Coscheduling's Unreserve): loop.
        while done := [wp for fw in self.frameworks.values() for wp in fw.take_finished_waiting()]:
            for wp in done:
                entry = self._waiting.pop(wp.pod.key, None)
                if entry is None:
                    continue
                q, cycle = entry
                if wp.rejection is not None:
                    self._unreserve_and_fail(q, cycle, wp.state, wp.node_name, wp.rejection)
                else:
                    out.append(Binding(q, cycle, wp.state, wp.node_name))
        return out

    async def bind(self, b: Binding) -> Status:
        pod = b.queued.info
        fw = self.framework_for(pod)
        status = await fw.run_pre_bind(b.state, pod, b.node_name)
        if status.ok:
            status = await fw.run_bind(b.state, pod, b.node_name)
        if status.ok:
            self.cache.finish_binding(pod.key)
            if self.reporter is not None:
                self.reporter.scheduled(pod.pod, b.node_name)
            return status
        self._unreserve_and_fail(b.queued, b.cycle, b.state, b.node_name, status)
        # The assumed pod's resources are free again: others may fit now.
        self.queue.move_all_to_active_or_backoff(POD_DELETE)
        return status

    async def bind_gang(self, bindings: list[Binding], bind: GangBind) -> Status:
        """Bind permitted gang members together: ``bind`` commits all of them or none (one etcd
        transaction), so gangs racing from different shards can never both end up half placed.
        Bind plugins are bypassed: the gang binder is the binding."""
        fw, status = self.framework_for(bindings[0].queued.info), Status()
        for b in bindings:
            status = await fw.run_pre_bind(b.state, b.queued.info, b.node_name)
            if not status.ok:
                break
        if status.ok:
            status = await bind([(b.queued.info.pod, b.node_name, bind_annotations(b.state)) for b in bindings])
        if status.ok:
            for b in bindings:
                self.cache.finish_binding(b.queued.info.key)
                if self.reporter is not None:
                    self.reporter.scheduled(b.queued.info.pod, b.node_name)
            return status
        for b in bindings:
            self._unreserve_and_fail(b.queued, b.cycle, b.state, b.node_name, status)
        self.queue.move_all_to_active_or_backoff(POD_DELETE)
        return status

    async def step(self) -> bool:
        """One scheduling cycle plus the binding cycles it made ready. False when idle."""
        bindings = self.schedule_one()
        if bindings:
            await asyncio.gather(*(self.bind(b) for b in bindings))
        return bool(bindings) or bool(self.queue.active)

    async def run_until_idle(self, max_steps: int = 1_000_000) -> int:
        steps = 0
        while steps < max_steps and await self.step():
            steps += 1
        return steps

    # --- failures ---------------------------------------------------------------------------
    def _unreserve_and_fail(
        self, q: QueuedPodInfo, cycle: int, state: CycleState, node_name: str, status: Status
    ) -> None:
        self.framework_for(q.info).run_unreserve(state, q.info, node_name)
        self.cache.forget_pod(q.info.key)
        self._fail(q, cycle, status, {})

    def _fail(self, q: QueuedPodInfo, cycle: int, status: Status, statuses: dict[str, Status]) -> None:
        if status.rejected:
            plugins = {s.plugin for s in statuses.values() if s.plugin}
            if status.plugin:
                plugins.add(status.plugin)
            q.unschedulable_plugins = plugins or {"*"}
            reason = "Unschedulable"
        else:
            q.unschedulable_plugins = set()
            reason = "SchedulerError"
        if status.plugin and status.rejected and not status.message.startswith("0/"):
            total = len(self.snapshot.node_list)
            message = fit_error_message(total, statuses, status.message) if not statuses else status.message
        else:
            message = status.message
        self.queue.add_unschedulable(q, cycle)
        if self.reporter is not None:
            self.reporter.unschedulable(q.info.pod, reason, message)
