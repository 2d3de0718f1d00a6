"""NodeResourcesFit: requests (cpu, memory, GPUs and other extended resources, pod count) must fit
the node's allocatable minus what its pods (bound and assumed) already requested.

Scoring strategies, as kube-scheduler's: LeastAllocated spreads load, MostAllocated packs nodes
(useful for GPUs: keep whole nodes free for big jobs). Weights per resource come from args:
``{"scoringStrategy": {"type": "MostAllocated", "resources": [{"name": "nvidia.com/gpu", "weight": 3}]}}``.
"""

from __future__ import annotations

from typing import Any

from ..cycle_state import CycleState
from ..framework import MAX_NODE_SCORE, Handle
from ..node_info import NodeInfo
from ..pod_info import CPU, MEMORY, PodInfo
from ..queue import NODE_ADD, NODE_UPDATE, POD_DELETE, POD_UPDATE, ClusterEvent
from ..status import SUCCESS, Status

NAME = "NodeResourcesFit"
TOO_MANY_PODS = "Too many pods"
LEAST_ALLOCATED = "LeastAllocated"
MOST_ALLOCATED = "MostAllocated"


def insufficient(pod: PodInfo, node: NodeInfo) -> list[str]:
    """Reasons the pod does not fit (empty: it fits). Shared with preemption."""
    reasons = []
    if len(node.pods) + 1 > node.allowed_pods:
        reasons.append(TOO_MANY_PODS)
    alloc, used = node.allocatable, node.requested
    for name, want in pod.requests.items():
        if want > alloc.get(name, 0) - used.get(name, 0):
            reasons.append(f"Insufficient {name}")
    return reasons


class NodeResourcesFit:
    name = NAME

    def __init__(self, args: dict[str, Any] | None = None, handle: Handle | None = None) -> None:
        strategy = (args or {}).get("scoringStrategy") or {}
        self.strategy = strategy.get("type", LEAST_ALLOCATED)
        if self.strategy not in (LEAST_ALLOCATED, MOST_ALLOCATED):
            raise ValueError(f"NodeResourcesFit: unknown scoring strategy {self.strategy!r}")
        resources = strategy.get("resources") or [{"name": CPU, "weight": 1}, {"name": MEMORY, "weight": 1}]
        self.resources = [(r["name"], int(r.get("weight", 1))) for r in resources]

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        # Inline fast path of ``insufficient``: this runs for hundreds of nodes per pod.
        if len(node.pods) >= node.allowed_pods:
            return Status.unschedulable(*insufficient(pod, node))
        alloc, used = node.allocatable, node.requested
        for name, want in pod.requests.items():
            if want > alloc.get(name, 0) - used.get(name, 0):
                return Status.unschedulable(*insufficient(pod, node))
        return SUCCESS

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        total = weights = 0
        for name, weight in self.resources:
            alloc = node.allocatable.get(name, 0)
            if alloc <= 0:
                continue
            if name == CPU:
                requested = node.non_zero_cpu + pod.non_zero_cpu
            elif name == MEMORY:
                requested = node.non_zero_memory + pod.non_zero_memory
            else:
                requested = node.requested.get(name, 0) + pod.requests.get(name, 0)
            requested = min(requested, alloc)
            if self.strategy == LEAST_ALLOCATED:
                total += (alloc - requested) * MAX_NODE_SCORE // alloc * weight
            else:
                total += requested * MAX_NODE_SCORE // alloc * weight
            weights += weight
        return total // weights if weights else 0

    def events_to_register(self) -> list[ClusterEvent]:
        return [NODE_ADD, NODE_UPDATE, POD_DELETE, POD_UPDATE]
