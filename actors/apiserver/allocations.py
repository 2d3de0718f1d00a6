"""Node allocation records: what a pod requests, what a node allows, and who holds what.

Split out of ``binding`` (which re-exports these names, and whose module docstring describes the
stored record) so the bookkeeping of a node's record is apart from the two things that write it:
the binding transaction and the ``AllocationReleaser``. Everything here is pure except
``read_allocation``; quantities are integer milli-units throughout.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import from_json

from kray.actors.store.kv import Compare, KeyValue
from kray.actors.store.objects import ObjectStore
from kray.crds.quantity import Quantity
from kray.crds.scheduling import GPU_DEVICES_ANNOTATION

ALLOCATIONS_PREFIX = "/registry/kray.io/nodeallocations/"
DEFAULT_MAX_PODS = 110  # the kubelet's default when a node reports no "pods" allocatable
_TERMINAL = ("Succeeded", "Failed")


def allocation_key(node: str) -> str:
    return ALLOCATIONS_PREFIX + node


def milli(resources: dict[str, Any] | None) -> dict[str, int]:
    """Wire quantities ({"cpu": "500m"}) to integer milli-units ({"cpu": 500}); zeros dropped."""
    out: dict[str, int] = {}
    for name, value in (resources or {}).items():
        q = value if isinstance(value, Quantity) else Quantity(value)
        m = q.milli()
        if m:
            out[name] = m
    return out


def pod_requests(pod: dict[str, Any]) -> dict[str, int]:
    """Kubernetes' PodRequests: max(sum of containers, any init container) + overhead, milli-units."""
    spec = pod.get("spec") or {}
    total: dict[str, int] = {}
    for c in spec.get("containers") or []:
        for name, v in milli((c.get("resources") or {}).get("requests")).items():
            total[name] = total.get(name, 0) + v
    for c in spec.get("initContainers") or []:
        for name, v in milli((c.get("resources") or {}).get("requests")).items():
            total[name] = max(total.get(name, 0), v)
    for name, v in milli(spec.get("overhead")).items():
        total[name] = total.get(name, 0) + v
    total.pop("pods", None)
    return total


def node_allocatable(node: dict[str, Any]) -> tuple[dict[str, int], int]:
    """(allocatable in milli-units without "pods", max pods)."""
    status = node.get("status") or {}
    alloc = milli(status.get("allocatable") or status.get("capacity"))
    pods = alloc.pop("pods", None)
    return alloc, (pods // 1000 if pods is not None else DEFAULT_MAX_PODS)


class Allocation:
    """A node's allocation record (the stored format is in ``binding``'s module docstring)."""

    def __init__(self, node: str, pods: dict[str, dict[str, Any]] | None = None, mod_revision: int = 0) -> None:
        self.node = node
        self.pods = pods or {}
        self.mod_revision = mod_revision  # 0: no record stored yet

    @classmethod
    def load(cls, node: str, kv: KeyValue | None) -> Allocation:
        if kv is None:
            return cls(node)
        return cls(node, from_json(kv.value).get("pods") or {}, kv.mod_revision)

    @property
    def requested(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for entry in self.pods.values():
            for name, v in entry["requests"].items():
                total[name] = total.get(name, 0) + v
        return total

    def encode(self) -> bytes:
        doc = {"node": self.node, "requested": self.requested, "pods": self.pods}
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    def devices_in_use(self) -> set[str]:
        return {d for entry in self.pods.values() for d in entry.get("devices") or ()}

    def misfit(
        self, requests: dict[str, int], allocatable: dict[str, int], max_pods: int, devices: list[str] | None = None
    ) -> list[str]:
        """Why a pod with ``requests`` (holding ``devices``) does not fit on this record (empty: fits)."""
        reasons = []
        taken = sorted(set(devices or ()) & self.devices_in_use())
        if taken:
            reasons.append(f"devices already allocated: {', '.join(taken)}")
        if len(self.pods) + 1 > max_pods:
            reasons.append(f"Too many pods ({len(self.pods)} of {max_pods} bound)")
        used = self.requested
        for name, want in sorted(requests.items()):
            free = allocatable.get(name, 0) - used.get(name, 0)
            if want > free:
                reasons.append(
                    f"Insufficient {name} (requested {_format_milli(want)}, free {_format_milli(max(free, 0))})"
                )
        return reasons

    def guard(self) -> Compare:
        return Compare(allocation_key(self.node), self.mod_revision)


def _format_milli(milli_value: int) -> str:
    return str(milli_value // 1000) if milli_value % 1000 == 0 else f"{milli_value}m"


def allocation_entry(pod: dict[str, Any]) -> dict[str, Any]:
    meta = pod.get("metadata") or {}
    entry: dict[str, Any] = {"pod": f"{meta.get('namespace')}/{meta.get('name')}", "requests": pod_requests(pod)}
    devices = [d.strip() for d in ((meta.get("annotations") or {}).get(GPU_DEVICES_ANNOTATION) or "").split(",")]
    if any(devices):
        entry["devices"] = [d for d in devices if d]
    return entry


def bound_share(pod: dict[str, Any]) -> tuple[str, str] | None:
    """(node, uid) of a pod that holds a share of its node: bound and not terminal."""
    node = (pod.get("spec") or {}).get("nodeName")
    if not node or (pod.get("status") or {}).get("phase") in _TERMINAL:
        return None
    return node, str((pod.get("metadata") or {}).get("uid") or "")


async def read_allocation(store: ObjectStore, node: str) -> Allocation:
    """The node's current record (tests, tools)."""
    return Allocation.load(node, await store.kv.get(allocation_key(node)))
