"""NodeName: a pod with spec.nodeName set fits only that node."""

from __future__ import annotations

from typing import Any

from ..cycle_state import CycleState
from ..framework import Handle
from ..node_info import NodeInfo
from ..pod_info import PodInfo
from ..queue import NODE_ADD, ClusterEvent
from ..status import SKIP, SUCCESS, Status

NAME = "NodeName"
REASON = "node(s) didn't match the requested node name"


class NodeName:
    name = NAME

    def __init__(self, args: dict[str, Any] | None = None, handle: Handle | None = None) -> None:
        pass

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        return SUCCESS if pod.node_name else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        if pod.node_name and pod.node_name != node.name:
            return Status.unresolvable(REASON)
        return SUCCESS

    def events_to_register(self) -> list[ClusterEvent]:
        return [NODE_ADD]
