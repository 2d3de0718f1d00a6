"""Service (a stable virtual IP and DNS name over pods) and Endpoints (the pods behind it)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from ..meta import Condition, KrayModel, Resource
from ..registry import kind
from ..validation import FieldValueError
from .common import IntOrString, ObjectReference, check_port, check_unique
from .container import Protocol

ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]


class ServicePort(KrayModel):
    name: str | None = None
    protocol: Protocol = "TCP"
    app_protocol: str | None = None
    port: int
    target_port: IntOrString | None = None
    node_port: int | None = None

    @field_validator("port", "node_port")
    @classmethod
    def _port_range(cls, v: int | None) -> int | None:
        return check_port(v)

    @field_validator("target_port")
    @classmethod
    def _target_port(cls, v: IntOrString | None) -> IntOrString | None:
        return check_port(v) if isinstance(v, int) else v

    @model_validator(mode="after")
    def _default_target(self) -> ServicePort:
        # Kubernetes' defaulting: targetPort is the service port unless set.
        if self.target_port is None or self.target_port == "":
            self.target_port = self.port
        return self


class SessionAffinityConfig(KrayModel):
    client_ip: dict[str, Any] | None = Field(default=None, alias="clientIP")


class ServiceSpec(KrayModel):
    type: ServiceType = "ClusterIP"
    selector: dict[str, str] | None = None
    ports: list[ServicePort] | None = None
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    cluster_ips: list[str] | None = Field(default=None, alias="clusterIPs")
    external_ips: list[str] | None = Field(default=None, alias="externalIPs")
    external_name: str | None = None
    session_affinity: Literal["ClientIP", "None"] = "None"
    session_affinity_config: SessionAffinityConfig | None = None
    publish_not_ready_addresses: bool | None = None
    load_balancer_ip: str | None = Field(default=None, alias="loadBalancerIP")
    load_balancer_class: str | None = None
    external_traffic_policy: Literal["Cluster", "Local"] | None = None
    internal_traffic_policy: Literal["Cluster", "Local"] | None = None
    ip_families: list[Literal["IPv4", "IPv6"]] | None = None
    ip_family_policy: Literal["SingleStack", "PreferDualStack", "RequireDualStack"] | None = None
    health_check_node_port: int | None = None
    allocate_load_balancer_node_ports: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> ServiceSpec:
        errors: list[tuple[str, str, str]] = []
        ports = self.ports or []
        if self.type == "ExternalName":
            if not self.external_name:
                errors.append(("externalName", "Required value", "FieldValueRequired"))
        elif not ports and self.cluster_ip != "None":
            errors.append(("ports", "Required value", "FieldValueRequired"))
        if len(ports) > 1:
            # Endpoints and DNS SRV records refer to ports by name once there is more than one.
            errors += [
                (f"ports[{i}].name", "Required value", "FieldValueRequired") for i, p in enumerate(ports) if not p.name
            ]
        errors += check_unique((f"ports[{i}].name", p.name) for i, p in enumerate(ports) if p.name)
        if self.type == "ClusterIP":
            errors += [
                (
                    f"ports[{i}].nodePort",
                    "Forbidden: may not be used when `type` is 'ClusterIP'",
                    "FieldValueForbidden",
                )
                for i, p in enumerate(ports)
                if p.node_port
            ]
        if errors:
            raise FieldValueError(errors)
        return self


class PortStatus(KrayModel):
    port: int
    protocol: Protocol
    error: str | None = None


class LoadBalancerIngress(KrayModel):
    ip: str | None = None
    hostname: str | None = None
    ip_mode: str | None = None
    ports: list[PortStatus] | None = None


class LoadBalancerStatus(KrayModel):
    ingress: list[LoadBalancerIngress] | None = None


class ServiceStatus(KrayModel):
    load_balancer: LoadBalancerStatus | None = None
    conditions: list[Condition] | None = None


@kind
class Service(Resource):
    KIND: ClassVar[str] = "Service"
    PLURAL: ClassVar[str] = "services"
    SINGULAR: ClassVar[str] = "service"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("svc",)
    HAS_STATUS_SUBRESOURCE: ClassVar[bool] = True
    # Service names are DNS-1035 labels in Kubernetes (they become env var names and DNS labels).
    NAME_FORMAT: ClassVar[str] = "dns1035"

    # Required (no default): an empty ServiceSpec is invalid, since it has no ports.
    spec: ServiceSpec
    status: ServiceStatus | None = None


class EndpointAddress(KrayModel):
    ip: str
    hostname: str | None = None
    node_name: str | None = None
    target_ref: ObjectReference | None = None


class EndpointPort(KrayModel):
    name: str | None = None
    port: int
    protocol: Protocol = "TCP"
    app_protocol: str | None = None

    @field_validator("port")
    @classmethod
    def _port_range(cls, v: int) -> int | None:
        return check_port(v)


class EndpointSubset(KrayModel):
    addresses: list[EndpointAddress] | None = None
    not_ready_addresses: list[EndpointAddress] | None = None
    ports: list[EndpointPort] | None = None


@kind
class Endpoints(Resource):
    KIND: ClassVar[str] = "Endpoints"
    PLURAL: ClassVar[str] = "endpoints"
    SINGULAR: ClassVar[str] = "endpoints"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("ep",)

    subsets: list[EndpointSubset] | None = None
