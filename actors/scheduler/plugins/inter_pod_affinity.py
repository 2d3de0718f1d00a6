"""InterPodAffinity: required pod (anti-)affinity, both the incoming pod's and existing pods'.

Counts are keyed by topology pair (key, value), computed once in PreFilter:
- existing pods' required anti-affinity terms that the incoming pod matches forbid their domains;
- the incoming pod's anti-affinity terms forbid domains holding a pod they match;
- the incoming pod's affinity terms require a domain holding a pod they match (all terms), except
  for the first pod of a group that matches its own terms (otherwise nobody could ever start).
Preferred terms score domains by the weight of matching pods there.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..cycle_state import CycleState
from ..framework import Handle
from ..node_info import NodeInfo
from ..pod_info import AffinityTerm, PodInfo, topology_value
from ..queue import NODE_ADD, NODE_UPDATE, POD_ADD, POD_DELETE, ClusterEvent
from ..status import SKIP, SUCCESS, Status
from ._util import min_max_normalize

NAME = "InterPodAffinity"
EXISTING_ANTI = "node(s) didn't satisfy existing pods anti-affinity rules"
ANTI = "node(s) didn't match pod anti-affinity rules"
AFFINITY = "node(s) didn't match pod affinity rules"

Pair = tuple[str, str]


class _State:
    def __init__(self) -> None:
        self.existing_anti: Counter[Pair] = Counter()
        self.anti: list[Counter[Pair]] = []
        self.affinity: list[Counter[Pair]] = []
        self.affinity_self_ok = False


class InterPodAffinity:
    name = NAME

    def __init__(self, args: dict[str, Any] | None = None, handle: Handle | None = None) -> None:
        if handle is None:
            raise ValueError("InterPodAffinity needs a handle (it reads the snapshot)")
        self.handle = handle

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        snap = self.handle.snapshot
        if not (pod.required_affinity or pod.required_anti_affinity or snap.with_required_anti_affinity):
            return SKIP
        s = _State()
        for node in snap.with_required_anti_affinity.values():
            for other in node.pods.values():
                for term in other.required_anti_affinity:
                    value = topology_value(node.labels, node.name, term.topology_key)
                    if value is not None and term.matches(pod):
                        s.existing_anti[(term.topology_key, value)] += 1
        if pod.required_affinity or pod.required_anti_affinity:
            s.anti = _count(pod.required_anti_affinity, snap.node_list)
            s.affinity = _count(pod.required_affinity, snap.node_list)
            # No pod anywhere matches and the pod matches its own terms: it may start the group.
            s.affinity_self_ok = not any(s.affinity) and all(t.matches(pod) for t in pod.required_affinity)
        state.write(NAME, s)
        return SUCCESS

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        s: _State = state.read(NAME)
        labels, name = node.labels, node.name
        for key, value in s.existing_anti:
            if topology_value(labels, name, key) == value:
                return Status.unschedulable(EXISTING_ANTI)
        for term, counts in zip(pod.required_anti_affinity, s.anti, strict=True):
            tv = topology_value(labels, name, term.topology_key)
            if tv is not None and counts[(term.topology_key, tv)] > 0:
                return Status.unschedulable(ANTI)
        for term, counts in zip(pod.required_affinity, s.affinity, strict=True):
            tv = topology_value(labels, name, term.topology_key)
            if tv is None:
                return Status.unresolvable(AFFINITY)
            if counts[(term.topology_key, tv)] == 0 and not s.affinity_self_ok:
                return Status.unschedulable(AFFINITY)
        return SUCCESS

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status:
        if not (pod.preferred_affinity or pod.preferred_anti_affinity):
            return SKIP
        snap = self.handle.snapshot
        weights: Counter[Pair] = Counter()
        for terms, sign in ((pod.preferred_affinity, 1), (pod.preferred_anti_affinity, -1)):
            for term, counts in zip(terms, _count(terms, snap.node_list), strict=True):
                for pair, n in counts.items():
                    weights[pair] += sign * term.weight * n
        state.write(NAME + "/score", weights)
        return SUCCESS

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        weights: Counter[Pair] = state.read(NAME + "/score")
        total = 0
        for key, value in weights:
            if topology_value(node.labels, node.name, key) == value:
                total += weights[(key, value)]
        return total

    def normalize_score(self, state: CycleState, pod: PodInfo, scores: dict[str, int]) -> None:
        min_max_normalize(scores)

    def events_to_register(self) -> list[ClusterEvent]:
        return [NODE_ADD, NODE_UPDATE, POD_ADD, POD_DELETE]


def _count(terms: tuple[AffinityTerm, ...], nodes: list[NodeInfo]) -> list[Counter[Pair]]:
    """Per term: how many existing pods it matches in each topology domain."""
    out: list[Counter[Pair]] = [Counter() for _ in terms]
    if not terms:
        return out
    for node in nodes:
        if not node.pods:
            continue
        for i, term in enumerate(terms):
            value = topology_value(node.labels, node.name, term.topology_key)
            if value is None:
                continue
            n = sum(1 for p in node.pods.values() if term.matches(p))
            if n:
                out[i][(term.topology_key, value)] += n
    return out
