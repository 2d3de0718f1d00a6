"""NodePorts: a pod asking for a host port fits only nodes where that port is free."""

from __future__ import annotations

from typing import Any

from ..cycle_state import CycleState
from ..framework import Handle
from ..node_info import NodeInfo
from ..pod_info import PodInfo
from ..queue import NODE_ADD, POD_DELETE, ClusterEvent
from ..status import SKIP, SUCCESS, Status

NAME = "NodePorts"
REASON = "node(s) didn't have free ports for the requested pod ports"


class NodePorts:
    name = NAME

    def __init__(self, args: dict[str, Any] | None = None, handle: Handle | None = None) -> None:
        pass

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        return SUCCESS if pod.host_ports else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        if node.port_conflict(pod.host_ports):
            return Status.unschedulable(REASON)
        return SUCCESS

    def events_to_register(self) -> list[ClusterEvent]:
        return [NODE_ADD, POD_DELETE]
