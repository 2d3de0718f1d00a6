"""In-memory fakes of the scheduler's ports, with real semantics (shipped in the package so
other components' tests can use them too)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from kray.crds import Node, Pod

from .node_info import NodeInfo
from .pod_info import PodInfo, pod_key
from .status import Status

PodListener = Callable[[str, Pod], None]  # ("bound" | "deleted", pod)


class FakeBinder:
    """One shared 'API server' for bindings: rejects a bind that would overcommit the node, as the
    etcd transaction does when several scheduler shards race for the same node.

    Watch events go to listeners; with ``auto_deliver=False`` they queue until ``deliver()``, so
    tests can let shards run on stale caches (the case the transaction exists for).
    """

    def __init__(self, auto_deliver: bool = True) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self.bound: dict[str, str] = {}
        self.listeners: list[PodListener] = []
        self.auto_deliver = auto_deliver
        self.pending: list[tuple[str, Pod]] = []
        self.conflicts = 0

    def add_node(self, node: Node) -> None:
        self.nodes[node.metadata.name or ""] = NodeInfo(node.metadata.name or "", node)

    async def bind(self, pod: Pod, node_name: str, annotations: Mapping[str, str] | None = None) -> Status:
        key = pod_key(pod)
        if key in self.bound:
            self.conflicts += 1
            return Status.error(f'pod {key} is already assigned to node "{self.bound[key]}"')
        node = self.nodes.get(node_name)
        if node is None:
            return Status.error(f'nodes "{node_name}" not found')
        spec = pod.spec.model_copy(update={"node_name": node_name})
        meta = pod.metadata
        if annotations:
            meta = meta.model_copy(update={"annotations": {**(meta.annotations or {}), **annotations}})
        bound = pod.model_copy(update={"spec": spec, "metadata": meta})
        info = PodInfo.of(bound)
        if len(node.pods) >= node.allowed_pods or any(v > node.free(name) for name, v in info.requests.items()):
            self.conflicts += 1
            return Status.error(f"Operation cannot be fulfilled on nodes {node_name!r}: would overcommit the node")
        taken = sorted(d for d in info.gpu_devices if node.used_devices.get(d))
        if taken:
            self.conflicts += 1
            return Status.error(f"Operation cannot be fulfilled on nodes {node_name!r}: devices {taken} in use")
        node.add_pod(info)
        self.bound[key] = node_name
        self._emit("bound", bound)
        return Status()

    def evict(self, pod: Pod, reason: str = "") -> None:
        key = pod_key(pod)
        node = self.bound.pop(key, None)
        if node is not None:
            self.nodes[node].remove_pod(key)
            self._emit("deleted", pod)

    def _emit(self, kind: str, pod: Pod) -> None:
        self.pending.append((kind, pod))
        if self.auto_deliver:
            self.deliver()

    def deliver(self) -> int:
        events, self.pending = self.pending, []
        for kind, pod in events:
            for listener in self.listeners:
                listener(kind, pod)
        return len(events)

    def overcommitted(self) -> list[str]:
        return [
            n.name
            for n in self.nodes.values()
            if len(n.pods) > n.allowed_pods or any(v > n.allocatable.get(r, 0) for r, v in n.requested.items())
        ]


class RecordingReporter:
    """StatusReporter that remembers the last word on each pod."""

    def __init__(self) -> None:
        self.unschedulable_messages: dict[str, str] = {}
        self.scheduled_on: dict[str, str] = {}

    def unschedulable(self, pod: Pod, reason: str, message: str) -> None:
        self.unschedulable_messages[pod_key(pod)] = message

    def scheduled(self, pod: Pod, node_name: str) -> None:
        self.scheduled_on[pod_key(pod)] = node_name
        self.unschedulable_messages.pop(pod_key(pod), None)
