"""The scheduler's device choice, as the kubelet reads it from a bound Pod.

The GpuTopology scheduler plugin binds a Pod with ``kray.io/gpu-devices: "<id>,<id>,..."``:
devices of *one* resource, the one the node's NodeDevices object names in ``spec.driver`` (the
resource its plugin advertises; ``nvidia.com/gpu`` unless configured otherwise). The kubelet
learns that name from its device status loop (``nodesync.DeviceStatusSync.resource``) and passes
it as ``hinted``; other resources of the Pod take the plugin's choice. The ids are NodeDevices
device names (GPU UUIDs).

The list holds the Pod's effective request of that resource, as the scheduler counts it
(``PodSpec.resource_requests``, Kubernetes' PodRequests): max(sum over the app containers, max
over the init containers). Containers take them so:

- app containers: consecutive slices in container order, each as many as its limit (or request);
- init containers: each the first n of the list. They run one at a time, to completion, before
  the app containers, and the device manager hands their devices on (Kubernetes'
  devicesToReuse), so an init container's devices are the ones the first app containers get
  next; an init container needing more than all app containers together is why the list may
  be longer than their sum.

The device manager allocates exactly those when each is free (or held by one of the Pod's
finished init containers) and healthy, else falls back to the plugin's preferred allocation.
Sidecar init containers (``restartPolicy: Always``) are not modelled: the kubelet and
``resource_requests`` treat every init container as run-to-completion.
"""

from __future__ import annotations

import logging

from kray.crds import Pod
from kray.crds.core.container import Container
from kray.crds.scheduling import GPU_DEVICES_ANNOTATION

log = logging.getLogger(__name__)

GPU_RESOURCE = "nvidia.com/gpu"


def _count(container: Container, resource: str) -> int:
    """Limits first, as the kubelet's ``extended_resources`` (the two must be equal anyway)."""
    res = container.resources
    if res is None:
        return 0
    q = (res.limits or {}).get(resource) or (res.requests or {}).get(resource)
    return int(q.value()) if q is not None else 0


def annotated_devices(pod: Pod) -> list[str] | None:
    """The annotation's ids (``"GPU-a, GPU-b"`` -> ["GPU-a", "GPU-b"]), or None when absent."""
    raw = (pod.metadata.annotations or {}).get(GPU_DEVICES_ANNOTATION)
    if raw is None:
        return None
    return [d.strip() for d in raw.split(",") if d.strip()]


def _span(pod: Pod, container: str, resource: str) -> tuple[int, int] | None:
    """Where a container's devices lie in the annotation's list ([start, end)), None if no such container."""
    for c in pod.spec.init_containers or []:
        if c.name == container:
            return 0, _count(c, resource)
    start = 0
    for c in pod.spec.containers:
        n = _count(c, resource)
        if c.name == container:
            return start, start + n
        start += n
    return None


def requested_devices(
    pod: Pod, container: str, resource: str = GPU_RESOURCE, hinted: str = GPU_RESOURCE
) -> list[str] | None:
    """The devices the scheduler chose for one container (init or app), or None (no usable annotation).

    ``hinted``: the resource the annotation lists devices of (the node's NodeDevices ``spec.driver``).
    """
    if resource != hinted:
        return None
    ids = annotated_devices(pod)
    span = _span(pod, container, resource)
    if ids is None or span is None:
        return None
    start, end = span
    if end > len(ids):
        log.warning(
            "pod %s/%s: %s names %d devices, too few for container %s",
            pod.metadata.namespace,
            pod.metadata.name,
            GPU_DEVICES_ANNOTATION,
            len(ids),
            container,
        )
        return None
    return ids[start:end]
