"""The NVIDIA GPU device plugin: ``nvidia.com/gpu`` from NVML, served over the v1beta1 API.

``GpuPluginCore`` holds everything about the devices (discovery, health, preferred allocation,
Allocate answers, the NodeDevices inventory, each GPU's utilization for kray's DeviceUsage
extension) with NVML and the clock handed in; ``GpuPlugin`` serves it on
``<plugin_dir>/nvidia.sock`` and registers with the device manager. No Ray here:
``actor.py`` wraps this for a Ray node.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field

from kray.crds.devices import NodeDevices

from .allocation import DevicePaths, Topology, advertised_ids, allocate_response, base_uuid, preferred_allocation
from .api import HEALTHY, UNHEALTHY, pb, usage_pb
from .health import Clock, HealthMonitor, XidPolicy
from .inventory import build_node_devices
from .nvml import DeviceGoneError, GpuInfo, NoGPUs, Nvml, PyNvml, discover
from .server import PluginServer, Versioned

log = logging.getLogger(__name__)

RESOURCE_NAME = "nvidia.com/gpu"
DEFAULT_PLUGIN_DIR = "/var/lib/kray/device-plugins"
SOCKET_NAME = "nvidia.sock"


@dataclass
class GpuPluginConfig:
    resource_name: str = RESOURCE_NAME
    # Time-slicing: advertise each GPU as this many ids (<uuid>::<i>), shared without isolation.
    replicas: int = 1
    dev_root: str = "/dev"
    # Whether Allocate hands out /dev/nvidia* nodes (and so cgroup device rules). Off only for
    # fake GPUs: they have no device nodes, and a spec naming a missing node would fail the
    # container's creation, so a fake allocation is the NVIDIA env alone (what a CPU-only
    # container can still print and check).
    device_nodes: bool = True
    xid_policy: XidPolicy = field(default_factory=XidPolicy)
    backoff_s: float = 10.0
    max_backoff_s: float = 300.0
    poll_interval_s: float = 5.0
    health_tick_s: float = 1.0


def _none(path: str) -> bool:
    return False


def local_gpus(nvml: Nvml | None = None) -> list[GpuInfo] | NoGPUs:
    """What NVML finds on this host, serving nothing: whether a node needs a GPU plugin.

    A missing nvidia-ml-py counts as "no GPUs" (as a missing libnvidia-ml does), never an error."""
    if nvml is None:
        try:
            nvml = PyNvml()
        except ImportError as e:
            return NoGPUs(f"nvidia-ml-py is not installed ({e})")
    try:
        found = discover(nvml)
    except Exception as e:  # a broken driver: say why, but a node without GPUs still comes up
        return NoGPUs(f"NVML failed: {e!r}")
    with contextlib.suppress(Exception):
        nvml.shutdown()
    return found


class GpuPluginCore:
    """A ``PluginCore`` over NVML. Check ``no_gpus`` before serving: it is set on GPU-less hosts."""

    def __init__(self, nvml: Nvml, config: GpuPluginConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or GpuPluginConfig()
        self.resource_name = self.config.resource_name
        self.nvml = nvml
        found = discover(nvml)
        self.no_gpus: NoGPUs | None = found if isinstance(found, NoGPUs) else None
        # MIG-enabled GPUs cannot be handed out whole; a MIG strategy would advertise their slices.
        self.gpus: list[GpuInfo] = [g for g in found if not g.mig_enabled] if isinstance(found, list) else []
        self.topology = Topology.from_nvml(nvml, self.gpus)
        self.paths = DevicePaths(
            dev_root=self.config.dev_root, exists=os.path.exists if self.config.device_nodes else _none
        )
        self._versions = Versioned()
        self.health = HealthMonitor(
            nvml,
            self.gpus,
            policy=self.config.xid_policy,
            clock=clock,
            backoff_s=self.config.backoff_s,
            max_backoff_s=self.config.max_backoff_s,
            poll_interval_s=self.config.poll_interval_s,
            on_change=self._versions.bump,
        )
        self._ids = advertised_ids(self.gpus, self.config.replicas)

    def start(self) -> None:
        """Start watching health in the background (tests may call ``health.step`` instead)."""
        self.health.start(tick_s=self.config.health_tick_s)

    def stop(self) -> None:
        self.health.stop()
        self.nvml.shutdown()

    # -- PluginCore -----------------------------------------------------------------------------

    def options(self) -> pb.DevicePluginOptions:
        return pb.DevicePluginOptions(get_preferred_allocation_available=True)

    def devices(self) -> list[pb.Device]:
        healthy = self.health.healthy()
        numa = {g.uuid: g.numa_node for g in self.gpus}
        out = []
        for d in self._ids:
            u = base_uuid(d)
            dev = pb.Device(ID=d, health=HEALTHY if u in healthy else UNHEALTHY)
            if numa.get(u) is not None:
                dev.topology.nodes.add(ID=numa[u])
            out.append(dev)
        return out

    def wait_changed(self, seen: int, timeout_s: float) -> int:
        return self._versions.wait_changed(seen, timeout_s)

    def preferred(self, available: list[str], must_include: list[str], size: int) -> list[str]:
        healthy = self.health.healthy()
        usable = [d for d in available if base_uuid(d) in healthy]
        return preferred_allocation(usable, must_include, size, self.topology)

    def allocate(self, ids: list[str]) -> pb.ContainerAllocateResponse:
        return allocate_response(ids, self.gpus, self.paths, self.config.replicas)

    def pre_start(self, ids: list[str]) -> None:
        return None

    # -- kray's DeviceUsage extension -----------------------------------------------------------

    def usage(self) -> list[usage_pb.DeviceUsageEntry]:
        """Each GPU once, by UUID (time-sliced replicas share it); a GPU that does not answer
        is listed without figures, so a container holding it still shows which one it holds."""
        out = []
        for g in self.gpus:
            entry = usage_pb.DeviceUsageEntry(id=g.uuid, model=g.name)
            try:
                now = self.nvml.utilization(g.index)
            except DeviceGoneError:
                out.append(entry)
                continue
            if now.gpu_percent is not None:
                entry.gpu_percent = now.gpu_percent
            if now.memory_used_bytes is not None:
                entry.memory_used_bytes = now.memory_used_bytes
            if now.memory_total_bytes is not None:
                entry.memory_total_bytes = now.memory_total_bytes
            out.append(entry)
        return out

    # -- inventory ------------------------------------------------------------------------------

    def inventory(self, node_name: str) -> NodeDevices:
        return build_node_devices(
            node_name,
            self.gpus,
            self.topology,
            self.health.unhealthy(),
            resource_name=self.resource_name,
            replicas=self.config.replicas,
        )


class GpuPlugin:
    """Core + server: ``start()`` discovers, serves and registers; returns False without GPUs."""

    def __init__(
        self,
        nvml: Nvml,
        plugin_dir: str | os.PathLike[str] = DEFAULT_PLUGIN_DIR,
        config: GpuPluginConfig | None = None,
        clock: Clock | None = None,
        socket_name: str = SOCKET_NAME,
        watch_interval_s: float = 1.0,
    ) -> None:
        self.core = GpuPluginCore(nvml, config, clock)
        self.server = PluginServer(self.core, plugin_dir, socket_name, watch_interval_s=watch_interval_s)

    def start(self, register: bool = True, watch_health: bool = True) -> bool:
        if self.core.no_gpus is not None:
            log.info("no NVIDIA GPUs on this node: %s", self.core.no_gpus.reason)
            return False
        if watch_health:
            self.core.start()
        self.server.start(register=register)
        return True

    def stop(self) -> None:
        self.server.stop()
        self.core.stop()
