"""DefaultPreemption: when no node fits, find the node where evicting the fewest lower-priority
pods makes room, and name those victims. A victim in a gang takes its whole gang with it
(half a gang is useless, and its survivors would hold GPUs for nothing).

The dry run removes candidates from a copy of the node lowest-priority first until every Filter
passes, then gives back (reprieves) the highest-priority ones that are not needed.
"""

from __future__ import annotations

from typing import Any

from ..cycle_state import CycleState
from ..framework import Handle, PostFilterResult
from ..node_info import NodeInfo
from ..pod_info import PodInfo
from ..status import Code, Status

NAME = "DefaultPreemption"


class DefaultPreemption:
    name = NAME

    def __init__(self, args: dict[str, Any] | None = None, handle: Handle | None = None) -> None:
        if handle is None:
            raise ValueError("DefaultPreemption needs a handle")
        self.handle = handle

    def post_filter(
        self, state: CycleState, pod: PodInfo, statuses: dict[str, Status]
    ) -> tuple[PostFilterResult | None, Status]:
        if pod.pod.spec.preemption_policy == "Never":
            return None, Status.unschedulable("not eligible due to preemptionPolicy=Never.")
        snap = self.handle.snapshot
        filters = [f for f in self.handle.filters(state)]
        best: tuple[tuple[int, int, int], str, list[PodInfo]] | None = None
        for name, status in statuses.items():
            node = snap.get(name)
            if node is None or status.code is not Code.UNSCHEDULABLE:
                continue  # unresolvable: evicting pods would not help
            victims = self._victims(state, pod, node, filters)
            if victims is None:
                continue
            gang = self._with_gangs(victims)
            # Fewest victims, then the least important ones (kube ranks by priority first).
            rank = (len(gang), max((v.priority for v in gang), default=0), sum(v.priority for v in gang))
            if best is None or rank < best[0]:
                best = (rank, name, gang)
        if best is None:
            return None, Status.unschedulable("preemption: no node where evicting lower-priority pods helps")
        return PostFilterResult(best[1], best[2]), Status()

    def _victims(self, state: CycleState, pod: PodInfo, node: NodeInfo, filters: list[Any]) -> list[PodInfo] | None:
        lower = sorted((p for p in node.pods.values() if p.priority < pod.priority), key=lambda p: p.priority)
        if not lower:
            return None
        trial = node.clone()
        for p in lower:
            trial.remove_pod(p.key)
        if not self.handle.run_filters(filters, state, pod, trial).ok:
            return None
        victims = []
        for p in reversed(lower):  # reprieve the most important first
            trial.add_pod(p)
            if not self.handle.run_filters(filters, state, pod, trial).ok:
                trial.remove_pod(p.key)
                victims.append(p)
        return victims

    def _with_gangs(self, victims: list[PodInfo]) -> list[PodInfo]:
        out = {v.key: v for v in victims}
        cache = self.handle.cache
        for v in victims:
            for key in cache.group_placed.get(v.group_key or "", ()):
                state = cache.pods.get(key)
                if state is not None:
                    out.setdefault(key, state.info)
        return list(out.values())
