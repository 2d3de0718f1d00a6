"""The thin Ray wrapper: one GPU plugin per Ray node, pinned to it.

All logic is in ``nvidia.GpuPlugin``; the actor only builds it with the real NVML, starts it
(serving and registering with the node's device manager) and answers for the node's
``NodeDevices`` inventory. This is the only module of the package that imports Ray.
"""

from __future__ import annotations

from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .nvidia import DEFAULT_PLUGIN_DIR, GpuPlugin, GpuPluginConfig
from .nvml import PyNvml

RAY_NAMESPACE = "kray"


def actor_name(node_name: str) -> str:
    return f"kray-nvidia-device-plugin-{node_name}"


class GpuPluginActor:
    def __init__(self, node_name: str, plugin_dir: str = DEFAULT_PLUGIN_DIR, replicas: int = 1) -> None:
        self.node_name = node_name
        self.plugin = GpuPlugin(PyNvml(), plugin_dir, GpuPluginConfig(replicas=replicas))
        # False on a node without GPUs: the actor stays up and reports an empty inventory.
        self.serving = self.plugin.start()

    def ready(self) -> bool:
        return self.serving

    def no_gpus_reason(self) -> str | None:
        nogpu = self.plugin.core.no_gpus
        return nogpu.reason if nogpu else None

    def inventory(self) -> dict[str, Any]:
        """The node's NodeDevices object in wire form (for the kubelet to write to the API)."""
        return self.plugin.core.inventory(self.node_name).to_dict()

    def stop(self) -> None:
        self.plugin.stop()


def start_on_node(ray_node_id: str, node_name: str, plugin_dir: str = DEFAULT_PLUGIN_DIR, replicas: int = 1) -> Any:
    """Start (or find) the plugin actor of one Ray node; returns its handle."""
    cls = ray.remote(num_cpus=0)(GpuPluginActor)
    return cls.options(  # type: ignore[attr-defined]
        name=actor_name(node_name),
        namespace=RAY_NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=ray_node_id, soft=False),
    ).remote(node_name, plugin_dir, replicas)
