"""apps/v1 StatefulSet: Kubernetes' defaults, validation (field paths and wording), registration
(short name ``sts``) and the server-printed Table columns."""

from __future__ import annotations

from typing import Any

import pytest

from kray.actors.apiserver.tables import table
from kray.crds import REGISTRY, ValidationFailed, validate_object
from kray.crds.apps_statefulset import StatefulSet


def sts(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        **spec,
    }
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web", "namespace": "d"}, "spec": body}


def errors_of(**spec: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as exc:
        validate_object(StatefulSet, sts(**spec))
    return [(e.field, e.message) for e in exc.value.errors]


def test_registered_like_kubernetes() -> None:
    info = REGISTRY.resolve("sts")
    assert (info.group, info.version, info.kind, info.plural) == ("apps", "v1", "StatefulSet", "statefulsets")
    assert info.has_status_subresource and info.namespaced


def test_defaults() -> None:
    spec = validate_object(StatefulSet, sts()).spec
    assert (spec.replicas, spec.pod_management_policy, spec.revision_history_limit, spec.min_ready_seconds) == (
        1,
        "OrderedReady",
        10,
        0,
    )
    assert spec.update_strategy.type == "RollingUpdate"
    assert spec.update_strategy.rolling_update is not None and spec.update_strategy.rolling_update.partition == 0
    policy = spec.persistent_volume_claim_retention_policy
    assert (policy.when_deleted, policy.when_scaled) == ("Retain", "Retain")
    assert spec.start_ordinal == 0 and spec.partition == 0
    with_start = validate_object(StatefulSet, sts(ordinals={"start": 5})).spec
    assert with_start.start_ordinal == 5


def test_validation_names_fields() -> None:
    assert errors_of(selector={"matchLabels": {"app": "db"}})[0][0] == "spec.template.metadata.labels"
    assert errors_of(replicas=-1)[0][0] == "spec.replicas"
    assert errors_of(podManagementPolicy="Random") == [
        ("spec.podManagementPolicy", 'Unsupported value: "Random": supported values: "OrderedReady", "Parallel"')
    ]
    assert errors_of(persistentVolumeClaimRetentionPolicy={"whenScaled": "Keep"})[0][0] == (
        "spec.persistentVolumeClaimRetentionPolicy.whenScaled"
    )
    assert errors_of(updateStrategy={"type": "Sometimes"})[0][0] == "spec.updateStrategy.type"
    assert errors_of(updateStrategy={"type": "OnDelete", "rollingUpdate": {"partition": 1}})[0][0] == (
        "spec.updateStrategy.rollingUpdate"
    )
    assert errors_of(updateStrategy={"rollingUpdate": {"partition": -1}})[0][0] == (
        "spec.updateStrategy.rollingUpdate.partition"
    )
    assert errors_of(selector={})[0][0] == "spec.selector"
    claim = {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    assert errors_of(volumeClaimTemplates=[claim])[0][0] == "spec.volumeClaimTemplates[0].metadata.name"
    body = sts()
    body["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    with pytest.raises(ValidationFailed, match="restartPolicy"):
        validate_object(StatefulSet, body)


def test_table_columns_ready_and_age() -> None:
    obj = sts(replicas=3)
    obj["status"] = {"replicas": 3, "readyReplicas": 2}
    obj["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    out = table(REGISTRY.resolve("statefulsets"), [obj])
    names = [c["name"] for c in out["columnDefinitions"]]
    assert names == ["Name", "Ready", "Replicas", "Age"]
    assert out["rows"][0]["cells"] == ["web", 2, 3, "2024-01-01T00:00:00Z"]


def test_containers_may_mount_a_claim_template_which_is_not_stored_as_a_volume() -> None:
    from kray.crds.apps_statefulset import StatefulSet

    mount = {"name": "data", "mountPath": "/data"}
    body = {
        "metadata": {"name": "web", "namespace": "d"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i", "volumeMounts": [mount]}]},
            },
            "volumeClaimTemplates": [
                {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                        "resources": {"requests": {"storage": "1Gi"}}}}
            ],
        },
    }  # fmt: skip
    sts = StatefulSet.model_validate(body)
    assert "volumes" not in sts.to_dict()["spec"]["template"]["spec"]
    mount["name"] = "nope"
    with pytest.raises(ValueError, match=r'volumeMounts\[0\].name: Not found: "nope"'):
        StatefulSet.model_validate(body)
