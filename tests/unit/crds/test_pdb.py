"""policy/v1 PodDisruptionBudget: Kubernetes' validation (field paths and wording), the
desiredHealthy arithmetic (percentages rounded up), and the DisruptionAllowed condition."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from kray.crds import REGISTRY, ValidationFailed, validate_object
from kray.crds.policy import (
    PodDisruptionBudget,
    PodDisruptionBudgetSpec,
    PodDisruptionBudgetStatus,
    allowed_disruptions,
    scaled_value,
    set_disruption_condition,
)

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)


def pdb(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "b", "namespace": "d"},
        "spec": spec,
    }


def errors_of(spec: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as exc:
        validate_object(PodDisruptionBudget, pdb(spec))
    return [(e.field, e.message) for e in exc.value.errors]


def test_registered_like_kubernetes() -> None:
    info = REGISTRY.resolve("pdb")
    assert (info.group, info.version, info.kind, info.plural, info.namespaced) == (
        "policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True,
    )  # fmt: skip
    assert info.has_status_subresource
    columns = [c.name.upper() for c in PodDisruptionBudget.PRINTER_COLUMNS]
    assert columns == ["MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"]


def test_a_kubernetes_manifest_loads_unchanged() -> None:
    manifest = pdb({"minAvailable": "50%", "selector": {"matchLabels": {"app": "zk"}},
                    "unhealthyPodEvictionPolicy": "AlwaysAllow"})  # fmt: skip
    manifest["status"] = {"currentHealthy": 3, "desiredHealthy": 2, "disruptionsAllowed": 1, "expectedPods": 3,
                          "observedGeneration": 1, "disruptedPods": {"zk-0": "2024-01-01T00:00:00Z"},
                          "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods",
                                          "message": "", "lastTransitionTime": "2024-01-01T00:00:00Z",
                                          "observedGeneration": 1}]}  # fmt: skip
    obj = validate_object(PodDisruptionBudget, manifest)
    assert obj.to_dict() == manifest


def test_min_and_max_are_mutually_exclusive() -> None:
    [(field, message)] = errors_of({"minAvailable": 2, "maxUnavailable": 1, "selector": {}})
    assert field == "spec"
    assert message.endswith("minAvailable and maxUnavailable cannot be both set")


PERCENT = "a valid percent string must be a numeric string followed by an ending '%'"


@pytest.mark.parametrize(
    ("spec", "field", "detail"),
    [
        ({"minAvailable": -1}, "spec.minAvailable", "must be greater than or equal to 0"),
        ({"maxUnavailable": "101%"}, "spec.maxUnavailable", "must not be greater than 100%"),
        ({"minAvailable": "50"}, "spec.minAvailable", PERCENT),
        ({"maxUnavailable": "ten%"}, "spec.maxUnavailable", PERCENT),
        (
            {"unhealthyPodEvictionPolicy": "Sometimes"},
            "spec.unhealthyPodEvictionPolicy",
            'supported values: "IfHealthyBudget", "AlwaysAllow"',
        ),
    ],
)
def test_bad_values_name_the_field(spec: dict[str, Any], field: str, detail: str) -> None:
    [(got_field, message)] = errors_of(spec)
    assert got_field == field
    assert message.endswith(detail), message


@pytest.mark.parametrize(
    ("value", "total", "want"),
    [
        (3, 10, 3),
        ("0%", 7, 0),
        ("50%", 3, 2),
        ("34%", 3, 2),
        ("33%", 3, 1),
        ("100%", 5, 5),
        ("1%", 1, 1),
        ("10%", 0, 0),
    ],
)
def test_percentages_round_up(value: int | str, total: int, want: int) -> None:
    assert scaled_value(value, total) == want


@pytest.mark.parametrize(
    ("spec", "expected", "desired"),
    [
        ({"minAvailable": 2}, 3, 2),
        ({"minAvailable": 5}, 3, 5),  # more than exist: nothing may go
        ({"minAvailable": "50%"}, 3, 2),  # 1.5 -> 2
        ({"minAvailable": "50%"}, 4, 2),
        ({"minAvailable": "100%"}, 3, 3),
        ({"maxUnavailable": 1}, 3, 2),
        ({"maxUnavailable": 5}, 3, 0),  # never negative
        ({"maxUnavailable": "50%"}, 3, 1),  # maxUnavailable 1.5 -> 2 (up), so desired 1
        ({"maxUnavailable": "25%"}, 10, 7),  # 2.5 -> 3
        ({"maxUnavailable": "0%"}, 4, 4),
        ({}, 3, 0),
    ],
)
def test_desired_healthy(spec: dict[str, Any], expected: int, desired: int) -> None:
    assert PodDisruptionBudgetSpec.model_validate(spec).desired_healthy(expected) == desired


@pytest.mark.parametrize(("healthy", "desired", "expected", "allowed"),
                         [(3, 2, 3, 1), (2, 2, 3, 0), (1, 2, 3, 0), (3, 0, 3, 3), (0, 0, 0, 0)])  # fmt: skip
def test_allowed_disruptions(healthy: int, desired: int, expected: int, allowed: int) -> None:
    assert allowed_disruptions(healthy, desired, expected) == allowed


def test_selector_nil_matches_nothing_and_empty_matches_everything() -> None:
    assert not PodDisruptionBudgetSpec().selects({"app": "x"})
    assert PodDisruptionBudgetSpec.model_validate({"selector": {}}).selects({"app": "x"})
    spec = PodDisruptionBudgetSpec.model_validate({"selector": {"matchLabels": {"app": "x"}}})
    assert spec.selects({"app": "x", "tier": "a"}) and not spec.selects({"app": "y"})


def test_condition_moves_its_time_only_on_a_flip() -> None:
    status = PodDisruptionBudgetStatus(disruptions_allowed=1, observed_generation=1)
    set_disruption_condition(status, NOW)
    [cond] = status.conditions or []
    assert (cond.type, cond.status, cond.reason, cond.last_transition_time) == (
        "DisruptionAllowed", "True", "SufficientPods", NOW,
    )  # fmt: skip
    set_disruption_condition(status, NOW + timedelta(minutes=1))
    assert (status.conditions or [])[0].last_transition_time == NOW
    status.disruptions_allowed = 0
    set_disruption_condition(status, NOW + timedelta(minutes=2))
    [cond] = status.conditions or []
    assert (cond.status, cond.reason, cond.last_transition_time) == (
        "False", "InsufficientPods", NOW + timedelta(minutes=2),
    )  # fmt: skip
