"""``kray describe node``: kubectl's page for a Node, plus the node's GPUs from its NodeDevices.

Capacity and allocatable, the non-terminated pods with their requests and limits, the sums as a
share of allocatable (kubectl's "Allocated resources"), then what an extended-resource count
hides: each GPU's model, memory, health, NVLink island and the pod holding it (from the pods'
``kray.io/gpu-devices`` annotation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kray.client.errors import NotFound
from kray.client.paths import ResourceRef
from kray.crds.quantity import Quantity, add_resources
from kray.crds.scheduling import GPU_DEVICES_ANNOTATION

from . import printers
from .describe import conditions_table, events_table, header

if TYPE_CHECKING:
    from kray.client import Client

Obj = dict[str, Any]
BASIC = ("cpu", "memory", "ephemeral-storage")
PODS = ResourceRef(group="", version="v1", plural="pods", namespaced=True, kind="Pod")
NODE_DEVICES = ResourceRef(group="kray.io", version="v1", plural="nodedevices", namespaced=False, kind="NodeDevices")


def pod_resources(pod: Obj, field: str) -> dict[str, Quantity]:
    """A pod's requests or limits as Kubernetes counts them (``PodSpec.resource_requests`` /
    ``resource_limits``: init containers, overhead)."""
    from kray.crds import Pod

    spec = Pod.model_validate(pod).spec
    return dict(spec.resource_requests() if field == "requests" else spec.resource_limits())


def _share(amount: Quantity | None, allocatable: Quantity | None) -> str:
    """``750m (37%)`` as kubectl prints it: the amount in its own units, then its share."""
    if amount is None or amount.is_zero():
        return "0 (0%)"
    if allocatable is None or allocatable.is_zero():
        return str(amount)
    return f"{amount} ({int(amount.amount * 100 / allocatable.amount)}%)"


def _section(title: str, values: dict[str, Any] | None) -> list[str]:
    if not values:
        return []
    width = max(len(k) for k in values) + 2
    return [f"{title}:", *(f"  {k + ':':<{width}}{v}" for k, v in values.items())]


def _pods_table(pods: list[Obj], allocatable: dict[str, Quantity]) -> list[str]:
    rows = []
    for p in pods:
        meta, req, lim = p.get("metadata") or {}, pod_resources(p, "requests"), pod_resources(p, "limits")
        rows.append([
            meta.get("namespace", ""), meta.get("name", ""),
            _share(req.get("cpu"), allocatable.get("cpu")), _share(lim.get("cpu"), allocatable.get("cpu")),
            _share(req.get("memory"), allocatable.get("memory")), _share(lim.get("memory"), allocatable.get("memory")),
            printers.age(meta.get("creationTimestamp")),
        ])  # fmt: skip
    head = ["Namespace", "Name", "CPU Requests", "CPU Limits", "Memory Requests", "Memory Limits", "Age"]
    table = printers.format_table(head, rows) if rows else ""
    return [f"Non-terminated Pods:  ({len(pods)} in total)", *("  " + line for line in table.splitlines())]


def _allocated(pods: list[Obj], allocatable: dict[str, Quantity]) -> list[str]:
    requests = add_resources(*(pod_resources(p, "requests") for p in pods))
    limits = add_resources(*(pod_resources(p, "limits") for p in pods))
    names = [*BASIC, *sorted(n for n in {*allocatable, *requests, *limits} if n not in BASIC and n != "pods")]
    rows = []
    for name in names:
        req, lim = requests.get(name), limits.get(name)
        rows.append([name, _share(req, allocatable.get(name)), _share(lim, allocatable.get(name))])
    table = printers.format_table(["Resource", "Requests", "Limits"], rows)
    return [
        "Allocated resources:",
        "  (Total limits may be over 100 percent, i.e., overcommitted.)",
        *("  " + line for line in table.splitlines()),
    ]


def _gpu_table(devices: Obj, pods: list[Obj]) -> list[str]:
    spec = devices.get("spec") or {}
    holder: dict[str, str] = {}
    for p in pods:
        meta = p.get("metadata") or {}
        for device in ((meta.get("annotations") or {}).get(GPU_DEVICES_ANNOTATION) or "").split(","):
            if device.strip():
                holder[device.strip()] = f"{meta.get('namespace')}/{meta.get('name')}"
    island = {d: g.get("name", "") for g in spec.get("topologyGroups") or [] for d in g.get("devices") or []}
    rows = []
    for d in spec.get("devices") or []:
        health = d.get("health", "Healthy") + (f" ({d['healthReason']})" if d.get("healthReason") else "")
        memory = f"{int(d['memoryBytes']) // 2**20} MiB" if d.get("memoryBytes") else ""
        rows.append([str(d.get("index", "")), d.get("name", ""), d.get("model") or "", memory, health,
                     island.get(d.get("name", ""), "<none>"), holder.get(d.get("name", ""), "")])  # fmt: skip
    table = printers.format_table(["Index", "Device", "Model", "Memory", "Health", "Island", "Pod"], rows)
    return [f"Devices ({spec.get('driver', '')}):", *("  " + line for line in table.splitlines())]


def describe_node(client: Client, ref: ResourceRef, obj: Obj) -> str:
    name = (obj.get("metadata") or {}).get("name", "")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    lines = header(ref, obj)
    taints = [f"{t['key']}{'=' + t['value'] if t.get('value') else ''}:{t['effect']}" for t in spec.get("taints") or []]
    lines.append(f"Taints:       {(chr(10) + ' ' * 14).join(taints) or '<none>'}")
    lines.append(f"Unschedulable:  {str(bool(spec.get('unschedulable'))).lower()}")
    lines += conditions_table(status.get("conditions"))
    lines += _section("Addresses", {a.get("type", ""): a.get("address", "") for a in status.get("addresses") or []})
    lines += _section("Capacity", status.get("capacity"))
    lines += _section("Allocatable", status.get("allocatable"))
    lines += _section("System Info", status.get("nodeInfo"))
    if spec.get("podCIDR"):
        lines.append(f"PodCIDR:      {spec['podCIDR']}")
    pods = [
        p
        for p in client.list_raw(PODS, all_namespaces=True, field_selector=f"spec.nodeName={name}").items
        if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    ]
    allocatable = {k: Quantity(v) for k, v in (status.get("allocatable") or {}).items()}
    lines += _pods_table(pods, allocatable)
    lines += _allocated(pods, allocatable)
    try:
        lines += _gpu_table(client.get_raw(NODE_DEVICES, name), pods)
    except NotFound:
        pass  # no device plugin publishes for this node
    lines += events_table(client, ref, obj)
    return "\n".join(lines)
