"""The scheduler's device choice, as the kubelet reads it from a bound Pod.

A topology-aware scheduler may bind a Pod with ``kray.io/gpu-devices: "<id>,<id>,..."``: the
GPUs (NodeDevices device names, i.e. UUIDs) for the Pod's containers in container order, each
container taking as many as its ``nvidia.com/gpu`` limit (or request). The device manager
allocates exactly those when they are free and healthy, else falls back to the plugin's
preferred allocation. Init containers are not covered: they take the plugin's choice.
"""

from __future__ import annotations

import logging

from kray.crds import Pod
from kray.crds.core.container import Container
from kray.crds.scheduling import GPU_DEVICES_ANNOTATION

log = logging.getLogger(__name__)

GPU_RESOURCE = "nvidia.com/gpu"


def _gpu_count(container: Container, resource: str) -> int:
    """Limits first, as the kubelet's ``extended_resources`` (the two must be equal anyway)."""
    res = container.resources
    if res is None:
        return 0
    q = (res.limits or {}).get(resource) or (res.requests or {}).get(resource)
    return int(q.value()) if q is not None else 0


def requested_devices(pod: Pod, container: str, resource: str = GPU_RESOURCE) -> list[str] | None:
    """The devices the scheduler chose for one app container, or None (no usable annotation)."""
    if resource != GPU_RESOURCE:
        return None
    raw = (pod.metadata.annotations or {}).get(GPU_DEVICES_ANNOTATION)
    if raw is None:
        return None
    ids = [d.strip() for d in raw.split(",") if d.strip()]
    start = 0
    for c in pod.spec.containers:
        n = _gpu_count(c, resource)
        if c.name == container:
            if start + n > len(ids):
                log.warning(
                    "pod %s/%s: %s names %d devices, too few for container %s",
                    pod.metadata.namespace,
                    pod.metadata.name,
                    GPU_DEVICES_ANNOTATION,
                    len(ids),
                    container,
                )
                return None
            return ids[start : start + n]
        start += n
    return None  # an init container, or no such container
