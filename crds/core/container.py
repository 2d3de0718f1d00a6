"""Containers: image, command, env, ports, resources, probes, security context, lifecycle."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..meta import KrayModel
from ..quantity import ResourceList
from ..validation import FieldValueError, invalid, is_dns1123_label, is_valid_label_value
from .common import IntOrString, check_port

Protocol = Literal["TCP", "UDP", "SCTP"]
PullPolicy = Literal["Always", "IfNotPresent", "Never"]


# --- env ------------------------------------------------------------------------------------------


class ObjectFieldSelector(KrayModel):
    field_path: str
    api_version: str | None = None


class ResourceFieldSelector(KrayModel):
    resource: str
    container_name: str | None = None
    divisor: str | None = None


class KeySelector(KrayModel):
    """configMapKeyRef / secretKeyRef: one key of a named ConfigMap or Secret."""

    key: str
    name: str | None = None
    optional: bool | None = None


class EnvVarSource(KrayModel):
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None
    config_map_key_ref: KeySelector | None = None
    secret_key_ref: KeySelector | None = None


class EnvVar(KrayModel):
    name: str
    value: str | None = None
    value_from: EnvVarSource | None = None


class NamedSourceRef(KrayModel):
    name: str | None = None
    optional: bool | None = None


class EnvFromSource(KrayModel):
    prefix: str | None = None
    config_map_ref: NamedSourceRef | None = None
    secret_ref: NamedSourceRef | None = None


# --- ports, resources, mounts ---------------------------------------------------------------------


class ContainerPort(KrayModel):
    name: str | None = None
    container_port: int
    host_port: int | None = None
    protocol: Protocol = "TCP"
    host_ip: str | None = Field(default=None, alias="hostIP")

    @field_validator("container_port", "host_port")
    @classmethod
    def _port_range(cls, v: int | None) -> int | None:
        return check_port(v)


class ResourceClaim(KrayModel):
    name: str


class ResourceRequirements(KrayModel):
    requests: ResourceList | None = None
    limits: ResourceList | None = None
    claims: list[ResourceClaim] | None = None


class VolumeMount(KrayModel):
    name: str
    mount_path: str
    read_only: bool | None = None
    sub_path: str | None = None
    sub_path_expr: str | None = None
    mount_propagation: str | None = None


class VolumeDevice(KrayModel):
    name: str
    device_path: str


# --- probes and lifecycle hooks -------------------------------------------------------------------


class ExecAction(KrayModel):
    command: list[str] | None = None


class HTTPHeader(KrayModel):
    name: str
    value: str


class HTTPGetAction(KrayModel):
    path: str | None = None
    port: IntOrString
    host: str | None = None
    scheme: Literal["HTTP", "HTTPS"] = "HTTP"
    http_headers: list[HTTPHeader] | None = None


class TCPSocketAction(KrayModel):
    port: IntOrString
    host: str | None = None


class GRPCAction(KrayModel):
    port: int
    service: str | None = None


class SleepAction(KrayModel):
    seconds: int


_HANDLERS = ("exec", "http_get", "tcp_socket", "grpc")


def _check_one_handler(obj: KrayModel, names: tuple[str, ...]) -> None:
    count = sum(getattr(obj, n) is not None for n in names)
    if count == 0:
        raise FieldValueError.one("Required value: must specify a handler type", "FieldValueRequired")
    if count > 1:
        raise FieldValueError.one("Forbidden: may not specify more than 1 handler type", "FieldValueForbidden")


class Probe(KrayModel):
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    grpc: GRPCAction | None = None
    initial_delay_seconds: int | None = None
    period_seconds: int = 10
    timeout_seconds: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace_period_seconds: int | None = None

    @model_validator(mode="after")
    def _one_handler(self) -> Probe:
        _check_one_handler(self, _HANDLERS)
        return self

    @field_validator("period_seconds", "timeout_seconds", "success_threshold", "failure_threshold")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise FieldValueError.one(invalid(v, "must be greater than or equal to 1"))
        return v


class LifecycleHandler(KrayModel):
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    sleep: SleepAction | None = None

    @model_validator(mode="after")
    def _one_handler(self) -> LifecycleHandler:
        _check_one_handler(self, ("exec", "http_get", "tcp_socket", "sleep"))
        return self


class Lifecycle(KrayModel):
    post_start: LifecycleHandler | None = None
    pre_stop: LifecycleHandler | None = None


# --- security -----------------------------------------------------------------------------------


class Capabilities(KrayModel):
    add: list[str] | None = None
    drop: list[str] | None = None


class SeccompProfile(KrayModel):
    type: Literal["RuntimeDefault", "Unconfined", "Localhost"]
    localhost_profile: str | None = None


class SELinuxOptions(KrayModel):
    user: str | None = None
    role: str | None = None
    type: str | None = None
    level: str | None = None


class SecurityContext(KrayModel):
    privileged: bool | None = None
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    read_only_root_filesystem: bool | None = None
    allow_privilege_escalation: bool | None = None
    capabilities: Capabilities | None = None
    se_linux_options: SELinuxOptions | None = Field(default=None, alias="seLinuxOptions")
    seccomp_profile: SeccompProfile | None = None
    proc_mount: str | None = None


# --- the container ------------------------------------------------------------------------------


class Container(KrayModel):
    name: str
    image: str
    image_pull_policy: PullPolicy | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str | None = None
    env: list[EnvVar] | None = None
    env_from: list[EnvFromSource] | None = None
    ports: list[ContainerPort] | None = None
    resources: ResourceRequirements | None = None
    volume_mounts: list[VolumeMount] | None = None
    volume_devices: list[VolumeDevice] | None = None
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    lifecycle: Lifecycle | None = None
    security_context: SecurityContext | None = None
    restart_policy: Literal["Always"] | None = None  # only for sidecar init containers
    stdin: bool | None = None
    stdin_once: bool | None = None
    tty: bool | None = None
    termination_message_path: str | None = "/dev/termination-log"
    termination_message_policy: Literal["File", "FallbackToLogsOnError"] | None = "File"

    @field_validator("name")
    @classmethod
    def _name_is_label(cls, v: str) -> str:
        errs = is_dns1123_label(v)
        if errs:
            raise FieldValueError([("", invalid(v, e), "FieldValueInvalid") for e in errs])
        return v

    @field_validator("image")
    @classmethod
    def _image_nonblank(cls, v: str) -> str:
        if not v.strip():
            raise FieldValueError.one("Required value", "FieldValueRequired")
        return v

    @model_validator(mode="after")
    def _defaults_and_checks(self) -> Container:
        # Kubernetes' defaulting: ":latest" (or no tag) pulls every time, pinned tags only if absent.
        if self.image_pull_policy is None:
            ref = self.image.rsplit("/", 1)[-1]
            tagged = ":" in ref and not ref.endswith(":latest")
            self.image_pull_policy = "IfNotPresent" if tagged or "@" in ref else "Always"
        errors = []
        for i, e in enumerate(self.env or []):
            if not e.name:
                errors.append((f"env[{i}].name", "Required value", "FieldValueRequired"))
            if e.value is not None and e.value_from is not None:
                errors.append(
                    (
                        f"env[{i}].valueFrom",
                        'Invalid value: "": may not be specified when `value` is not empty',
                        "FieldValueInvalid",
                    )
                )
        seen: set[str] = set()
        for i, p in enumerate(self.ports or []):
            if not p.name:
                continue
            if p.name in seen:
                errors.append((f"ports[{i}].name", f'Duplicate value: "{p.name}"', "FieldValueDuplicate"))
            elif len(p.name) > 15 or is_valid_label_value(p.name):
                # An IANA service name: referenced by named targetPorts and probes.
                msg = invalid(p.name, "must be no more than 15 characters and an IANA service name")
                errors.append((f"ports[{i}].name", msg, "FieldValueInvalid"))
            seen.add(p.name)
        if errors:
            raise FieldValueError(errors)
        return self

    def requests(self) -> ResourceList:
        """Effective requests: limits stand in for missing requests, as in Kubernetes' defaulting."""
        res = self.resources
        if res is None:
            return {}
        out = dict(res.limits or {})
        out.update(res.requests or {})
        return out
