"""Hollow nodes: fake kubelets (registration, lease heartbeats, pods marked Running) in bulk."""

from .nodes import LEASE_NAMESPACE, HollowNodes, NodeTemplate

__all__ = ["LEASE_NAMESPACE", "HollowNodes", "NodeTemplate"]
