"""kube-scheduler's scheduling queue: activeQ, backoffQ and unschedulable pods.

- activeQ: a heap, highest priority first, then oldest. ``pop`` takes from here.
- backoffQ: pods that failed recently wait out an exponential back-off (1 s, 2 s, ... 10 s).
- unschedulable: pods no node could take. They stay until a cluster event that could help them
  (one their rejecting plugins registered for) moves them out, or for at most 5 minutes.

A pod that failed while an event arrived mid-cycle goes to backoffQ rather than unschedulable,
so the event is not lost (kube's moveRequestCycle).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntFlag

from .pod_info import PodInfo
from .ports import Clock


class ActionType(IntFlag):
    ADD = 1
    DELETE = 2
    UPDATE = 4
    ALL = ADD | DELETE | UPDATE


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    # "Node", "Pod" (assigned pods), "PodGroup", "PersistentVolumeClaim", "PersistentVolume",
    # "StorageClass", or "*"
    resource: str
    action: ActionType
    label: str = ""

    def matches(self, happened: ClusterEvent) -> bool:
        return (self.resource in ("*", happened.resource)) and bool(self.action & happened.action)


NODE_ADD = ClusterEvent("Node", ActionType.ADD, "NodeAdd")
NODE_UPDATE = ClusterEvent("Node", ActionType.UPDATE, "NodeUpdate")
NODE_DELETE = ClusterEvent("Node", ActionType.DELETE, "NodeDelete")
POD_ADD = ClusterEvent("Pod", ActionType.ADD, "AssignedPodAdd")
POD_UPDATE = ClusterEvent("Pod", ActionType.UPDATE, "AssignedPodUpdate")
POD_DELETE = ClusterEvent("Pod", ActionType.DELETE, "AssignedPodDelete")
UNSCHEDULED_POD_ADD = ClusterEvent("UnscheduledPod", ActionType.ADD, "UnscheduledPodAdd")
POD_GROUP_ADD = ClusterEvent("PodGroup", ActionType.ADD | ActionType.UPDATE, "PodGroupChange")
NODE_DEVICES_CHANGE = ClusterEvent("NodeDevices", ActionType.ALL, "NodeDevicesChange")
PVC_ADD = ClusterEvent("PersistentVolumeClaim", ActionType.ADD, "PvcAdd")
PVC_UPDATE = ClusterEvent("PersistentVolumeClaim", ActionType.UPDATE, "PvcUpdate")
PVC_DELETE = ClusterEvent("PersistentVolumeClaim", ActionType.DELETE, "PvcDelete")
PV_ADD = ClusterEvent("PersistentVolume", ActionType.ADD, "PvAdd")
PV_UPDATE = ClusterEvent("PersistentVolume", ActionType.UPDATE, "PvUpdate")
PV_DELETE = ClusterEvent("PersistentVolume", ActionType.DELETE, "PvDelete")
STORAGE_CLASS_ADD = ClusterEvent("StorageClass", ActionType.ADD, "StorageClassAdd")
STORAGE_CLASS_UPDATE = ClusterEvent("StorageClass", ActionType.UPDATE, "StorageClassUpdate")
STORAGE_CLASS_DELETE = ClusterEvent("StorageClass", ActionType.DELETE, "StorageClassDelete")
WILDCARD = ClusterEvent("*", ActionType.ALL, "UnschedulableTimeout")


@dataclass(eq=False, slots=True)
class QueuedPodInfo:
    info: PodInfo
    timestamp: float  # when it (re)entered the queue: orders equal-priority pods
    initial_attempt: float | None = None
    attempts: int = 0
    unschedulable_plugins: set[str] = field(default_factory=set)
    unschedulable_since: float = 0.0
    seq: int = 0

    @property
    def key(self) -> str:
        return self.info.key


SortKey = Callable[[QueuedPodInfo], tuple]


def priority_sort(q: QueuedPodInfo) -> tuple:
    return (-q.info.priority, q.timestamp)


class SchedulingQueue:
    def __init__(
        self,
        clock: Clock,
        plugin_events: dict[str, list[ClusterEvent]] | None = None,
        initial_backoff: float = 1.0,
        max_backoff: float = 10.0,
        max_unschedulable: float = 300.0,
        sort_key: SortKey = priority_sort,
    ) -> None:
        self.clock = clock
        self.plugin_events = plugin_events or {}
        self.initial_backoff, self.max_backoff = initial_backoff, max_backoff
        self.max_unschedulable = max_unschedulable
        self.sort_key = sort_key
        self._seq = itertools.count()
        self._active_heap: list[tuple[tuple, int, QueuedPodInfo]] = []
        self.active: dict[str, QueuedPodInfo] = {}
        self._backoff_heap: list[tuple[float, int, QueuedPodInfo]] = []
        self.backoff: dict[str, QueuedPodInfo] = {}
        self.unschedulable: dict[str, QueuedPodInfo] = {}
        self.scheduling_cycle = 0
        self._move_request_cycle = -1

    # --- adding and removing ----------------------------------------------------------------
    def add(self, info: PodInfo) -> None:
        """A new pending pod, or an update to one already queued."""
        if self.update(info):
            return
        self._push_active(QueuedPodInfo(info, self.clock.now()))

    def update(self, info: PodInfo) -> bool:
        """Swap in the new object. An unschedulable pod that changed gets another try."""
        key = info.key
        for where in (self.active, self.backoff):
            q = where.get(key)
            if q is not None:
                q.info = info
                return True
        q = self.unschedulable.pop(key, None)
        if q is None:
            return False
        q.info = info
        self._requeue(q)
        return True

    def delete(self, key: str) -> None:
        # Heap entries are dropped lazily: pop skips entries whose seq no longer matches.
        for where in (self.active, self.backoff, self.unschedulable):
            where.pop(key, None)

    def __contains__(self, key: str) -> bool:
        return key in self.active or key in self.backoff or key in self.unschedulable

    def __len__(self) -> int:
        return len(self.active) + len(self.backoff) + len(self.unschedulable)

    # --- popping ----------------------------------------------------------------------------
    def pop(self) -> QueuedPodInfo | None:
        """The next pod to schedule, or None when activeQ is empty (after moving due back-offs)."""
        self.flush()
        while self._active_heap:
            _, seq, q = heapq.heappop(self._active_heap)
            if self.active.get(q.key) is not q or q.seq != seq:
                continue
            del self.active[q.key]
            q.attempts += 1
            if q.initial_attempt is None:
                q.initial_attempt = self.clock.now()
            self.scheduling_cycle += 1
            return q
        return None

    def add_unschedulable(self, q: QueuedPodInfo, pod_cycle: int) -> None:
        """Return a pod that failed in cycle ``pod_cycle``. ``q.unschedulable_plugins`` says who
        rejected it (empty after an error: then it just backs off)."""
        if q.key in self:
            return
        q.timestamp = self.clock.now()  # back-off counts from the failure
        if self._move_request_cycle >= pod_cycle or not q.unschedulable_plugins:
            self._push_backoff(q)
        else:
            q.unschedulable_since = self.clock.now()
            self.unschedulable[q.key] = q

    # --- moving -----------------------------------------------------------------------------
    def move_all_to_active_or_backoff(self, event: ClusterEvent, only: Iterable[str] | None = None) -> int:
        """Requeue unschedulable pods ``event`` could help (or the pods in ``only``). Returns how many."""
        keys = set(only) if only is not None else None
        moved = 0
        for key, q in list(self.unschedulable.items()):
            if keys is not None and key not in keys:
                continue
            if keys is None and not self._interested(q, event):
                continue
            del self.unschedulable[key]
            self._requeue(q)
            moved += 1
        self._move_request_cycle = self.scheduling_cycle
        return moved

    def activate(self, keys: Iterable[str]) -> None:
        """Move the named pods straight to activeQ (a gang whose siblings are ready)."""
        for key in keys:
            q = self.unschedulable.pop(key, None) or self.backoff.pop(key, None)
            if q is not None:
                self._push_active(q)

    def flush(self) -> None:
        now = self.clock.now()
        while self._backoff_heap and self._backoff_heap[0][0] <= now:
            _, seq, q = heapq.heappop(self._backoff_heap)
            if self.backoff.get(q.key) is q and q.seq == seq:
                del self.backoff[q.key]
                self._push_active(q)
        stale = [q for q in self.unschedulable.values() if now - q.unschedulable_since >= self.max_unschedulable]
        for q in stale:
            del self.unschedulable[q.key]
            self._requeue(q)

    def backoff_duration(self, q: QueuedPodInfo) -> float:
        return min(self.initial_backoff * 2 ** max(q.attempts - 1, 0), self.max_backoff)

    def next_backoff_expiry(self) -> float | None:
        live = [t for t, seq, q in self._backoff_heap if self.backoff.get(q.key) is q and q.seq == seq]
        return min(live) if live else None

    # --- internals --------------------------------------------------------------------------
    def _interested(self, q: QueuedPodInfo, event: ClusterEvent) -> bool:
        if event.resource == "*" or not q.unschedulable_plugins:
            return True
        for plugin in q.unschedulable_plugins:
            registered = self.plugin_events.get(plugin)
            # A plugin that registered nothing is assumed to care about everything.
            if registered is None or any(r.matches(event) for r in registered):
                return True
        return False

    def _requeue(self, q: QueuedPodInfo) -> None:
        if q.attempts and self.clock.now() < self._backoff_expiry(q):
            self._push_backoff(q)
        else:
            self._push_active(q)

    def _backoff_expiry(self, q: QueuedPodInfo) -> float:
        return q.timestamp + self.backoff_duration(q)

    def _push_active(self, q: QueuedPodInfo) -> None:
        q.seq = next(self._seq)
        self.active[q.key] = q
        heapq.heappush(self._active_heap, (self.sort_key(q), q.seq, q))

    def _push_backoff(self, q: QueuedPodInfo) -> None:
        q.seq = next(self._seq)
        self.backoff[q.key] = q
        heapq.heappush(self._backoff_heap, (self._backoff_expiry(q), q.seq, q))
