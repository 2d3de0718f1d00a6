"""apps/v1 DaemonSet: registration, kubectl's columns, SetDefaults_DaemonSet, and
ValidateDaemonSetSpec's errors (field paths and wording)."""

from __future__ import annotations

from typing import Any

import pytest

from kray.crds import REGISTRY, ValidationFailed, validate_object
from kray.crds.apps_daemonset import DaemonSet, scaled_value


def manifest(spec: dict[str, Any] | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    labels = labels if labels is not None else {"app": "a"}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "a", "namespace": "d"},
        "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
            **(spec or {}),
        },
    }


def errors_of(m: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationFailed) as exc:
        validate_object(DaemonSet, m)
    return [str(e) for e in exc.value.errors]


def test_registered_like_kubernetes() -> None:
    info = REGISTRY.resolve("ds")
    assert (info.group, info.version, info.kind, info.plural, info.namespaced) == (
        "apps", "v1", "DaemonSet", "daemonsets", True,
    )  # fmt: skip
    assert info.has_status_subresource and REGISTRY.resolve("daemonsets.apps") is info
    columns = [c.name.upper() for c in DaemonSet.PRINTER_COLUMNS if not c.priority]
    assert columns == ["DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"]


def test_defaults() -> None:
    ds = validate_object(DaemonSet, manifest())
    spec = ds.to_dict()["spec"]
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert (spec["revisionHistoryLimit"], spec["minReadySeconds"]) == (10, 0)
    on_delete = validate_object(DaemonSet, manifest({"updateStrategy": {"type": "OnDelete"}}))
    assert on_delete.spec.update_strategy.rolling_update is None
    assert on_delete.spec.max_unavailable_and_surge(5) == (0, 0)
    surge = validate_object(
        DaemonSet, manifest({"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": "30%"}}})
    )
    assert surge.spec.max_unavailable_and_surge(5) == (0, 2)  # percentages round up
    assert scaled_value("25%", 10) == 3 and scaled_value(2, 10) == 2


def test_a_kubernetes_manifest_round_trips() -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%", "maxSurge": 0}}
    m = manifest({"updateStrategy": strategy, "minReadySeconds": 5, "revisionHistoryLimit": 3})
    m["status"] = {
        "currentNumberScheduled": 2,
        "numberMisscheduled": 0,
        "desiredNumberScheduled": 2,
        "numberReady": 1,
        "observedGeneration": 1,
        "updatedNumberScheduled": 2,
        "numberAvailable": 1,
        "numberUnavailable": 1,
    }
    out = validate_object(DaemonSet, m).to_dict()
    assert out["status"] == m["status"]
    assert out["spec"]["updateStrategy"] == m["spec"]["updateStrategy"]


def test_selector_errors() -> None:
    assert errors_of(manifest(labels={"app": "b"})) == [
        'spec.template.metadata.labels: Invalid value: "object": `selector` does not match template `labels`'
    ]
    m = manifest()
    m["spec"]["selector"] = {}
    assert errors_of(m) == ["spec.selector: Invalid value: empty selector is invalid for daemonset"]
    del m["spec"]["selector"]
    assert errors_of(m)[0].startswith("spec.selector: Required value")


def test_template_errors() -> None:
    m = manifest()
    m["spec"]["template"]["spec"].update({"restartPolicy": "OnFailure", "activeDeadlineSeconds": 5})
    assert errors_of(m) == [
        'spec.template.spec.restartPolicy: Unsupported value: "OnFailure": supported values: "Always"',
        "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in DaemonSet is not Supported",
    ]


RU = "spec.updateStrategy.rollingUpdate."


@pytest.mark.parametrize(
    ("strategy", "error"),
    [
        (
            {"type": "Recreate"},
            'spec.updateStrategy.type: Unsupported value: "Recreate": supported values: "RollingUpdate", "OnDelete"',
        ),
        (
            {"rollingUpdate": {"maxSurge": 1}},
            RU + "maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero",
        ),
        (
            {"rollingUpdate": {"maxUnavailable": 0}},
            RU + "maxUnavailable: Required value: cannot be 0 when maxSurge is 0",
        ),
        (
            {"rollingUpdate": {"maxUnavailable": "120%"}},
            RU + 'maxUnavailable: Invalid value: "120%": must not be greater than 100%',
        ),
        (
            {"rollingUpdate": {"maxUnavailable": -1}},
            RU + "maxUnavailable: Invalid value: -1: must be greater than or equal to 0",
        ),
    ],
)
def test_update_strategy_errors(strategy: dict[str, Any], error: str) -> None:
    assert errors_of(manifest({"updateStrategy": strategy})) == [error]


def test_negative_counts_are_rejected() -> None:
    errors = errors_of(manifest({"minReadySeconds": -1}))
    assert len(errors) == 1 and errors[0].startswith("spec.minReadySeconds: Invalid value: -1")
