"""The in-tree plugins, by name, and the default profile's plugin list."""

from __future__ import annotations

from ..framework import PluginFactory
from . import (
    coscheduling,
    default_binder,
    default_preemption,
    gpu_topology,
    image_locality,
    inter_pod_affinity,
    node_affinity,
    node_name,
    node_ports,
    node_resources_fit,
    node_unschedulable,
    pod_topology_spread,
    taint_toleration,
    volume_binding,
)

REGISTRY: dict[str, PluginFactory] = {
    node_unschedulable.NAME: node_unschedulable.NodeUnschedulable,
    node_name.NAME: node_name.NodeName,
    taint_toleration.NAME: taint_toleration.TaintToleration,
    node_affinity.NAME: node_affinity.NodeAffinity,
    node_ports.NAME: node_ports.NodePorts,
    node_resources_fit.NAME: node_resources_fit.NodeResourcesFit,
    pod_topology_spread.NAME: pod_topology_spread.PodTopologySpread,
    inter_pod_affinity.NAME: inter_pod_affinity.InterPodAffinity,
    default_preemption.NAME: default_preemption.DefaultPreemption,
    coscheduling.NAME: coscheduling.Coscheduling,
    gpu_topology.NAME: gpu_topology.GpuTopology,
    image_locality.NAME: image_locality.ImageLocality,
    volume_binding.NAME: volume_binding.VolumeBinding,
    default_binder.NAME: default_binder.DefaultBinder,
}

# (name, score weight), in the order each extension point runs them. Cheap filters go first so
# most rejections cost one call; the weights are kube-scheduler's defaults.
DEFAULT_PLUGINS: list[tuple[str, int]] = [
    (coscheduling.NAME, 1),
    (node_unschedulable.NAME, 1),
    (node_name.NAME, 1),
    (taint_toleration.NAME, 3),
    (node_affinity.NAME, 2),
    (node_ports.NAME, 1),
    (node_resources_fit.NAME, 1),
    # After NodeResourcesFit, as kube-scheduler; its PreBind runs before DefaultBinder binds.
    (volume_binding.NAME, 1),
    # Heavy: for a GPU pod, NVLink-island placement outweighs cpu/memory balance.
    (gpu_topology.NAME, 5),
    (image_locality.NAME, 1),
    (pod_topology_spread.NAME, 2),
    (inter_pod_affinity.NAME, 2),
    (default_preemption.NAME, 1),
    (default_binder.NAME, 1),
]
