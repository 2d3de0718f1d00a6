"""PodTopologySpread: keep matching pods evenly spread over a topology key (zone, hostname, rack).

Skew of a domain = matching pods there (+1 for the incoming pod if it matches its own selector)
minus the minimum over all eligible domains. DoNotSchedule constraints filter nodes whose skew
would exceed maxSkew; ScheduleAnyway constraints prefer domains with fewer matching pods.
Only nodes the pod could land on (its nodeSelector/required affinity) count as domains (Honor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kray.crds.core.scheduling import TopologySpreadConstraint
from kray.crds.selectors import Selector

from ..cycle_state import CycleState
from ..framework import Handle
from ..node_info import NodeInfo
from ..pod_info import PodInfo, topology_value
from ..queue import NODE_ADD, NODE_UPDATE, POD_ADD, POD_DELETE, ClusterEvent
from ..status import SKIP, SUCCESS, Status
from ._util import min_max_normalize
from .node_affinity import matches_required

NAME = "PodTopologySpread"
MISSING_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"
SKEW = "node(s) didn't match pod topology spread constraints"


@dataclass
class _Constraint:
    max_skew: int
    key: str
    selector: Selector
    self_match: int
    min_domains: int
    counts: dict[str, int]

    def min_count(self) -> int:
        if len(self.counts) < self.min_domains:
            return 0  # fewer domains than required: the missing ones count as empty
        return min(self.counts.values(), default=0)


def _compile(pod: PodInfo, constraints: list[TopologySpreadConstraint], nodes: list[NodeInfo]) -> list[_Constraint]:
    out = []
    eligible = [n for n in nodes if matches_required(pod, n)]
    for c in constraints:
        selector = c.label_selector.to_selector() if c.label_selector else Selector()
        counts: dict[str, int] = {}
        for node in eligible:
            value = topology_value(node.labels, node.name, c.topology_key)
            if value is None:
                continue
            n = sum(1 for p in node.pods.values() if p.namespace == pod.namespace and selector.matches(p.labels))
            counts[value] = counts.get(value, 0) + n
        self_match = 1 if selector.matches(pod.labels) else 0
        out.append(_Constraint(c.max_skew, c.topology_key, selector, self_match, c.min_domains or 1, counts))
    return out


class PodTopologySpread:
    name = NAME

    def __init__(self, args: dict[str, Any] | None = None, handle: Handle | None = None) -> None:
        if handle is None:
            raise ValueError("PodTopologySpread needs a handle (it reads the snapshot)")
        self.handle = handle

    @staticmethod
    def _constraints(pod: PodInfo, mode: str) -> list[TopologySpreadConstraint]:
        return [c for c in pod.pod.spec.topology_spread_constraints or [] if c.when_unsatisfiable == mode]

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        hard = self._constraints(pod, "DoNotSchedule")
        if not hard:
            return SKIP
        state.write(NAME + "/filter", _compile(pod, hard, self.handle.snapshot.node_list))
        return SUCCESS

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        for c in state.read(NAME + "/filter"):
            value = topology_value(node.labels, node.name, c.key)
            if value is None:
                return Status.unresolvable(MISSING_LABEL)
            if c.counts.get(value, 0) + c.self_match - c.min_count() > c.max_skew:
                return Status.unschedulable(SKEW)
        return SUCCESS

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status:
        soft = self._constraints(pod, "ScheduleAnyway")
        if not soft:
            return SKIP
        state.write(NAME + "/score", _compile(pod, soft, self.handle.snapshot.node_list))
        return SUCCESS

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        total = 0
        for c in state.read(NAME + "/score"):
            value = topology_value(node.labels, node.name, c.key)
            # A node without the key is the worst choice for spreading over it.
            total += c.counts.get(value, 0) if value is not None else max(c.counts.values(), default=0) + 1
        return total

    def normalize_score(self, state: CycleState, pod: PodInfo, scores: dict[str, int]) -> None:
        min_max_normalize(scores, reverse=True)

    def events_to_register(self) -> list[ClusterEvent]:
        return [NODE_ADD, NODE_UPDATE, POD_ADD, POD_DELETE]
