"""NodeUnschedulable: cordoned nodes (spec.unschedulable) take only pods that tolerate it."""

from __future__ import annotations

from typing import Any

from kray.crds.core.scheduling import Taint

from ..cycle_state import CycleState
from ..framework import Handle
from ..node_info import NodeInfo
from ..pod_info import PodInfo
from ..queue import NODE_ADD, NODE_UPDATE, ClusterEvent
from ..status import SUCCESS, Status

NAME = "NodeUnschedulable"
REASON = "node(s) were unschedulable"
_TAINT = Taint(key="node.kubernetes.io/unschedulable", effect="NoSchedule")


class NodeUnschedulable:
    name = NAME

    def __init__(self, args: dict[str, Any] | None = None, handle: Handle | None = None) -> None:
        pass

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        if not node.unschedulable:
            return SUCCESS
        if any(t.tolerates(_TAINT) for t in pod.pod.spec.tolerations or []):
            return SUCCESS
        return Status.unresolvable(REASON)

    def events_to_register(self) -> list[ClusterEvent]:
        return [NODE_ADD, NODE_UPDATE]
