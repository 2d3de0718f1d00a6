"""NodeDevices: the accelerators of one node as its device plugin sees them.

In the spirit of Kubernetes' DRA ResourceSlice: a cluster-scoped object per node that carries
what an extended-resource count (``nvidia.com/gpu: 8``) cannot: each device's model, memory,
health and how the devices are wired together, so that a topology-aware scheduler can place a
gang on GPUs that share an NVLink island.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .meta import KrayModel, PrinterColumn, Resource
from .registry import kind

DeviceHealth = Literal["Healthy", "Unhealthy"]
# How two devices talk, best first: NVLink, one PCIe switch, several switches, the host
# bridge, the same NUMA node, across sockets (nvidia-smi topo -m's NV#, PIX, PXB, PHB, NODE, SYS).
LinkType = Literal["NVLink", "PIX", "PXB", "PHB", "NODE", "SYS", "SELF"]


class NodeDevice(KrayModel):
    name: str  # the id the plugin advertises (the GPU UUID)
    uuid: str | None = None
    index: int | None = None
    model: str | None = None
    memory_bytes: int | None = None
    compute_capability: str | None = None
    pci_bus_id: str | None = Field(default=None, alias="pciBusID")
    health: DeviceHealth = "Healthy"
    health_reason: str | None = None
    mig_enabled: bool = Field(default=False, alias="migEnabled")
    numa_node: int | None = None
    # Time-slicing: how many pods may share this device (1: exclusive).
    replicas: int = 1


class TopologyGroup(KrayModel):
    """Devices joined by one interconnect, e.g. an NVLink island of four GPUs."""

    name: str
    link_type: LinkType = "NVLink"
    devices: list[str] = Field(default_factory=list)


class NodeDevicesSpec(KrayModel):
    node_name: str
    driver: str = "nvidia.com/gpu"  # the extended resource these devices are advertised as
    devices: list[NodeDevice] = Field(default_factory=list)
    topology_groups: list[TopologyGroup] = Field(default_factory=list)
    # links[i][j] is the link between devices[i] and devices[j] ("SELF" on the diagonal).
    links: list[list[LinkType]] | None = None

    def healthy(self) -> list[NodeDevice]:
        return [d for d in self.devices if d.health == "Healthy"]

    def group_of(self, device: str) -> TopologyGroup | None:
        return next((g for g in self.topology_groups if device in g.devices), None)


@kind
class NodeDevices(Resource):
    GROUP: ClassVar[str] = "kray.io"
    VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "NodeDevices"
    PLURAL: ClassVar[str] = "nodedevices"
    SINGULAR: ClassVar[str] = "nodedevices"
    NAMESPACED: ClassVar[bool] = False
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("nd",)
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(name="Driver", type="string", json_path=".spec.driver"),
        PrinterColumn(name="Devices", type="string", json_path=".spec.devices[*].index"),
        PrinterColumn(name="Unhealthy", type="string", json_path='.spec.devices[?(@.health=="Unhealthy")].index'),
        PrinterColumn(name="Model", type="string", json_path=".spec.devices[0].model"),
        PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
        PrinterColumn(name="Islands", type="string", json_path=".spec.topologyGroups[*].name", priority=1),
    )

    spec: NodeDevicesSpec
