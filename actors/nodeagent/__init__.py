"""The node agent: follows Ray's membership, gives every Ray node a Node, a kubelet, a proxy
(and a GPU plugin where there are GPUs), retires departed nodes, and asks Ray's autoscaler for
room for unschedulable Pods. ``core.NodeAgent`` is Ray-free; ``actor.deploy_node_agent`` hosts it.
"""

from .core import NodeAgent, node_labels, node_name_for, pod_bundle, unschedulable
from .ports import Api, Autoscaler, Deployer, Membership, NodePlan, RayNode

__all__ = [
    "Api",
    "Autoscaler",
    "Deployer",
    "Membership",
    "NodeAgent",
    "NodePlan",
    "RayNode",
    "node_labels",
    "node_name_for",
    "pod_bundle",
    "unschedulable",
]
