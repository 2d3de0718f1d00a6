"""Pod: the unit of scheduling. Spec/status split as in Kubernetes, with its defaults and checks."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from ..meta import Condition, KrayModel, ObjectMeta, Resource
from ..quantity import Quantity, ResourceList, add_resources
from ..registry import kind
from ..validation import FieldValueError
from .common import LocalObjectReference, check_unique
from .container import Container
from .scheduling import Affinity, PodSchedulingGate, Toleration, TopologySpreadConstraint
from .volume import Volume

PodPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]
RestartPolicy = Literal["Always", "OnFailure", "Never"]
DNSPolicy = Literal["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]


class Sysctl(KrayModel):
    name: str
    value: str


class PodSecurityContext(KrayModel):
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    fs_group: int | None = None
    fs_group_change_policy: Literal["OnRootMismatch", "Always"] | None = None
    supplemental_groups: list[int] | None = None
    sysctls: list[Sysctl] | None = None
    se_linux_options: dict[str, Any] | None = None
    seccomp_profile: dict[str, Any] | None = None


class HostAlias(KrayModel):
    ip: str
    hostnames: list[str] | None = None


class PodDNSConfig(KrayModel):
    nameservers: list[str] | None = None
    searches: list[str] | None = None
    options: list[dict[str, Any]] | None = None


class PodReadinessGate(KrayModel):
    condition_type: str


class PodSpec(KrayModel):
    containers: list[Container] = Field(default_factory=list)
    init_containers: list[Container] | None = None
    volumes: list[Volume] | None = None
    restart_policy: RestartPolicy = "Always"
    termination_grace_period_seconds: int | None = 30
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    dns_policy: DNSPolicy = "ClusterFirst"
    dns_config: PodDNSConfig | None = None
    node_selector: dict[str, str] | None = None
    node_name: str | None = None
    service_account_name: str | None = None
    service_account: str | None = None  # deprecated alias of serviceAccountName, kept for old manifests
    automount_service_account_token: bool | None = None
    host_network: bool | None = None
    host_pid: bool | None = Field(default=None, alias="hostPID")
    host_ipc: bool | None = Field(default=None, alias="hostIPC")
    share_process_namespace: bool | None = None
    security_context: PodSecurityContext | None = None
    image_pull_secrets: list[LocalObjectReference] | None = None
    hostname: str | None = None
    subdomain: str | None = None
    affinity: Affinity | None = None
    scheduler_name: str = "default-scheduler"
    tolerations: list[Toleration] | None = None
    host_aliases: list[HostAlias] | None = None
    priority_class_name: str | None = None
    priority: int | None = None
    preemption_policy: Literal["PreemptLowerPriority", "Never"] | None = None
    readiness_gates: list[PodReadinessGate] | None = None
    runtime_class_name: str | None = None
    enable_service_links: bool | None = None
    overhead: ResourceList | None = None
    topology_spread_constraints: list[TopologySpreadConstraint] | None = None
    scheduling_gates: list[PodSchedulingGate] | None = None

    @model_validator(mode="after")
    def _check(self) -> PodSpec:
        errors: list[tuple[str, str, str]] = []
        if not self.containers:
            errors.append(("containers", "Required value", "FieldValueRequired"))
        # Container names are unique across init and regular containers (they share log paths).
        named = [(f"initContainers[{i}].name", c.name) for i, c in enumerate(self.init_containers or [])]
        named += [(f"containers[{i}].name", c.name) for i, c in enumerate(self.containers)]
        errors += check_unique(named)
        errors += check_unique((f"volumes[{i}].name", v.name) for i, v in enumerate(self.volumes or []))
        volume_names = {v.name for v in self.volumes or []}
        for field, group in (("initContainers", self.init_containers or []), ("containers", self.containers)):
            for i, c in enumerate(group):
                for j, m in enumerate(c.volume_mounts or []):
                    if m.name not in volume_names:
                        errors.append(
                            (
                                f"{field}[{i}].volumeMounts[{j}].name",
                                f'Not found: "{m.name}"',
                                "FieldValueNotFound",
                            )
                        )
        if self.restart_policy != "Always":
            for i, c in enumerate(self.containers):
                if c.restart_policy is not None:
                    errors.append(
                        (
                            f"containers[{i}].restartPolicy",
                            "Forbidden: may not be set for non-init containers",
                            "FieldValueForbidden",
                        )
                    )
        if errors:
            raise FieldValueError(errors)
        return self

    def all_containers(self) -> list[Container]:
        return [*(self.init_containers or []), *self.containers]

    def resource_requests(self) -> ResourceList:
        """What the scheduler reserves: max(sum of app containers, each init container) + overhead.

        Init containers run one at a time before the app containers, so the pod needs the larger
        of the two, per resource (Kubernetes' ``PodRequests``).
        """
        total = add_resources(*(c.requests() for c in self.containers))
        for init in self.init_containers or []:
            for name, q in init.requests().items():
                if q > total.get(name, _ZERO):
                    total[name] = q
        return add_resources(total, self.overhead)

    def resource_limits(self) -> ResourceList:
        """Kubernetes' ``PodLimits``: max(sum of app containers, each init container), plus
        overhead for the resources that are limited at all (an unlimited one stays unlimited)."""
        total = add_resources(*((c.resources.limits if c.resources else None) for c in self.containers))
        for init in self.init_containers or []:
            for name, q in ((init.resources.limits if init.resources else None) or {}).items():
                if q > total.get(name, _ZERO):
                    total[name] = q
        return add_resources(total, {k: v for k, v in (self.overhead or {}).items() if k in total})


_ZERO = Quantity(0)


class ContainerStateWaiting(KrayModel):
    reason: str | None = None
    message: str | None = None


class ContainerStateRunning(KrayModel):
    started_at: datetime | None = None


class ContainerStateTerminated(KrayModel):
    exit_code: int
    signal: int | None = None
    reason: str | None = None
    message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    container_id: str | None = Field(default=None, alias="containerID")


class ContainerState(KrayModel):
    waiting: ContainerStateWaiting | None = None
    running: ContainerStateRunning | None = None
    terminated: ContainerStateTerminated | None = None


class ContainerStatus(KrayModel):
    name: str
    state: ContainerState | None = None
    last_state: ContainerState | None = None
    ready: bool = False
    started: bool | None = None
    restart_count: int = 0
    image: str = ""
    image_id: str = Field(default="", alias="imageID")
    container_id: str | None = Field(default=None, alias="containerID")


class PodIP(KrayModel):
    ip: str


class PodStatus(KrayModel):
    phase: PodPhase | None = None
    conditions: list[Condition] | None = None
    message: str | None = None
    reason: str | None = None
    nominated_node_name: str | None = None
    host_ip: str | None = Field(default=None, alias="hostIP")
    host_ips: list[PodIP] | None = Field(default=None, alias="hostIPs")
    pod_ip: str | None = Field(default=None, alias="podIP")
    pod_ips: list[PodIP] | None = Field(default=None, alias="podIPs")
    start_time: datetime | None = None
    init_container_statuses: list[ContainerStatus] | None = None
    container_statuses: list[ContainerStatus] | None = None
    qos_class: Literal["Guaranteed", "Burstable", "BestEffort"] | None = Field(default=None, alias="qosClass")

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions or [] if c.type == type_), None)


@kind
class Pod(Resource):
    KIND: ClassVar[str] = "Pod"
    PLURAL: ClassVar[str] = "pods"
    SINGULAR: ClassVar[str] = "pod"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("po",)
    HAS_STATUS_SUBRESOURCE: ClassVar[bool] = True

    spec: PodSpec
    status: PodStatus | None = None

    def qos_class(self) -> str:
        return qos_class(self.spec)


class PodTemplateSpec(KrayModel):
    """The pod template embedded in workload kinds (Deployment, Job, ...)."""

    metadata: ObjectMeta | None = None
    spec: PodSpec


def qos_class(spec: PodSpec) -> Literal["Guaranteed", "Burstable", "BestEffort"]:
    """Kubernetes' QoS rule over cpu and memory.

    All limits set and equal to requests -> Guaranteed; nothing set -> BestEffort; else Burstable.
    """
    any_set, guaranteed = False, True
    for c in spec.all_containers():
        res = c.resources
        requests, limits = (res.requests or {}) if res else {}, (res.limits or {}) if res else {}
        for name in ("cpu", "memory"):
            req, lim = requests.get(name), limits.get(name)
            if (req is not None and not req.is_zero()) or (lim is not None and not lim.is_zero()):
                any_set = True
            # A missing request defaults to the limit, so only a missing limit or a mismatch breaks it.
            if lim is None or (req is not None and req != lim):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
