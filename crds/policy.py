"""policy/v1 PodDisruptionBudget: how many of an application's pods voluntary disruptions
(``kray drain``, evictions) may take down at once, with Kubernetes' fields and checks.

The disruption controller (``kray.actors.controllers.disruption``) keeps the status; the API
server's eviction subresource (``kray.actors.apiserver.eviction``) reads and decrements it.
The arithmetic both share lives here, as pure functions.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from .meta import Condition, KrayModel, PrinterColumn, Resource
from .registry import kind
from .selectors import LabelSelector
from .validation import FieldValueError, invalid

IntOrString = int | str
_PERCENT = re.compile(r"^([0-9]+)%$")

# The status condition and its reasons (k8s.io/api/policy/v1).
DISRUPTION_ALLOWED = "DisruptionAllowed"
SUFFICIENT_PODS = "SufficientPods"
INSUFFICIENT_PODS = "InsufficientPods"
# unhealthyPodEvictionPolicy values.
IF_HEALTHY_BUDGET = "IfHealthyBudget"
ALWAYS_ALLOW = "AlwaysAllow"
# How long an eviction's entry in status.disruptedPods holds the pod out of currentHealthy: if
# the pod is still there after this, the deletion is assumed to have failed (kube's DeletionTimeout).
DELETION_TIMEOUT_SECONDS = 120.0


def _check_int_or_percent(value: IntOrString | None) -> IntOrString | None:
    """Kubernetes' ValidateNonnegativeIntOrPercent plus IsNotMoreThan100Percent."""
    if value is None:
        return None
    if isinstance(value, int):
        if value < 0:
            raise FieldValueError.one(invalid(value, "must be greater than or equal to 0"))
        return value
    match = _PERCENT.match(value)
    if not match:
        raise FieldValueError.one(
            invalid(value, "a valid percent string must be a numeric string followed by an ending '%'")
        )
    if int(match.group(1)) > 100:
        raise FieldValueError.one(invalid(value, "must not be greater than 100%"))
    return value


def scaled_value(value: IntOrString, total: int) -> int:
    """intstr.GetScaledValueFromIntOrPercent(value, total, roundUp=true): the disruption
    controller rounds percentages UP for both minAvailable and maxUnavailable."""
    if isinstance(value, int):
        return value
    match = _PERCENT.match(value)
    if not match:
        raise ValueError(f"invalid value for IntOrString: invalid type: string is not a percentage: {value!r}")
    return math.ceil(int(match.group(1)) * total / 100)


class PodDisruptionBudgetSpec(KrayModel):
    min_available: IntOrString | None = None
    max_unavailable: IntOrString | None = None
    # None matches no pod; an empty selector ({}) matches every pod of the namespace (policy/v1).
    selector: LabelSelector | None = None
    unhealthy_pod_eviction_policy: Literal["IfHealthyBudget", "AlwaysAllow"] | None = None

    @field_validator("min_available", "max_unavailable")
    @classmethod
    def _int_or_percent(cls, value: IntOrString | None) -> IntOrString | None:
        return _check_int_or_percent(value)

    @model_validator(mode="after")
    def _exclusive(self) -> PodDisruptionBudgetSpec:
        if self.min_available is not None and self.max_unavailable is not None:
            # Kubernetes reports this on the spec itself (field.Invalid(fldPath, spec, ...)).
            both = {"minAvailable": self.min_available, "maxUnavailable": self.max_unavailable}
            raise FieldValueError.one(invalid(both, "minAvailable and maxUnavailable cannot be both set"))
        return self

    def desired_healthy(self, expected: int) -> int:
        """How many of ``expected`` pods must stay healthy (kube's getExpectedPodCount)."""
        if self.max_unavailable is not None:
            return max(0, expected - scaled_value(self.max_unavailable, expected))
        if self.min_available is not None:
            return scaled_value(self.min_available, expected)
        return 0

    def selects(self, labels: dict[str, str] | None) -> bool:
        return self.selector is not None and self.selector.matches(labels)


class PodDisruptionBudgetStatus(KrayModel):
    observed_generation: int | None = None
    # Pod name -> when the API server evicted it; the controller prunes entries (see
    # DELETION_TIMEOUT_SECONDS), so a pod counts as disrupted until its deletion is seen.
    disrupted_pods: dict[str, datetime] | None = None
    disruptions_allowed: int = 0
    current_healthy: int = 0
    desired_healthy: int = 0
    expected_pods: int = 0
    conditions: list[Condition] | None = None


def set_disruption_condition(status: PodDisruptionBudgetStatus, now: datetime) -> None:
    """kube's UpdateDisruptionAllowedCondition: DisruptionAllowed follows disruptionsAllowed > 0;
    lastTransitionTime moves only when the condition's status flips."""
    allowed = status.disruptions_allowed > 0
    value, reason = ("True", SUFFICIENT_PODS) if allowed else ("False", INSUFFICIENT_PODS)
    conditions = list(status.conditions or [])
    old = next((c for c in conditions if c.type == DISRUPTION_ALLOWED), None)
    since = old.last_transition_time if old is not None and old.status == value else now
    new = Condition(
        type=DISRUPTION_ALLOWED,
        status=value,
        reason=reason,
        message="",
        last_transition_time=since,
        observed_generation=status.observed_generation,
    )
    status.conditions = [new if c.type == DISRUPTION_ALLOWED else c for c in conditions] if old else [*conditions, new]


def allowed_disruptions(current_healthy: int, desired_healthy: int, expected_pods: int) -> int:
    """kube's updatePdbStatus: nothing may go while no pod is expected (a PDB whose pods have not
    been counted yet must be safe), else the healthy pods above the desired count."""
    if expected_pods <= 0:
        return 0
    return max(0, current_healthy - desired_healthy)


@kind
class PodDisruptionBudget(Resource):
    GROUP: ClassVar[str] = "policy"
    VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "PodDisruptionBudget"
    PLURAL: ClassVar[str] = "poddisruptionbudgets"
    SINGULAR: ClassVar[str] = "poddisruptionbudget"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("pdb",)
    HAS_STATUS_SUBRESOURCE: ClassVar[bool] = True
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (  # kubectl's columns
        PrinterColumn(name="Min Available", type="string", json_path=".spec.minAvailable"),
        PrinterColumn(name="Max Unavailable", type="string", json_path=".spec.maxUnavailable"),
        PrinterColumn(name="Allowed Disruptions", type="integer", json_path=".status.disruptionsAllowed"),
        PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
    )

    spec: PodDisruptionBudgetSpec = Field(default_factory=PodDisruptionBudgetSpec)
    status: PodDisruptionBudgetStatus | None = None
