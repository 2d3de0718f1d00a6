"""Validation: Kubernetes wording and camelCase field paths for every kind of error."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from kray.crds import (
    REGISTRY,
    FieldError,
    Namespace,
    Pod,
    Service,
    ValidationFailed,
    format_validation_error,
    validate_name,
    validate_object,
)
from kray.crds.core import Node
from kray.crds.validation import (
    DNS1123_SUBDOMAIN_ERR,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
)


def errors_of(model: type[Any], data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationFailed) as exc:
        validate_object(model, data)
    return [str(e) for e in exc.value.errors]


def pod(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    base.update(spec)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": base,
    }


def test_required_fields_have_camel_case_paths() -> None:
    assert errors_of(Pod, pod(containers=[{"name": "c"}])) == ["spec.containers[0].image: Required value"]
    assert errors_of(Pod, pod(initContainers=[{"image": "x"}])) == ["spec.initContainers[0].name: Required value"]
    assert errors_of(Pod, pod(containers=[])) == ["spec.containers: Required value"]
    assert errors_of(Pod, {"metadata": {"name": "p"}}) == ["spec: Required value"]


def test_snake_case_input_still_reports_json_paths() -> None:
    with pytest.raises(pydantic.ValidationError) as exc:
        Pod.model_validate(
            {
                "spec": {
                    "init_containers": [{"name": "c", "image": "i", "image_pull_policy": "Sometimes"}],
                    "containers": [{"name": "c2", "image": "i"}],
                }
            }
        )
    errs = format_validation_error(exc.value)
    assert [e.field for e in errs] == ["spec.initContainers[0].imagePullPolicy"]
    assert errs[0].reason == "FieldValueNotSupported"


def test_enum_messages_list_allowed_values() -> None:
    assert errors_of(Pod, pod(restartPolicy="Sometimes")) == [
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"'
    ]
    msgs = errors_of(Service, {"metadata": {"name": "s"}, "spec": {"type": "Magic", "ports": [{"port": 1}]}})
    assert msgs == [
        'spec.type: Unsupported value: "Magic": '
        'supported values: "ClusterIP", "NodePort", "LoadBalancer", "ExternalName"'
    ]


def test_ports_names_and_duplicates() -> None:
    msgs = errors_of(Pod, pod(containers=[{"name": "c", "image": "i", "ports": [{"containerPort": 70000}]}]))
    assert msgs == [
        "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"
    ]
    msgs = errors_of(Pod, pod(containers=[{"name": "Web_1", "image": "i"}]))
    assert msgs[0].startswith(
        'spec.containers[0].name: Invalid value: "Web_1": a lowercase RFC 1123 label must consist of'
    )
    msgs = errors_of(Pod, pod(initContainers=[{"name": "c", "image": "i"}]))
    assert msgs == ['spec.containers[0].name: Duplicate value: "c"']
    msgs = errors_of(
        Pod,
        pod(containers=[{"name": "c", "image": "i", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]),
    )
    assert msgs == ['spec.containers[0].volumeMounts[0].name: Not found: "nope"']
    msgs = errors_of(Service, {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "name": "a"}, {"port": 81}]}})
    assert msgs == ["spec.ports[1].name: Required value"]


def test_type_errors_and_dict_keys() -> None:
    msgs = errors_of(
        Pod,
        pod(containers=[{"name": "c", "image": "i", "resources": {"limits": {"nvidia.com/gpu": "lots"}}}]),
    )
    assert len(msgs) == 1 and msgs[0].startswith(
        'spec.containers[0].resources.limits[nvidia.com/gpu]: Invalid value: "lots"'
    )
    msgs = errors_of(Node, {"metadata": {"name": "n"}, "status": {"capacity": {"cpu": [1]}}})
    assert msgs[0].startswith("status.capacity[cpu]: Invalid value")
    msgs = errors_of(Pod, pod(terminationGracePeriodSeconds="soon"))
    assert msgs[0].startswith('spec.terminationGracePeriodSeconds: Invalid value: "soon"')


def test_probe_and_volume_one_of() -> None:
    msgs = errors_of(Pod, pod(containers=[{"name": "c", "image": "i", "livenessProbe": {"periodSeconds": 3}}]))
    assert msgs == ["spec.containers[0].livenessProbe: Required value: must specify a handler type"]
    msgs = errors_of(Pod, pod(volumes=[{"name": "v"}]))
    assert msgs == ["spec.volumes[0]: Required value: must specify a volume type"]
    msgs = errors_of(Pod, pod(volumes=[{"name": "v", "emptyDir": {}, "hostPath": {"path": "/"}}]))
    assert msgs == ["spec.volumes[0]: Forbidden: may not specify more than 1 volume type"]


def test_names_use_the_kind_rule() -> None:
    assert validate_name(Pod, "web-0.prod") == []
    [err] = validate_name(REGISTRY.for_model(Pod), "Web")
    assert err == FieldError("metadata.name", err.message, "FieldValueInvalid")
    assert err.message.startswith('Invalid value: "Web": ' + DNS1123_SUBDOMAIN_ERR)
    assert validate_name(Namespace, "a.b")[0].message.startswith('Invalid value: "a.b": a lowercase RFC 1123 label')
    assert validate_name(Service, "1abc")[0].message.startswith('Invalid value: "1abc": a DNS-1035 label')
    assert (
        validate_name(Pod, "x" * 254)[0].message == f'Invalid value: "{"x" * 254}": must be no more than 253 characters'
    )
    assert validate_name(Pod, "web-", prefix=True) == []  # generateName
    assert errors_of(Pod, {"metadata": {}, "spec": {"containers": [{"name": "c", "image": "i"}]}}) == [
        "metadata.name: Required value: name or generateName is required"
    ]
    validate_object(Pod, {"metadata": {"generateName": "web-"}, "spec": {"containers": [{"name": "c", "image": "i"}]}})


@pytest.mark.parametrize(
    ("check", "value", "ok"),
    [
        (is_dns1123_label, "abc-1", True),
        (is_dns1123_label, "-abc", False),
        (is_dns1123_label, "a.b", False),
        (is_dns1123_label, "a" * 64, False),
        (is_dns1123_subdomain, "a.b-c.d", True),
        (is_dns1123_subdomain, "A.b", False),
        (is_qualified_name, "app", True),
        (is_qualified_name, "app.kubernetes.io/name", True),
        (is_qualified_name, "nvidia.com/gpu.product", True),
        (is_qualified_name, "a/b/c", False),
        (is_qualified_name, "/b", False),
        (is_qualified_name, "Example.com/b", False),
        (is_qualified_name, "-x", False),
        (is_valid_label_value, "", True),
        (is_valid_label_value, "v1.2_x-Y", True),
        (is_valid_label_value, "a b", False),
        (is_valid_label_value, "x" * 64, False),
    ],
)
def test_name_checks(check: Any, value: str, ok: bool) -> None:
    assert (check(value) == []) is ok


def test_labels_and_annotations() -> None:
    msgs = errors_of(
        Pod,
        {
            **pod(),
            "metadata": {
                "name": "p",
                "labels": {"bad key!": "v", "ok": "bad value!"},
                "annotations": {"a/b/c": "x"},
            },
        },
    )
    assert msgs[0].startswith('metadata.labels: Invalid value: "bad key!": name part must consist of')
    assert msgs[1].startswith('metadata.labels[ok]: Invalid value: "bad value!": a valid label must be an empty string')
    assert msgs[2].startswith('metadata.annotations: Invalid value: "a/b/c": a qualified name must consist')
    msgs = errors_of(Pod, {**pod(), "metadata": {"name": "p", "namespace": "Bad_NS"}})
    assert msgs[0].startswith('metadata.namespace: Invalid value: "Bad_NS": a lowercase RFC 1123 label')


def test_all_errors_at_once_and_status_body() -> None:
    data = {"metadata": {"name": "Bad"}, "spec": {"containers": [{"name": "c"}], "restartPolicy": "X"}}
    with pytest.raises(ValidationFailed) as exc:
        validate_object(Pod, data)
    failed = exc.value
    assert [e.field for e in failed.errors] == [
        "metadata.name",
        "spec.containers[0].image",
        "spec.restartPolicy",
    ]
    assert failed.message.startswith('Pod "Bad" is invalid: [metadata.name: Invalid value: "Bad"')
    status = failed.to_status()
    assert status.code == 422 and status.reason == "Invalid" and status.details and status.details.causes
    assert status.details.kind == "Pod" and status.details.causes[1].field == "spec.containers[0].image"
    assert status.details.causes[1].reason == "FieldValueRequired"
    single = ValidationFailed([FieldError("spec", "Required value", "FieldValueRequired")], "Pod", "p")
    assert single.message == 'Pod "p" is invalid: spec: Required value'


def test_validate_object_accepts_models_and_kind_info() -> None:
    obj = validate_object(REGISTRY.for_model(Pod), pod())
    assert isinstance(obj, Pod)
    assert validate_object(Pod, obj) == obj


def test_validate_object_is_fast() -> None:
    import time

    data = pod(
        containers=[
            {
                "name": "c",
                "image": "i",
                "ports": [{"containerPort": 80}],
                "resources": {"requests": {"cpu": "1"}},
            }
        ]
    )
    start = time.perf_counter()
    for _ in range(2000):
        validate_object(Pod, data)
    assert time.perf_counter() - start < 2.0  # ~0.1 s here; generous for slow CI


def test_union_type_errors_are_reported_once() -> None:
    msgs = errors_of(Service, {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "targetPort": [1]}]}})
    assert msgs == [
        'spec.ports[0].targetPort: Invalid value: "array": '
        "input should be a valid integer or input should be a valid string"
    ]


def test_nested_model_errors_map_to_json_names() -> None:
    from kray.crds.core import PodSpec

    with pytest.raises(pydantic.ValidationError) as exc:
        PodSpec.model_validate({"init_containers": [{"name": "a", "image": "i", "image_pull_policy": "x"}]})
    assert [e.field for e in format_validation_error(exc.value)] == ["initContainers[0].imagePullPolicy"]
