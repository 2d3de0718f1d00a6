"""apps/v1 DaemonSet: one pod per eligible node, with Kubernetes' fields, defaults and validation.

The controller lives in ``kray.actors.controllers.daemonset``; this is the pure model. Defaults
follow ``SetDefaults_DaemonSet``: updateStrategy RollingUpdate with maxUnavailable 1 and maxSurge
0, revisionHistoryLimit 10. Validation follows ``ValidateDaemonSetSpec`` (field paths relative to
``spec``, Kubernetes' wording): a non-empty selector matching the template's labels, a template
with restartPolicy Always and no activeDeadlineSeconds, and a rolling update with exactly one of
maxUnavailable/maxSurge non-zero, neither over 100%.
"""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from .apps import IntOrString, _check_int_or_percent
from .core.pod import PodTemplateSpec
from .meta import Condition, KrayModel, PrinterColumn, Resource
from .registry import kind
from .selectors import LabelSelector
from .validation import FieldValueError, invalid, not_supported

# The labels the controller stamps on every daemon pod (apps/v1 constants).
CONTROLLER_REVISION_HASH = "controller-revision-hash"
POD_TEMPLATE_GENERATION = "pod-template-generation"

ROLLING_UPDATE = "RollingUpdate"
ON_DELETE = "OnDelete"


def _percent_value(value: IntOrString | None) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    try:
        return int(value.rstrip("%"))
    except ValueError:
        return 0


def scaled_value(value: IntOrString | None, total: int, *, round_up: bool = True) -> int:
    """``intstr.GetScaledValueFromIntOrPercent``: an int as is, a percentage of ``total``."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    fraction = _percent_value(value) * total / 100
    return math.ceil(fraction) if round_up else math.floor(fraction)


class RollingUpdateDaemonSet(KrayModel):
    max_unavailable: IntOrString | None = 1
    max_surge: IntOrString | None = 0

    @field_validator("max_unavailable", "max_surge")
    @classmethod
    def _int_or_percent(cls, value: IntOrString | None) -> IntOrString | None:
        return _check_int_or_percent(value)

    @model_validator(mode="after")
    def _check(self) -> RollingUpdateDaemonSet:
        if self.max_unavailable is None:
            self.max_unavailable = 1
        if self.max_surge is None:
            self.max_surge = 0
        errors: list[tuple[str, str, str]] = []
        for name, value in (("maxUnavailable", self.max_unavailable), ("maxSurge", self.max_surge)):
            if isinstance(value, str) and _percent_value(value) > 100:
                errors.append((name, invalid(value, "must not be greater than 100%"), "FieldValueInvalid"))
        has_unavailable = _percent_value(self.max_unavailable) != 0
        has_surge = _percent_value(self.max_surge) != 0
        if has_unavailable and has_surge:
            errors.append(
                ("maxSurge", invalid(self.max_surge, "may not be set when maxUnavailable is non-zero"),
                 "FieldValueInvalid")
            )  # fmt: skip
        elif not has_unavailable and not has_surge:
            errors.append(("maxUnavailable", "Required value: cannot be 0 when maxSurge is 0", "FieldValueRequired"))
        if errors:
            raise FieldValueError(errors)
        return self


class DaemonSetUpdateStrategy(KrayModel):
    # A plain str (not a Literal) so an unknown type gets Kubernetes' "Unsupported value".
    type: str = ROLLING_UPDATE
    rolling_update: RollingUpdateDaemonSet | None = None

    @model_validator(mode="after")
    def _defaults(self) -> DaemonSetUpdateStrategy:
        if self.type not in (ROLLING_UPDATE, ON_DELETE):
            raise FieldValueError.one(not_supported(self.type, (ROLLING_UPDATE, ON_DELETE)), "FieldValueNotSupported",
                                      "type")  # fmt: skip
        if self.type == ROLLING_UPDATE and self.rolling_update is None:
            self.rolling_update = RollingUpdateDaemonSet()
        return self


class DaemonSetSpec(KrayModel):
    selector: LabelSelector
    template: PodTemplateSpec
    update_strategy: DaemonSetUpdateStrategy = Field(default_factory=DaemonSetUpdateStrategy)
    min_ready_seconds: int = Field(default=0, ge=0)
    revision_history_limit: int = Field(default=10, ge=0)

    @model_validator(mode="after")
    def _check(self) -> DaemonSetSpec:
        errors: list[tuple[str, str, str]] = []
        labels = (self.template.metadata.labels if self.template.metadata else None) or {}
        if not self.selector.match_labels and not self.selector.match_expressions:
            errors.append(("selector", "Invalid value: empty selector is invalid for daemonset", "FieldValueInvalid"))
        elif not self.selector.matches(labels):
            errors.append(
                ("template.metadata.labels", invalid(labels, "`selector` does not match template `labels`"),
                 "FieldValueInvalid")
            )  # fmt: skip
        pod = self.template.spec
        if pod.restart_policy != "Always":
            errors.append(
                ("template.spec.restartPolicy", not_supported(pod.restart_policy, ["Always"]), "FieldValueNotSupported")
            )
        if pod.active_deadline_seconds is not None:
            forbidden = "Forbidden: activeDeadlineSeconds in DaemonSet is not Supported"
            errors.append(("template.spec.activeDeadlineSeconds", forbidden, "FieldValueForbidden"))
        if errors:
            raise FieldValueError(errors)
        return self

    def max_unavailable_and_surge(self, desired: int) -> tuple[int, int]:
        """(maxUnavailable, maxSurge) scaled to ``desired`` nodes, percentages rounded up.

        A configuration with both 0 (only reachable around validation) obeys maxUnavailable=1,
        as kube's ``updatedDesiredNodeCounts`` does."""
        ru = self.update_strategy.rolling_update
        if self.update_strategy.type != ROLLING_UPDATE or ru is None:
            return 0, 0
        unavailable = scaled_value(ru.max_unavailable, desired)
        surge = scaled_value(ru.max_surge, desired)
        if desired > 0 and unavailable == 0 and surge == 0:
            unavailable = 1
        return unavailable, surge


class DaemonSetStatus(KrayModel):
    current_number_scheduled: int = 0
    number_misscheduled: int = 0
    desired_number_scheduled: int = 0
    number_ready: int = 0
    observed_generation: int | None = None
    updated_number_scheduled: int | None = None
    number_available: int | None = None
    number_unavailable: int | None = None
    collision_count: int | None = None
    conditions: list[Condition] | None = None


@kind
class DaemonSet(Resource):
    GROUP: ClassVar[str] = "apps"
    VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "DaemonSet"
    PLURAL: ClassVar[str] = "daemonsets"
    SINGULAR: ClassVar[str] = "daemonset"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("ds",)
    HAS_STATUS_SUBRESOURCE: ClassVar[bool] = True
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (  # kubectl's columns
        PrinterColumn(name="Desired", type="integer", json_path=".status.desiredNumberScheduled"),
        PrinterColumn(name="Current", type="integer", json_path=".status.currentNumberScheduled"),
        PrinterColumn(name="Ready", type="integer", json_path=".status.numberReady"),
        PrinterColumn(name="Up-to-date", type="integer", json_path=".status.updatedNumberScheduled"),
        PrinterColumn(name="Available", type="integer", json_path=".status.numberAvailable"),
        PrinterColumn(name="Node Selector", type="string", json_path=".spec.template.spec.nodeSelector"),
        PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
        PrinterColumn(name="Containers", type="string", priority=1, json_path=".spec.template.spec.containers[*].name"),
        PrinterColumn(name="Images", type="string", priority=1, json_path=".spec.template.spec.containers[*].image"),
        PrinterColumn(name="Selector", type="string", priority=1, json_path=".spec.selector"),
    )

    spec: DaemonSetSpec
    status: DaemonSetStatus | None = None


__all__ = [
    "CONTROLLER_REVISION_HASH",
    "ON_DELETE",
    "POD_TEMPLATE_GENERATION",
    "ROLLING_UPDATE",
    "DaemonSet",
    "DaemonSetSpec",
    "DaemonSetStatus",
    "DaemonSetUpdateStrategy",
    "RollingUpdateDaemonSet",
    "scaled_value",
]
