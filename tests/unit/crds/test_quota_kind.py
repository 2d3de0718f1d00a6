"""ResourceQuota (core/v1): validation with Kubernetes' field paths and wording, and the usage
arithmetic admission and the controller share (init containers, overhead, extended resources,
terminal and terminating pods, scopes)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.crds import REGISTRY, Pod, Resource, ValidationFailed, validate_object
from kray.crds.core.quota import (
    ResourceQuota,
    ResourceQuotaSpec,
    add,
    matches_scopes,
    matching_resources,
    missing_requests,
    object_usage,
    pod_usage,
    pretty,
)
from kray.crds.quantity import Quantity

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)


def quota(spec: dict[str, Any]) -> ResourceQuota:
    obj = validate_object(ResourceQuota, {"metadata": {"name": "team-a", "namespace": "ml"}, "spec": spec})
    assert isinstance(obj, ResourceQuota)
    return obj


def errors_of(spec: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationFailed) as failed:
        quota(spec)
    return [str(e) for e in failed.value.errors]


def container(name: str = "main", requests: dict[str, Any] | None = None, limits: dict[str, Any] | None = None) -> Any:
    resources = {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
    return {"name": name, "image": "x", "resources": resources}


def pod(*containers: Any, init: list[Any] | None = None, **spec: Any) -> Pod:
    body: dict[str, Any] = {"containers": list(containers) or [container()], **spec}
    if init:
        body["initContainers"] = init
    return Pod.model_validate({"metadata": {"name": "p", "namespace": "ml"}, "spec": body})


def as_str(values: dict[str, Quantity]) -> dict[str, str]:
    return {k: str(v) for k, v in values.items()}


def test_kind_is_registered_like_kubernetes() -> None:
    info = REGISTRY.resolve("quota")
    assert (info.group, info.version, info.kind, info.plural, info.namespaced, info.has_status_subresource) == (
        "", "v1", "ResourceQuota", "resourcequotas", True, True,
    )  # fmt: skip
    hard = {"requests.nvidia.com/gpu": "8", "requests.cpu": "64", "limits.memory": "256Gi", "pods": "20",
            "count/trainingjobs.kray.io": "4", "services": "2", "configmaps": "10"}  # fmt: skip
    assert as_str(quota({"hard": hard}).spec.hard or {}) == hard


def test_bad_hard_keys_and_values_name_the_field() -> None:
    hard = {"limits.nvidia.com/gpu": "1", "gpus": "1", "nvidia.com/gpu": "1", "pods": "1.5", "cpu": "-1"}
    assert errors_of({"hard": hard}) == [
        'spec.hard[limits.nvidia.com/gpu]: Invalid value: "limits.nvidia.com/gpu": must be a standard resource '
        "for quota: use requests.nvidia.com/gpu for an extended resource",
        'spec.hard[gpus]: Invalid value: "gpus": must be a standard resource for quota',
        'spec.hard[nvidia.com/gpu]: Invalid value: "nvidia.com/gpu": must be a standard resource for quota: '
        "use requests.nvidia.com/gpu for an extended resource",
        'spec.hard[pods]: Invalid value: "1500m": must be an integer',
        'spec.hard[cpu]: Invalid value: "-1": must be greater than or equal to 0',
    ]
    [bad_name] = errors_of({"hard": {"requests.-x/y": "1"}})
    assert bad_name.startswith('spec.hard[requests.-x/y]: Invalid value: "requests.-x/y": prefix part')


def test_scopes_are_checked() -> None:
    assert errors_of({"hard": {"pods": "1"}, "scopes": ["Foo"]}) == [
        'spec.scopes: Invalid value: ["Foo"]: unsupported scope'
    ]
    assert errors_of({"hard": {"cpu": "1"}, "scopes": ["BestEffort"]}) == [
        'spec.scopes: Invalid value: ["BestEffort"]: unsupported scope applied to resource'
    ]
    assert errors_of({"hard": {"pods": "1"}, "scopes": ["BestEffort", "NotBestEffort"]}) == [
        'spec.scopes: Invalid value: ["BestEffort", "NotBestEffort"]: conflicting scopes'
    ]
    selector = {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In"}]}
    assert errors_of({"hard": {"pods": "1"}, "scopeSelector": selector}) == [
        "spec.scopeSelector.matchExpressions[0].values: Required value: must be at least one value when "
        "`operator` is 'In' or 'NotIn' for scope selector"
    ]
    selector = {"matchExpressions": [{"scopeName": "BestEffort", "operator": "In", "values": ["x"]}]}
    [operator] = errors_of({"hard": {"pods": "1"}, "scopeSelector": selector})
    assert operator.startswith('spec.scopeSelector.matchExpressions[0].operator: Invalid value: "In": must be')
    # GPUs under a PriorityClass scope: extended resources may be scoped.
    ok = {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}
    quota({"hard": {"requests.nvidia.com/gpu": "4"}, "scopeSelector": ok})


def test_pod_usage_takes_max_of_init_and_sum_of_app_containers_plus_overhead() -> None:
    p = pod(
        container("a", {"cpu": "1", "memory": "1Gi"}, {"cpu": "2", "memory": "1Gi"}),
        container("b", {"cpu": "500m"}, {"nvidia.com/gpu": 4}),
        init=[container("setup", {"cpu": "3", "memory": "512Mi"}, {"cpu": "3"})],
        overhead={"cpu": "100m", "memory": "64Mi"},
    )
    assert as_str(pod_usage(p, NOW)) == {
        "count/pods": "1",
        "pods": "1",
        "cpu": "3100m",  # max(1 + 0.5, 3) + 0.1
        "requests.cpu": "3100m",
        "memory": "1088Mi",  # max(1Gi, 512Mi) + 64Mi
        "requests.memory": "1088Mi",
        "limits.cpu": "3100m",  # max(2, 3) + overhead (limited)
        "limits.memory": "1088Mi",
        "requests.nvidia.com/gpu": "4",  # a limit alone is the request (Kubernetes' defaulting)
    }


def test_terminal_and_long_terminating_pods_are_not_charged() -> None:
    p = pod(container("a", {"nvidia.com/gpu": 2}))
    p.status = Pod.model_validate({"spec": {"containers": [container()]}, "status": {"phase": "Succeeded"}}).status
    assert as_str(pod_usage(p, NOW)) == {"count/pods": "1"}  # still in storage: count/pods
    q = pod(container("a", {"nvidia.com/gpu": 2}))
    q.metadata.deletion_timestamp, q.metadata.deletion_grace_period_seconds = NOW, 30
    assert "requests.nvidia.com/gpu" in pod_usage(q, NOW + timedelta(seconds=30))
    assert "requests.nvidia.com/gpu" not in pod_usage(q, NOW + timedelta(seconds=31))


def test_which_resources_each_kind_consumes() -> None:
    names = ["pods", "requests.nvidia.com/gpu", "limits.cpu", "count/trainingjobs.kray.io", "services", "secrets"]
    assert matching_resources("", "pods", names) == {"pods", "requests.nvidia.com/gpu", "limits.cpu"}
    assert matching_resources("kray.io", "trainingjobs", names) == {"count/trainingjobs.kray.io"}
    assert matching_resources("", "services", names) == {"services"}
    assert matching_resources("apps", "deployments", names) == set()
    svc = Resource.model_validate({})  # any object: one of its kind
    assert as_str(object_usage("kray.io", "trainingjobs", svc, NOW)) == {"count/trainingjobs.kray.io": "1"}
    assert as_str(object_usage("", "secrets", svc, NOW)) == {"count/secrets": "1", "secrets": "1"}


def test_scopes_select_pods() -> None:
    best_effort, burstable = pod(), pod(container("a", {"cpu": "1"}))
    spec = ResourceQuotaSpec.model_validate({"hard": {"pods": "1"}, "scopes": ["BestEffort"]})
    assert matches_scopes(spec, best_effort) and not matches_scopes(spec, burstable)
    spec = ResourceQuotaSpec.model_validate({"hard": {"pods": "1"}, "scopes": ["NotBestEffort"]})
    assert matches_scopes(spec, burstable) and not matches_scopes(spec, best_effort)
    high = pod(priorityClassName="high")
    expr = {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}
    spec = ResourceQuotaSpec.model_validate({"hard": {"pods": "1"}, "scopeSelector": {"matchExpressions": [expr]}})
    assert matches_scopes(spec, high) and not matches_scopes(spec, best_effort)
    expr = {"scopeName": "PriorityClass", "operator": "DoesNotExist"}
    spec = ResourceQuotaSpec.model_validate({"hard": {"pods": "1"}, "scopeSelector": {"matchExpressions": [expr]}})
    assert matches_scopes(spec, best_effort) and not matches_scopes(spec, high)
    spec = ResourceQuotaSpec.model_validate({"hard": {"pods": "1"}, "scopes": ["Terminating"]})
    assert matches_scopes(spec, pod(activeDeadlineSeconds=60)) and not matches_scopes(spec, best_effort)
    assert not matches_scopes(spec, Resource.model_validate({}))  # scoped quotas are about pods only


def test_missing_cpu_request_names_the_containers() -> None:
    p = pod(container("main"), container("side", {"cpu": "1"}), init=[container("setup", limits={"cpu": "1"})])
    assert missing_requests(p, {"requests.cpu", "requests.nvidia.com/gpu"}) == "must specify requests.cpu for: main"
    assert missing_requests(p, {"requests.nvidia.com/gpu"}) == ""  # only cpu/memory are required


def test_add_and_pretty_follow_kubernetes() -> None:
    total = add({"memory": Quantity(0)}, {"memory": Quantity("1Gi"), "pods": Quantity(1)})
    assert pretty(total) == "memory=1Gi,pods=1"
