"""TaintToleration: NoSchedule/NoExecute taints must be tolerated; PreferNoSchedule ones lower the score."""

from __future__ import annotations

from typing import Any

from kray.crds.core.scheduling import Taint, Toleration

from ..cycle_state import CycleState
from ..framework import Handle
from ..node_info import NodeInfo
from ..pod_info import PodInfo
from ..queue import NODE_ADD, NODE_UPDATE, ClusterEvent
from ..status import SUCCESS, Status
from ._util import normalize

NAME = "TaintToleration"
_HARD = ("NoSchedule", "NoExecute")


def untolerated(taints: tuple[Taint, ...], tolerations: list[Toleration]) -> Taint | None:
    for taint in taints:
        if taint.effect in _HARD and not any(t.tolerates(taint) for t in tolerations):
            return taint
    return None


class TaintToleration:
    name = NAME

    def __init__(self, args: dict[str, Any] | None = None, handle: Handle | None = None) -> None:
        pass

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        if not node.taints:
            return SUCCESS
        taint = untolerated(node.taints, pod.pod.spec.tolerations or [])
        if taint is None:
            return SUCCESS
        return Status.unresolvable(f"node(s) had untolerated taint {{{taint.key}: {taint.value or ''}}}")

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        if not node.taints:
            return 0
        tolerations = [t for t in pod.pod.spec.tolerations or [] if t.effect in (None, "", "PreferNoSchedule")]
        return sum(
            1
            for taint in node.taints
            if taint.effect == "PreferNoSchedule" and not any(t.tolerates(taint) for t in tolerations)
        )

    def normalize_score(self, state: CycleState, pod: PodInfo, scores: dict[str, int]) -> None:
        normalize(scores, reverse=True)

    def events_to_register(self) -> list[ClusterEvent]:
        return [NODE_ADD, NODE_UPDATE]
