"""NodeAffinity (and nodeSelector): required terms filter nodes, preferred terms score them."""

from __future__ import annotations

from typing import Any

from kray.crds.core.scheduling import NodeSelector, PreferredSchedulingTerm

from ..cycle_state import CycleState
from ..framework import Handle
from ..node_info import NodeInfo
from ..pod_info import PodInfo
from ..queue import NODE_ADD, NODE_UPDATE, ClusterEvent
from ..status import SKIP, SUCCESS, Status
from ._util import normalize

NAME = "NodeAffinity"
REASON = "node(s) didn't match Pod's node affinity/selector"


def required_of(pod: PodInfo) -> tuple[dict[str, str], NodeSelector | None]:
    spec = pod.pod.spec
    na = spec.affinity.node_affinity if spec.affinity else None
    return spec.node_selector or {}, na.required_during_scheduling_ignored_during_execution if na else None


def matches_required(pod: PodInfo, node: NodeInfo) -> bool:
    """Shared with PodTopologySpread, which counts only nodes the pod could land on."""
    selector, required = required_of(pod)
    labels = node.labels
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    return required is None or required.matches(labels, {"metadata.name": node.name})


class NodeAffinity:
    name = NAME

    def __init__(self, args: dict[str, Any] | None = None, handle: Handle | None = None) -> None:
        pass

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        selector, required = required_of(pod)
        return SUCCESS if selector or required is not None else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        return SUCCESS if matches_required(pod, node) else Status.unresolvable(REASON)

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status:
        terms = self._preferred(pod)
        if not terms:
            return SKIP
        state.write(NAME, terms)
        return SUCCESS

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        terms: list[PreferredSchedulingTerm] = state.read(NAME)
        fields = {"metadata.name": node.name}
        return sum(t.weight for t in terms if t.preference.matches(node.labels, fields))

    def normalize_score(self, state: CycleState, pod: PodInfo, scores: dict[str, int]) -> None:
        normalize(scores)

    @staticmethod
    def _preferred(pod: PodInfo) -> list[PreferredSchedulingTerm]:
        aff = pod.pod.spec.affinity
        na = aff.node_affinity if aff else None
        return list(na.preferred_during_scheduling_ignored_during_execution or []) if na else []

    def events_to_register(self) -> list[ClusterEvent]:
        return [NODE_ADD, NODE_UPDATE]
