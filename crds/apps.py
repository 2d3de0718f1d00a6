"""apps/v1 workload kinds: ReplicaSet and Deployment, with Kubernetes' fields and defaults.

The controllers that act on them live in ``kray.actors.controllers``; these are pure models.
``maxSurge``/``maxUnavailable`` are IntOrString as in Kubernetes (``3`` or ``"25%"``).
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from .core.pod import PodTemplateSpec
from .meta import Condition, KrayModel, Resource
from .registry import kind
from .selectors import LabelSelector
from .validation import FieldValueError, invalid

IntOrString = int | str
_PERCENT = re.compile(r"^[0-9]+%$")

# Deployment condition types and the reasons the controller writes (kube's deploymentutil).
AVAILABLE = "Available"
PROGRESSING = "Progressing"
REPLICA_FAILURE = "ReplicaFailure"


def _check_int_or_percent(value: IntOrString | None) -> IntOrString | None:
    if value is None:
        return value
    if isinstance(value, int):
        if value < 0:
            raise FieldValueError.one(invalid(value, "must be greater than or equal to 0"))
        return value
    if _PERCENT.match(value):
        return value
    if value.isdigit():  # "3" from YAML that quoted it: Kubernetes reads it as a percentage error
        raise FieldValueError.one(invalid(value, "a valid percent string must be a numeric string followed by '%'"))
    raise FieldValueError.one(invalid(value, "must be an integer or a percentage like '25%'"))


def _check_selector(selector: LabelSelector, template: PodTemplateSpec) -> list[tuple[str, str, str]]:
    errors: list[tuple[str, str, str]] = []
    if not selector.match_labels and not selector.match_expressions:
        errors.append(("selector", "Invalid value: empty selector is invalid for deployment", "FieldValueInvalid"))
        return errors
    labels = (template.metadata.labels if template.metadata else None) or {}
    if not selector.matches(labels):
        errors.append(
            (
                "template.metadata.labels",
                invalid(labels, "`selector` does not match template `labels`"),
                "FieldValueInvalid",
            )
        )
    return errors


class RollingUpdateDeployment(KrayModel):
    max_unavailable: IntOrString | None = "25%"
    max_surge: IntOrString | None = "25%"

    @field_validator("max_unavailable", "max_surge")
    @classmethod
    def _int_or_percent(cls, value: IntOrString | None) -> IntOrString | None:
        return _check_int_or_percent(value)


class DeploymentStrategy(KrayModel):
    type: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    rolling_update: RollingUpdateDeployment | None = None

    @model_validator(mode="after")
    def _defaults(self) -> DeploymentStrategy:
        if self.type == "RollingUpdate" and self.rolling_update is None:
            self.rolling_update = RollingUpdateDeployment()
        if self.type == "Recreate" and self.rolling_update is not None:
            raise FieldValueError.one(
                "Forbidden: may not be specified when strategy `type` is 'Recreate'",
                "FieldValueForbidden",
                "rollingUpdate",
            )
        ru = self.rolling_update
        if ru is not None and _is_zero(ru.max_surge) and _is_zero(ru.max_unavailable):
            raise FieldValueError.one(
                invalid(ru.max_unavailable, "may not be 0 when `maxSurge` is 0"),
                "FieldValueInvalid",
                "rollingUpdate.maxUnavailable",
            )
        return self


def _is_zero(v: IntOrString | None) -> bool:
    return v is None or v == 0 or v == "0%"


# ---- ReplicaSet ----


class ReplicaSetSpec(KrayModel):
    replicas: int = Field(default=1, ge=0)
    min_ready_seconds: int = Field(default=0, ge=0)
    selector: LabelSelector
    template: PodTemplateSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> ReplicaSetSpec:
        if self.template is not None:
            errors = _check_selector(self.selector, self.template)
            if errors:
                raise FieldValueError(errors)
        return self


class ReplicaSetStatus(KrayModel):
    replicas: int = 0
    fully_labeled_replicas: int | None = None
    ready_replicas: int | None = None
    available_replicas: int | None = None
    observed_generation: int | None = None
    conditions: list[Condition] | None = None


@kind
class ReplicaSet(Resource):
    GROUP: ClassVar[str] = "apps"
    VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "ReplicaSet"
    PLURAL: ClassVar[str] = "replicasets"
    SINGULAR: ClassVar[str] = "replicaset"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("rs",)
    HAS_STATUS_SUBRESOURCE: ClassVar[bool] = True

    spec: ReplicaSetSpec
    status: ReplicaSetStatus | None = None


# ---- Deployment ----


class DeploymentSpec(KrayModel):
    replicas: int = Field(default=1, ge=0)
    selector: LabelSelector
    template: PodTemplateSpec
    strategy: DeploymentStrategy = Field(default_factory=DeploymentStrategy)
    min_ready_seconds: int = Field(default=0, ge=0)
    revision_history_limit: int = Field(default=10, ge=0)
    paused: bool = False
    progress_deadline_seconds: int = Field(default=600, ge=1)

    @model_validator(mode="after")
    def _check(self) -> DeploymentSpec:
        errors = _check_selector(self.selector, self.template)
        if self.progress_deadline_seconds <= self.min_ready_seconds:
            errors.append(
                (
                    "progressDeadlineSeconds",
                    invalid(self.progress_deadline_seconds, "must be greater than minReadySeconds"),
                    "FieldValueInvalid",
                )
            )
        if errors:
            raise FieldValueError(errors)
        return self


class DeploymentStatus(KrayModel):
    observed_generation: int | None = None
    replicas: int | None = None
    updated_replicas: int | None = None
    ready_replicas: int | None = None
    available_replicas: int | None = None
    unavailable_replicas: int | None = None
    conditions: list[Condition] | None = None
    collision_count: int | None = None


@kind
class Deployment(Resource):
    GROUP: ClassVar[str] = "apps"
    VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Deployment"
    PLURAL: ClassVar[str] = "deployments"
    SINGULAR: ClassVar[str] = "deployment"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("deploy",)
    HAS_STATUS_SUBRESOURCE: ClassVar[bool] = True

    spec: DeploymentSpec
    status: DeploymentStatus | None = None


__all__ = [
    "AVAILABLE",
    "PROGRESSING",
    "REPLICA_FAILURE",
    "Deployment",
    "DeploymentSpec",
    "DeploymentStatus",
    "DeploymentStrategy",
    "IntOrString",
    "ReplicaSet",
    "ReplicaSetSpec",
    "ReplicaSetStatus",
    "RollingUpdateDeployment",
]
