"""GpuTopology: place GPU pods on concrete, healthy, well-connected devices.

For nodes that publish a NodeDevices inventory (nodes without one are left to
NodeResourcesFit's plain count):

- Filter: a pod requesting k GPUs needs k healthy devices that no bound or assumed pod holds
  (the node's allocatable may still count a device that just went unhealthy).
- Score: prefer nodes where the k devices share one NVLink island, snugly (best fit keeps whole
  islands free for bigger pods); worse links (PIX < NVLink, SYS worst) score lower.
- Reserve: pick the device ids, record them on the assumed pod in the cache (the next cycle
  sees them taken) and ask the binder to annotate the pod with ``kray.io/gpu-devices`` at bind;
  the kubelet allocates exactly those. Unreserve gives them back.

Time-sliced devices (replicas > 1) are shared, so ids carry no placement meaning: such nodes
are count-only here (no filter, neutral score, no annotation).
"""

from __future__ import annotations

from typing import Any

from kray.crds.scheduling import GPU_DEVICES_ANNOTATION

from ..cycle_state import CycleState, add_bind_annotation, drop_bind_annotation
from ..devices import DeviceTopology, Placement, choose, placement_score
from ..framework import Handle
from ..node_info import NodeInfo
from ..pod_info import PodInfo
from ..queue import NODE_ADD, NODE_DEVICES_CHANGE, NODE_UPDATE, POD_DELETE, ClusterEvent
from ..status import SKIP, SUCCESS, Status

NAME = "GpuTopology"


def wanted(pod: PodInfo, topo: DeviceTopology) -> int:
    """Whole devices of the node's resource the pod requests (requests are in milli-units)."""
    return pod.requests.get(topo.resource, 0) // 1000


def free_devices(node: NodeInfo, topo: DeviceTopology) -> tuple[list[str], int]:
    """(free healthy device ids, how many of them are usable).

    Pods bound without the annotation (bound before this plugin ran, or created with nodeName
    preset) hold GPUs we cannot name: they still shrink the usable count.
    """
    free = topo.free(node.used_devices)
    held = node.requested.get(topo.resource, 0) // 1000
    unnamed = max(0, held - sum(node.used_devices.values()))
    return free, max(0, len(free) - unnamed)


def placement(pod: PodInfo, node: NodeInfo) -> Placement | None:
    topo = node.devices
    if topo is None or topo.time_sliced:
        return None
    k = wanted(pod, topo)
    if k <= 0:
        return None
    free, usable = free_devices(node, topo)
    if usable < k:
        return None
    return choose(topo, free, k)


def _requests_extended(pod: PodInfo) -> bool:
    return any("/" in name for name in pod.requests)


class GpuTopology:
    name = NAME

    def __init__(self, args: dict[str, Any] | None = None, handle: Handle | None = None) -> None:
        self.handle = handle

    def _no_inventories(self) -> bool:
        # Clusters without NodeDevices objects pay nothing per node for this plugin.
        return self.handle is not None and not self.handle.cache.node_devices

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        return SUCCESS if _requests_extended(pod) and not self._no_inventories() else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        topo = node.devices
        if topo is None or topo.time_sliced:
            return SUCCESS
        k = wanted(pod, topo)
        if k <= 0:
            return SUCCESS
        _, usable = free_devices(node, topo)
        if usable < k:
            return Status.unschedulable(f"Insufficient healthy {topo.resource}")
        return SUCCESS

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status:
        if not _requests_extended(pod) or not any(n.devices is not None for n in nodes):
            return SKIP
        return SUCCESS

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        p = placement(pod, node)
        return placement_score(p) if p is not None else 0

    def reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        if self.handle is None or not _requests_extended(pod):
            return SUCCESS
        # The cycle's snapshot: taken before this pod was assumed, so its own share is not
        # counted twice, and it holds every earlier assumed pod's devices.
        node = self.handle.snapshot.get(node_name)
        topo = node.devices if node is not None else None
        if node is None or topo is None or topo.time_sliced or wanted(pod, topo) <= 0:
            return SUCCESS
        p = placement(pod, node)
        if p is None:
            return Status.unschedulable(f"Insufficient healthy {topo.resource}")
        self.handle.cache.set_assumed_devices(pod.key, p.devices)
        add_bind_annotation(state, GPU_DEVICES_ANNOTATION, ",".join(p.devices))
        return SUCCESS

    def unreserve(self, state: CycleState, pod: PodInfo, node_name: str) -> None:
        drop_bind_annotation(state, GPU_DEVICES_ANNOTATION)
        if self.handle is not None:
            self.handle.cache.set_assumed_devices(pod.key, ())

    def events_to_register(self) -> list[ClusterEvent]:
        return [NODE_ADD, NODE_UPDATE, POD_DELETE, NODE_DEVICES_CHANGE]
