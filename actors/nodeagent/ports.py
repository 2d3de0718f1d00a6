"""The node agent's ports: Ray membership, deploying per-node actors, the autoscaler, the API.

The core never imports Ray; ``actor.py`` has the real adapters and ``fakes.py`` in-memory ones
with the same semantics for tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class RayNode:
    """One entry of Ray's membership (``ray.nodes()``), reduced to what the agent uses."""

    node_id: str
    alive: bool
    hostname: str = ""
    address: str = ""  # NodeManagerAddress: the node's IP as Ray sees it
    resources: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def gpus(self) -> int:
        return int(self.resources.get("GPU", 0))


@dataclass(frozen=True)
class NodePlan:
    """What the agent deploys on one Ray node."""

    node_id: str
    node_name: str
    pod_cidr: str
    node_ip: str
    labels: dict[str, str] = field(default_factory=dict)
    cpu: str | None = None  # capacity hint from the Ray node's CPU resource
    gpus: int = 0
    # The node's own pod network names (bridge ``<prefix>0``, netns/veths ``<prefix>...``) and
    # state folder; None: the deployer's defaults. Several nodes on one machine need their own.
    net_prefix: str | None = None
    root: str | None = None
    dns_ip: str | None = None  # where the node's DNS server listens and its pods look; None: no DNS


class Membership(Protocol):
    def nodes(self) -> list[RayNode]:
        """Every node Ray knows of, alive or dead."""
        ...


class Deployer(Protocol):
    """Starts (idempotently) and forgets the actors of one node."""

    def deploy_kubelet(self, plan: NodePlan) -> None: ...

    def deploy_proxy(self, plan: NodePlan) -> None: ...

    def deploy_gpu_plugin(self, plan: NodePlan) -> None: ...

    def deploy_dns(self, plan: NodePlan) -> None: ...

    def remove(self, node_name: str) -> None:
        """Drop the node's actors (best effort: the node is gone, so they mostly are too)."""
        ...


class Autoscaler(Protocol):
    def request(self, bundles: list[dict[str, float]]) -> None:
        """Replace the standing request (``ray.autoscaler.sdk.request_resources``); [] clears it."""
        ...


class Api(Protocol):
    """The API calls the agent makes; ``kray.client.AsyncClient`` satisfies it."""

    async def get(self, kind: Any, name: str, namespace: str | None = None) -> Any: ...

    async def list(self, kind: Any, namespace: str | None = None, *, all_namespaces: bool = False) -> Any: ...

    async def create(self, obj: Any) -> Any: ...

    async def update(self, obj: Any) -> Any: ...

    async def delete(self, kind: Any, name: str, namespace: str | None = None) -> Any: ...
