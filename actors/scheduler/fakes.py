"""In-memory fakes of the scheduler's ports, with real semantics (shipped in the package so
other components' tests can use them too)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kray.crds import Node, Pod
from kray.crds.meta import Resource

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


VolumeListener = Callable[[str, Resource], None]  # ("added" | "modified" | "deleted", object)


class FakeVolumeClient:
    """An in-memory API for PVCs, PVs and StorageClasses with the real write semantics
    VolumeBinding relies on: ``update`` refuses a stale resourceVersion (``Conflict``), ``get`` of
    a missing object raises ``NotFound``. Every change goes to the listeners (an informer's feed).
    """

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], Resource] = {}
        self.listeners: list[VolumeListener] = []
        self.updates: list[Resource] = []  # every successful update, in order
        self.conflicts = 0
        self._rv = 0

    @staticmethod
    def _key(kind: str, name: str | None, namespace: str | None, namespaced: bool) -> tuple[str, str]:
        return kind, f"{namespace or 'default'}/{name}" if namespaced else name or ""

    def _key_of(self, obj: Resource) -> tuple[str, str]:
        return self._key(obj.KIND, obj.metadata.name, obj.metadata.namespace, obj.NAMESPACED)

    def _store(self, obj: Resource, event: str) -> Resource:
        self._rv += 1
        obj = obj.model_copy(deep=True)
        obj.metadata.resource_version = str(self._rv)
        self.objects[self._key_of(obj)] = obj
        for listener in self.listeners:
            listener(event, obj)
        return obj

    def add(self, obj: Resource) -> Resource:
        """Create or replace an object (what the PV controller or a user would write)."""
        return self._store(obj, "modified" if self._key_of(obj) in self.objects else "added")

    def remove(self, obj: Resource) -> None:
        old = self.objects.pop(self._key_of(obj), None)
        if old is not None:
            for listener in self.listeners:
                listener("deleted", old)

    def stored(self, kind: type[Resource], name: str, namespace: str | None = None) -> Any:
        return self.objects.get(self._key(kind.KIND, name, namespace, kind.NAMESPACED))

    async def get(self, kind: Any, name: str, namespace: str | None = None) -> Any:
        from kray.client.errors import NotFound

        obj = self.stored(kind, name, namespace)
        if obj is None:
            raise NotFound(404, "NotFound", f'{kind.PLURAL} "{name}" not found')
        return obj.model_copy(deep=True)

    async def update(self, obj: Any) -> Any:
        from kray.client.errors import Conflict, NotFound

        current = self.objects.get(self._key_of(obj))
        if current is None:
            raise NotFound(404, "NotFound", f'{obj.PLURAL} "{obj.metadata.name}" not found')
        if obj.metadata.resource_version != current.metadata.resource_version:
            self.conflicts += 1
            raise Conflict(409, "Conflict", f'Operation cannot be fulfilled on {obj.PLURAL} "{obj.metadata.name}"')
        stored = self._store(obj, "modified")
        self.updates.append(stored)
        return stored.model_copy(deep=True)
