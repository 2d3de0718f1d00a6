"""Build the node's ``NodeDevices`` object from what the GPU plugin sees."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kray.crds.devices import LinkType, NodeDevice, NodeDevices, NodeDevicesSpec, TopologyGroup
from kray.crds.meta import ObjectMeta

from .allocation import Topology
from .nvml import (
    TOPOLOGY_HOSTBRIDGE,
    TOPOLOGY_INTERNAL,
    TOPOLOGY_MULTIPLE,
    TOPOLOGY_NODE,
    TOPOLOGY_SINGLE,
    GpuInfo,
    PairTopology,
)

_LEVEL_NAMES: dict[int, LinkType] = {
    TOPOLOGY_INTERNAL: "PIX",
    TOPOLOGY_SINGLE: "PIX",
    TOPOLOGY_MULTIPLE: "PXB",
    TOPOLOGY_HOSTBRIDGE: "PHB",
    TOPOLOGY_NODE: "NODE",
}


def link_type(t: PairTopology) -> LinkType:
    if t.nvlinks > 0:
        return "NVLink"
    return _LEVEL_NAMES.get(t.ancestor, "SYS")


def build_node_devices(
    node_name: str,
    gpus: Sequence[GpuInfo],
    topology: Topology,
    unhealthy: Mapping[str, str],
    resource_name: str = "nvidia.com/gpu",
    replicas: int = 1,
) -> NodeDevices:
    """One object per node (named after it): devices with health, NVLink islands, link matrix."""
    devices = [
        NodeDevice(
            name=g.uuid,
            uuid=g.uuid,
            index=g.index,
            model=g.name,
            memory_bytes=g.memory_bytes,
            compute_capability=g.compute_capability,
            pci_bus_id=g.pci_bus_id,
            health="Unhealthy" if g.uuid in unhealthy else "Healthy",
            health_reason=unhealthy.get(g.uuid),
            mig_enabled=g.mig_enabled,
            numa_node=g.numa_node,
            replicas=replicas,
        )
        for g in gpus
    ]
    groups = [
        TopologyGroup(name=f"nvlink-{n}", link_type="NVLink", devices=island)
        for n, island in enumerate(i for i in topology.islands() if len(i) > 1)
    ]
    links: list[list[LinkType]] = [
        ["SELF" if a.uuid == b.uuid else link_type(topology.pair(a.uuid, b.uuid)) for b in gpus] for a in gpus
    ]
    spec = NodeDevicesSpec(
        node_name=node_name, driver=resource_name, devices=devices, topology_groups=groups, links=links
    )
    return NodeDevices(metadata=ObjectMeta(name=node_name), spec=spec)
