"""Scheduling constraints on pods: affinity, tolerations (and node taints), topology spread.

The ``matches``/``tolerates`` helpers carry Kubernetes' semantics so the scheduler and the
taint manager share one implementation.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from ..meta import KrayModel
from ..selectors import LabelSelector
from ..validation import FieldValueError, invalid

TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
_SCHED = "during_scheduling_ignored_during_execution"


class NodeSelectorRequirement(KrayModel):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: list[str] | None = None

    @model_validator(mode="after")
    def _values_match_operator(self) -> NodeSelectorRequirement:
        n = len(self.values or [])
        if self.operator in ("In", "NotIn") and n == 0:
            raise FieldValueError.one(
                "Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "FieldValueRequired",
                "values",
            )
        if self.operator in ("Exists", "DoesNotExist") and n:
            raise FieldValueError.one(
                "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                "FieldValueForbidden",
                "values",
            )
        if self.operator in ("Gt", "Lt") and n != 1:
            raise FieldValueError.one(
                "Required value: must be specified single value when `operator` is 'Lt' or 'Gt'",
                "FieldValueRequired",
                "values",
            )
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        value, values = labels.get(self.key), self.values or []
        if self.operator == "Exists":
            return value is not None
        if self.operator == "DoesNotExist":
            return value is None
        if self.operator == "In":
            return value is not None and value in values
        if self.operator == "NotIn":
            return value is None or value not in values
        if value is None:
            return False
        try:
            have, want = int(value), int(values[0])
        except ValueError:
            return False
        return have > want if self.operator == "Gt" else have < want


class NodeSelectorTerm(KrayModel):
    """ANDed requirements over node labels (matchExpressions) and fields (matchFields)."""

    match_expressions: list[NodeSelectorRequirement] | None = None
    match_fields: list[NodeSelectorRequirement] | None = None

    def matches(self, labels: Mapping[str, str] | None, fields: Mapping[str, str] | None = None) -> bool:
        # An empty term matches nothing, as in Kubernetes.
        if not self.match_expressions and not self.match_fields:
            return False
        labels, fields = labels or {}, fields or {}
        return all(r.matches(labels) for r in self.match_expressions or []) and all(
            r.matches(fields) for r in self.match_fields or []
        )


class NodeSelector(KrayModel):
    node_selector_terms: list[NodeSelectorTerm]

    def matches(self, labels: Mapping[str, str] | None, fields: Mapping[str, str] | None = None) -> bool:
        """Terms are ORed. ``fields`` is e.g. ``{"metadata.name": node_name}``."""
        return any(t.matches(labels, fields) for t in self.node_selector_terms)


class PreferredSchedulingTerm(KrayModel):
    weight: int = Field(ge=1, le=100)
    preference: NodeSelectorTerm


class NodeAffinity(KrayModel):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = None


class PodAffinityTerm(KrayModel):
    label_selector: LabelSelector | None = None
    namespaces: list[str] | None = None
    namespace_selector: LabelSelector | None = None
    topology_key: str
    match_label_keys: list[str] | None = None
    mismatch_label_keys: list[str] | None = None


class WeightedPodAffinityTerm(KrayModel):
    weight: int = Field(ge=1, le=100)
    pod_affinity_term: PodAffinityTerm


class PodAffinity(KrayModel):
    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = None
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = None


class PodAntiAffinity(PodAffinity):
    pass


class Affinity(KrayModel):
    node_affinity: NodeAffinity | None = None
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAntiAffinity | None = None


class Taint(KrayModel):
    key: str
    value: str | None = None
    effect: TaintEffect
    time_added: datetime | None = None


class Toleration(KrayModel):
    key: str | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: TaintEffect | Literal[""] | None = None
    toleration_seconds: int | None = None

    @model_validator(mode="after")
    def _check(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise FieldValueError.one(
                f"Invalid value: \"{self.value}\": value must be empty when `operator` is 'Exists'",
                path="operator",
            )
        if not self.key and self.operator != "Exists":
            raise FieldValueError.one(
                f'Invalid value: "{self.operator}": operator must be Exists when `key` is empty, '
                'which means "match all values and all keys"',
                path="operator",
            )
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise FieldValueError.one(
                invalid(self.effect or "", "effect must be 'NoExecute' when `tolerationSeconds` is set"),
                path="effect",
            )
        return self

    def tolerates(self, taint: Taint) -> bool:
        """Kubernetes' ToleratesTaint: empty effect matches all effects, empty key with Exists all keys."""
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator == "Exists":
            return True
        return (self.value or "") == (taint.value or "")


def tolerates_all(tolerations: list[Toleration] | None, taints: list[Taint] | None, effects: tuple[str, ...]) -> bool:
    """Whether every taint with one of ``effects`` is tolerated (the scheduler uses NoSchedule/NoExecute)."""
    return all(any(t.tolerates(taint) for t in tolerations or []) for taint in taints or [] if taint.effect in effects)


class TopologySpreadConstraint(KrayModel):
    max_skew: int = Field(ge=1)
    topology_key: str
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]
    label_selector: LabelSelector | None = None
    min_domains: int | None = None
    node_affinity_policy: Literal["Honor", "Ignore"] | None = None
    node_taints_policy: Literal["Honor", "Ignore"] | None = None
    match_label_keys: list[str] | None = None


class PodSchedulingGate(KrayModel):
    name: str
