"""Builders for GPU-topology tests: a NodeDevices inventory and pods holding named devices."""

from __future__ import annotations

from typing import Any

from kray.crds import Pod
from kray.crds.devices import NodeDevices
from kray.crds.scheduling import GPU_DEVICES_ANNOTATION

from .builders import pod


def gpu_ids(node: str, n: int = 8) -> list[str]:
    return [f"GPU-{node}-{i}" for i in range(n)]


def node_devices(
    node: str,
    islands: list[list[int]] | None = None,
    n: int = 8,
    unhealthy: tuple[int, ...] = (),
    link_type: str = "NVLink",
    links: list[list[str]] | None = None,
    replicas: int = 1,
    model: str = "NVIDIA-H200",
) -> NodeDevices:
    """``n`` GPUs named GPU-<node>-<i>; ``islands`` are index lists (default: two NVLink islands of 4)."""
    ids = gpu_ids(node, n)
    islands = [[0, 1, 2, 3], [4, 5, 6, 7]] if islands is None else islands
    devices: list[dict[str, Any]] = [
        {
            "name": ids[i],
            "index": i,
            "model": model,
            "memoryBytes": 141 * 1024**3,
            "health": "Unhealthy" if i in unhealthy else "Healthy",
            "replicas": replicas,
        }
        for i in range(n)
    ]
    groups = [
        {"name": f"nvlink-{g}", "linkType": link_type, "devices": [ids[i] for i in members]}
        for g, members in enumerate(islands)
    ]
    spec: dict[str, Any] = {"nodeName": node, "devices": devices, "topologyGroups": groups}
    if links is not None:
        spec["links"] = links
    return NodeDevices.model_validate({"metadata": {"name": node}, "spec": spec})


def holding(name: str, node: str, indices: list[int]) -> Pod:
    """A pod bound to ``node`` holding those GPUs (annotated, as the API server writes it)."""
    p = pod(name, gpu=len(indices), node_name=node)
    ann = {GPU_DEVICES_ANNOTATION: ",".join(gpu_ids(node)[i] for i in indices)}
    return p.model_copy(update={"metadata": p.metadata.model_copy(update={"annotations": ann})})


def annotated_devices(p: Pod) -> list[str]:
    value = (p.metadata.annotations or {}).get(GPU_DEVICES_ANNOTATION, "")
    return value.split(",") if value else []
