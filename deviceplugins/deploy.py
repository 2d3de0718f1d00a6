"""How `kray up` gives its node GPUs: fake ones (``--fake-gpus N``), the real ones, or none.

``gpu_plan`` decides before the kubelet starts (its device manager needs the plugin dir);
``start_gpu_plugin`` starts the plugin actor once the kubelet serves, then waits until the
Node advertises the GPUs, so that `kray up` returning means ``nvidia.com/gpu`` is schedulable.
A node without NVML gets no plugin and no device manager: nothing GPU-related runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from kray.config import KrayConfig

from .api import KUBELET_SOCKET
from .manager import check_socket_path
from .nvidia import RESOURCE_NAME, local_gpus
from .nvml import NoGPUs

PLUGIN_DIR_NAME = "device-plugins"


@dataclass(frozen=True)
class GpuPlan:
    fake_gpus: int = 0
    plugin_dir: str | None = None  # None: no GPU plugin on this node
    why: str = ""  # what `kray up` says about the node's GPUs


def gpu_plan(fake_gpus: int, node_dir: str, probe: Callable[[], object] = local_gpus) -> GpuPlan:
    """``node_dir``: the node's state dir (``<root>/<node>``); the plugin dir goes under it.

    Real GPUs are probed here, in the `kray up` process: the local node is this machine."""
    if fake_gpus < 0:
        raise ValueError(f"fake_gpus must be >= 0, got {fake_gpus}")
    plugin_dir = os.path.join(node_dir, PLUGIN_DIR_NAME)
    try:  # fail here, naming the flag, rather than deep inside the kubelet or plugin actor
        check_socket_path(Path(plugin_dir) / KUBELET_SOCKET)
    except ValueError as e:
        raise RuntimeError(f"--node-root is too long for the device plugin sockets: {e}") from None
    if fake_gpus > 0:
        return GpuPlan(fake_gpus, plugin_dir, f"{fake_gpus} fake GPU(s)")
    found = probe()
    if isinstance(found, NoGPUs):
        return GpuPlan(0, None, f"no NVIDIA GPUs ({found.reason}): no GPU device plugin")
    return GpuPlan(0, plugin_dir, f"{len(found)} NVIDIA GPU(s)")  # type: ignore[arg-type]


def start_gpu_plugin(
    config: KrayConfig, plan: GpuPlan, node_id: str, node_name: str, timeout: float, log: Callable[[str], None]
) -> int:
    """Start the node's plugin actor (if the plan has one); returns the GPUs the Node advertises."""
    if plan.plugin_dir is None:
        log(f"node {node_name}: {plan.why}")
        return 0
    import ray

    from .actor import start_on_node

    handle = start_on_node(node_id, node_name, plan.plugin_dir, fake_gpus=plan.fake_gpus)
    if not ray.get(handle.ready.remote(), timeout=timeout):
        reason = ray.get(handle.no_gpus_reason.remote(), timeout=timeout)
        ray.kill(handle, no_restart=True)
        log(f"node {node_name}: GPU plugin found no GPUs ({reason}); none advertised")
        return 0
    count = int(ray.get(handle.device_count.remote(), timeout=timeout))
    wait_node_resource(config, node_name, RESOURCE_NAME, count, timeout)
    log(f"node {node_name}: {plan.why}, {RESOURCE_NAME}: {count} advertised")
    return count


def wait_node_resource(config: KrayConfig, node_name: str, resource: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    url = f"{config.server}/api/v1/nodes/{node_name}"
    seen: object = None
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(url, headers={"Authorization": f"Bearer {config.token}"}, timeout=2.0)
            if resp.status_code == 200:
                seen = (resp.json().get("status") or {}).get("allocatable", {}).get(resource)
                if str(seen) == str(count):
                    return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"node {node_name} did not advertise {resource}: {count} within {timeout}s (saw {seen!r})")
