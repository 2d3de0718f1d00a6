"""Node: a machine (here, a Ray node) that runs pods, with its capacity including GPUs."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..meta import Condition, KrayModel, Resource
from ..quantity import ResourceList
from ..registry import kind
from .scheduling import Taint


class NodeSpec(KrayModel):
    pod_cidr: str | None = Field(default=None, alias="podCIDR")
    pod_cidrs: list[str] | None = Field(default=None, alias="podCIDRs")
    provider_id: str | None = Field(default=None, alias="providerID")
    unschedulable: bool | None = None
    taints: list[Taint] | None = None


class NodeAddress(KrayModel):
    type: str  # InternalIP, ExternalIP, Hostname, ...
    address: str


class NodeSystemInfo(KrayModel):
    machine_id: str = Field(default="", alias="machineID")
    system_uuid: str = Field(default="", alias="systemUUID")
    boot_id: str = Field(default="", alias="bootID")
    kernel_version: str = ""
    os_image: str = ""
    container_runtime_version: str = ""
    kubelet_version: str = ""
    kube_proxy_version: str = ""
    operating_system: str = ""
    architecture: str = ""


class DaemonEndpoint(KrayModel):
    # Kubernetes really spells this field "Port" (capitalised) on the wire.
    port: int = Field(alias="Port")


class NodeDaemonEndpoints(KrayModel):
    kubelet_endpoint: DaemonEndpoint | None = None


class ContainerImage(KrayModel):
    names: list[str] | None = None
    size_bytes: int | None = None


class NodeStatus(KrayModel):
    capacity: ResourceList | None = None
    allocatable: ResourceList | None = None
    phase: str | None = None
    conditions: list[Condition] | None = None
    addresses: list[NodeAddress] | None = None
    daemon_endpoints: NodeDaemonEndpoints | None = None
    node_info: NodeSystemInfo | None = None
    images: list[ContainerImage] | None = None
    volumes_in_use: list[str] | None = None

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions or [] if c.type == type_), None)

    def address(self, type_: Literal["InternalIP", "ExternalIP", "Hostname"] = "InternalIP") -> str | None:
        return next((a.address for a in self.addresses or [] if a.type == type_), None)


@kind
class Node(Resource):
    KIND: ClassVar[str] = "Node"
    PLURAL: ClassVar[str] = "nodes"
    SINGULAR: ClassVar[str] = "node"
    NAMESPACED: ClassVar[bool] = False
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("no",)
    HAS_STATUS_SUBRESOURCE: ClassVar[bool] = True

    spec: NodeSpec = Field(default_factory=NodeSpec)
    status: NodeStatus | None = None

    def is_ready(self) -> bool:
        cond = self.status.condition("Ready") if self.status else None
        return cond is not None and cond.status == "True"
