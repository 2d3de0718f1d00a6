"""The thin Ray wrapper: one GPU plugin per Ray node, pinned to it.

All logic is in ``nvidia.GpuPlugin``; the actor only builds it (real NVML, or ``FakeNvml`` for
``kray up --fake-gpus N``), starts it (serving and registering with the node's device manager)
and answers for the node's ``NodeDevices`` inventory, which the kubelet publishes. This is the
only module of the package that imports Ray.
"""

from __future__ import annotations

import logging
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from kray.crds.devices import NodeDevices

from .fake_nvml import FakeNvml
from .nvidia import DEFAULT_PLUGIN_DIR, GpuPlugin, GpuPluginConfig
from .nvml import Nvml, PyNvml

log = logging.getLogger(__name__)

RAY_NAMESPACE = "kray"
# NVLink islands of this many fake GPUs (a DGX board: 8 GPUs in two islands of 4).
FAKE_ISLAND = 4
# Fake GPUs come back after an injected fault sooner than real ones: tests wait for it.
FAKE_BACKOFF_S = 2.0


def actor_name(node_name: str) -> str:
    return f"kray-nvidia-device-plugin-{node_name}"


def fake_nvml(count: int) -> FakeNvml:
    return FakeNvml.dgx(count, island=min(FAKE_ISLAND, count))


class GpuPluginActor:
    def __init__(
        self, node_name: str, plugin_dir: str = DEFAULT_PLUGIN_DIR, replicas: int = 1, fake_gpus: int = 0
    ) -> None:
        if fake_gpus < 0:
            raise ValueError(f"fake_gpus must be >= 0, got {fake_gpus}")
        self.node_name = node_name
        self.fake: FakeNvml | None = fake_nvml(fake_gpus) if fake_gpus > 0 else None
        config = GpuPluginConfig(replicas=replicas)
        if self.fake is not None:
            config.device_nodes = False  # see GpuPluginConfig.device_nodes
            config.backoff_s = FAKE_BACKOFF_S
        self.plugin: GpuPlugin | None = None
        self.reason: str | None = None
        try:
            nvml: Nvml = self.fake if self.fake is not None else PyNvml()
        except ImportError as e:  # no nvidia-ml-py: a node without GPUs, not a failure
            self.reason = f"nvidia-ml-py is not installed ({e})"
        else:
            self.plugin = GpuPlugin(nvml, plugin_dir, config)
            # False on a node without GPUs: the actor stays up and reports no inventory.
            if not self.plugin.start():
                self.reason = self.plugin.core.no_gpus.reason if self.plugin.core.no_gpus else "no GPUs"

    def ready(self) -> bool:
        return self.plugin is not None and self.reason is None

    def no_gpus_reason(self) -> str | None:
        return self.reason

    def device_count(self) -> int:
        """Advertised ids (GPUs times time-slicing replicas): the Node's ``nvidia.com/gpu``."""
        return len(self.plugin.core.devices()) if self.ready() and self.plugin else 0

    def inventory(self) -> dict[str, Any] | None:
        """The node's NodeDevices object in wire form (for the kubelet to write to the API)."""
        if not self.ready() or self.plugin is None:
            return None
        return self.plugin.core.inventory(self.node_name).to_dict()

    # -- fake GPUs only: fault injection for tests and demos -------------------------------------

    def inject_xid(self, device: int | str, xid: int, lose_device: bool = False) -> None:
        """Deliver an XID on a fake GPU; ``lose_device`` also makes it stop answering (XID 79's
        "fallen off the bus"), so it stays unhealthy until ``restore_gpu``."""
        fake = self._fake()
        if lose_device:
            fake.set_probe_failing(device)
        fake.inject_xid(device, xid)

    def set_gpu_utilization(self, device: int | str, gpu_percent: int, memory_used_bytes: int) -> None:
        """How busy a fake GPU is, as NVML would report it (``kray top --gpu`` shows it)."""
        self._fake().set_utilization(device, gpu_percent, memory_used_bytes)

    def restore_gpu(self, device: int | str) -> None:
        """A lost fake GPU answers again: the next re-probe readmits it."""
        self._fake().restore_device(device)

    def _fake(self) -> FakeNvml:
        if self.fake is None:
            raise RuntimeError(f"node {self.node_name} has real GPUs: fault injection is for fake GPUs only")
        return self.fake

    def stop(self) -> None:
        if self.plugin is not None:
            self.plugin.stop()


def start_on_node(
    ray_node_id: str, node_name: str, plugin_dir: str = DEFAULT_PLUGIN_DIR, replicas: int = 1, fake_gpus: int = 0
) -> Any:
    """Start (or find) the plugin actor of one Ray node; returns its handle."""
    cls = ray.remote(num_cpus=0)(GpuPluginActor)
    return cls.options(  # type: ignore[attr-defined]
        name=actor_name(node_name),
        max_concurrency=4,  # inventory calls from the kubelet while a test injects a fault
        namespace=RAY_NAMESPACE,
        lifetime="detached",
        # Like a device plugin DaemonSet: a crashed plugin comes back and registers again (its
        # devices read unhealthy meanwhile). Teardown kills it with no_restart.
        max_restarts=-1,
        get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=ray_node_id, soft=False),
    ).remote(node_name, plugin_dir, replicas, fake_gpus)


def fetch_inventory(node_name: str, timeout_s: float = 10.0) -> NodeDevices | None:
    """The node's inventory from its plugin actor (blocking; the kubelet calls it in a thread).
    None when the node has no GPU plugin or it found no GPUs."""
    try:
        handle = ray.get_actor(actor_name(node_name), namespace=RAY_NAMESPACE)
    except ValueError:
        return None
    raw: Any = ray.get(handle.inventory.remote(), timeout=timeout_s)
    return NodeDevices.model_validate(raw) if raw else None


def stop_plugin(node_name: str, timeout_s: float = 30.0) -> bool:
    """Stop a node's plugin cleanly (sockets removed) and remove its actor; False if none."""
    try:
        handle = ray.get_actor(actor_name(node_name), namespace=RAY_NAMESPACE)
    except ValueError:
        return False
    try:
        ray.get(handle.stop.remote(), timeout=timeout_s)
    except Exception as e:  # a dead or hung plugin is still removed below
        log.warning("GPU plugin of %s did not stop cleanly: %s", node_name, e)
    ray.kill(handle, no_restart=True)
    return True
