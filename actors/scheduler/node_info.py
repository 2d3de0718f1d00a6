"""NodeInfo: one node plus the pods placed on it (bound or assumed), summed for fast Filter/Score."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from kray.crds import Node
from kray.crds.core.scheduling import Taint

from .pod_info import PODS, PodInfo, milli_units, normalize_image

if TYPE_CHECKING:
    from .devices import DeviceTopology

# A node that reports no "pods" allocatable still gets Kubernetes' kubelet default.
DEFAULT_MAX_PODS = 110


class NodeInfo:
    __slots__ = (
        "allocatable",
        "allowed_pods",
        "devices",
        "generation",
        "images",
        "labels",
        "name",
        "node",
        "non_zero_cpu",
        "non_zero_memory",
        "pods",
        "pods_with_affinity",
        "pods_with_required_anti_affinity",
        "requested",
        "taints",
        "unschedulable",
        "used_devices",
        "used_ports",
    )

    def __init__(self, name: str, node: Node | None = None) -> None:
        self.name = name
        self.node: Node | None = None
        self.labels: dict[str, str] = {}
        self.taints: tuple[Taint, ...] = ()
        self.unschedulable = False
        self.allocatable: dict[str, int] = {}
        self.allowed_pods = DEFAULT_MAX_PODS
        # Images the node holds (status.images), normalized name -> size in bytes.
        self.images: dict[str, int] = {}
        self.pods: dict[str, PodInfo] = {}
        self.requested: dict[str, int] = {}
        self.non_zero_cpu = 0
        self.non_zero_memory = 0
        self.used_ports: Counter[tuple[str, str, int]] = Counter()
        # The node's GPUs (from its NodeDevices object; None: no inventory, count-only scheduling)
        # and the device ids its pods hold, from their kray.io/gpu-devices annotations.
        self.devices: DeviceTopology | None = None
        self.used_devices: Counter[str] = Counter()
        # Counts, so InterPodAffinity can skip nodes (and whole snapshots) with none.
        self.pods_with_affinity = 0
        self.pods_with_required_anti_affinity = 0
        self.generation = 0
        if node is not None:
            self.set_node(node)

    def set_node(self, node: Node) -> None:
        self.node = node
        self.labels = dict(node.metadata.labels or {})
        self.taints = tuple(node.spec.taints or ())
        self.unschedulable = bool(node.spec.unschedulable)
        status = node.status
        alloc = (status.allocatable or status.capacity) if status else None
        self.allocatable = milli_units(alloc)
        pods = self.allocatable.pop(PODS, None)
        self.allowed_pods = pods // 1000 if pods is not None else DEFAULT_MAX_PODS
        images = status.images if status else None
        self.images = {normalize_image(n): img.size_bytes or 0 for img in images or [] for n in img.names or []}

    def add_pod(self, pi: PodInfo) -> None:
        self.pods[pi.key] = pi
        req = self.requested
        for name, v in pi.requests.items():
            req[name] = req.get(name, 0) + v
        self.non_zero_cpu += pi.non_zero_cpu
        self.non_zero_memory += pi.non_zero_memory
        self.used_ports.update(pi.host_ports)
        if pi.gpu_devices:
            self.used_devices.update(pi.gpu_devices)
        self._count_affinity(pi, 1)

    def remove_pod(self, key: str) -> PodInfo | None:
        pi = self.pods.pop(key, None)
        if pi is None:
            return None
        req = self.requested
        for name, v in pi.requests.items():
            left = req.get(name, 0) - v
            if left:
                req[name] = left
            else:
                req.pop(name, None)
        self.non_zero_cpu -= pi.non_zero_cpu
        self.non_zero_memory -= pi.non_zero_memory
        self.used_ports.subtract(pi.host_ports)
        self.used_ports = +self.used_ports  # drop zero counts
        if pi.gpu_devices:
            self.used_devices.subtract(pi.gpu_devices)
            self.used_devices = +self.used_devices
        self._count_affinity(pi, -1)
        return pi

    def _count_affinity(self, pi: PodInfo, delta: int) -> None:
        if pi.required_affinity or pi.preferred_affinity or pi.preferred_anti_affinity:
            self.pods_with_affinity += delta
        if pi.required_anti_affinity:
            self.pods_with_required_anti_affinity += delta
            if not (pi.required_affinity or pi.preferred_affinity or pi.preferred_anti_affinity):
                self.pods_with_affinity += delta

    def free(self, resource: str) -> int:
        return self.allocatable.get(resource, 0) - self.requested.get(resource, 0)

    def port_conflict(self, ports: frozenset[tuple[str, str, int]]) -> bool:
        """Whether any wanted host port is taken; 0.0.0.0 conflicts with every address."""
        used = self.used_ports
        for ip, proto, port in ports:
            if (ip, proto, port) in used:
                return True
            for uip, uproto, uport in used:
                if uport == port and uproto == proto and (ip == "0.0.0.0" or uip == "0.0.0.0"):
                    return True
        return False

    def clone(self) -> NodeInfo:
        out = NodeInfo.__new__(NodeInfo)
        out.name, out.node, out.labels, out.taints = self.name, self.node, self.labels, self.taints
        out.unschedulable, out.allocatable, out.allowed_pods = (
            self.unschedulable,
            self.allocatable,
            self.allowed_pods,
        )
        out.images, out.generation = self.images, self.generation
        out.devices = self.devices  # immutable digest: shared
        # Only what add/remove_pod mutate in place is copied; the rest is replaced wholesale.
        out.pods = dict(self.pods)
        out.requested = dict(self.requested)
        out.non_zero_cpu, out.non_zero_memory = self.non_zero_cpu, self.non_zero_memory
        out.used_ports = Counter(self.used_ports)
        out.used_devices = self.used_devices.copy()
        out.pods_with_affinity = self.pods_with_affinity
        out.pods_with_required_anti_affinity = self.pods_with_required_anti_affinity
        return out

    def __repr__(self) -> str:
        return f"NodeInfo({self.name!r}, pods={len(self.pods)}, requested={self.requested})"
