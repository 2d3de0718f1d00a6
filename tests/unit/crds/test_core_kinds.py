"""Built-in kinds: real manifests load unchanged, defaults apply, and objects round-trip."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

import kray.crds as crds
from kray.crds import (
    REGISTRY,
    ConfigMap,
    Endpoints,
    Event,
    Lease,
    Namespace,
    Node,
    Pod,
    Quantity,
    Resource,
    Secret,
    Service,
    validate_object,
)
from kray.crds.core import PodSpec, PodTemplateSpec, Taint, Toleration, qos_class

from .manifests import DEPLOYMENT_TEMPLATE, ENDPOINTS, NODE, POD, SERVICE, load


def roundtrip(model: type[Resource], data: dict[str, Any]) -> Resource:
    obj = validate_object(model, data)
    wire = obj.to_dict()
    again = model.model_validate(wire)
    assert again == obj
    assert again.to_dict() == wire
    return obj


def test_builtin_kinds_registered_with_identity() -> None:
    expected = {
        ("v1", "Pod"): ("pods", True, ("po",), True),
        ("v1", "Node"): ("nodes", False, ("no",), True),
        ("v1", "Namespace"): ("namespaces", False, ("ns",), True),
        ("v1", "Service"): ("services", True, ("svc",), True),
        ("v1", "Endpoints"): ("endpoints", True, ("ep",), False),
        ("v1", "ConfigMap"): ("configmaps", True, ("cm",), False),
        ("v1", "Secret"): ("secrets", True, (), False),
        ("v1", "Event"): ("events", True, ("ev",), False),
        ("coordination.k8s.io/v1", "Lease"): ("leases", True, (), False),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): (
            "customresourcedefinitions",
            False,
            ("crd", "crds"),
            True,
        ),
    }
    for (api_version, kind_name), (plural, namespaced, short, status) in expected.items():
        info = REGISTRY.get(api_version, kind_name)
        assert (info.plural, info.namespaced, info.short_names, info.has_status_subresource) == (
            plural,
            namespaced,
            short,
            status,
        )
    assert REGISTRY.resolve("po").model is Pod
    assert REGISTRY.resolve("svc").model is Service
    assert crds.__all__  # the package re-exports its main names


def test_pod_manifest_round_trips() -> None:
    pod = roundtrip(Pod, load(POD))
    assert isinstance(pod, Pod)
    spec = pod.spec
    web = spec.containers[0]
    assert web.ports and web.ports[0].host_ip == "0.0.0.0" and web.ports[1].protocol == "UDP"
    assert web.liveness_probe and web.liveness_probe.http_get and web.liveness_probe.http_get.port == 8080
    assert web.readiness_probe and web.readiness_probe.tcp_socket and web.readiness_probe.tcp_socket.port == "http"
    assert web.readiness_probe.period_seconds == 10 and web.readiness_probe.failure_threshold == 3
    assert web.security_context and web.security_context.capabilities
    assert web.security_context.capabilities.drop == ["ALL"]
    assert spec.volumes and [v.source_type for v in spec.volumes] == [
        "emptyDir",
        "hostPath",
        "secret",
        "persistentVolumeClaim",
    ]
    assert spec.affinity and spec.affinity.node_affinity
    required = spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    assert required is not None
    assert required.matches({"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, {"metadata.name": "n1"})
    assert not required.matches({"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, {"metadata.name": "bad-node"})
    assert spec.topology_spread_constraints and spec.topology_spread_constraints[0].max_skew == 1
    assert pod.status and pod.status.phase == "Running" and pod.status.pod_ips
    statuses = pod.status.container_statuses or []
    assert statuses[0].last_state and statuses[0].last_state.terminated
    assert statuses[0].last_state.terminated.exit_code == 137
    wire = pod.to_dict()
    assert wire["status"]["podIP"] == "10.244.1.7" and wire["status"]["hostIP"] == "10.0.0.5"
    assert wire["spec"]["containers"][0]["ports"][0]["hostIP"] == "0.0.0.0"
    assert "initContainers" in wire["spec"] and "nominatedNodeName" not in wire["status"]
    assert spec.resource_requests() == {"cpu": Quantity("250m"), "memory": Quantity("64Mi")}
    assert pod.qos_class() == "Burstable"


def test_pod_defaults() -> None:
    pod = Pod.model_validate({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    assert pod.api_version == "v1" and pod.kind == "Pod"
    assert pod.spec.restart_policy == "Always"
    assert pod.spec.scheduler_name == "default-scheduler"
    assert pod.spec.termination_grace_period_seconds == 30
    assert pod.spec.containers[0].image_pull_policy == "Always"  # no tag means :latest
    pinned = Pod.model_validate({"spec": {"containers": [{"name": "c", "image": "reg:5000/busybox:1.36"}]}})
    assert pinned.spec.containers[0].image_pull_policy == "IfNotPresent"
    assert pod.to_dict()["spec"]["containers"][0]["terminationMessagePath"] == "/dev/termination-log"
    assert "status" not in pod.to_dict()


def test_deployment_pod_template_loads() -> None:
    template = PodTemplateSpec.model_validate(load(DEPLOYMENT_TEMPLATE))
    c = template.spec.containers[0]
    assert c.image_pull_policy == "IfNotPresent"  # digest-pinned
    assert c.env and c.env[0].value_from and c.env[0].value_from.field_ref
    assert c.env[2].value_from and c.env[2].value_from.resource_field_ref
    assert c.env_from and c.env_from[1].prefix == "S_"
    assert c.resources and c.resources.limits and c.resources.limits["nvidia.com/gpu"] == 8
    assert c.requests()["memory"] == Quantity("256Gi")  # limits stand in for requests
    assert template.spec.volumes and template.spec.volumes[1].config_map
    assert template.spec.volumes[1].config_map.default_mode == 0o444
    assert qos_class(template.spec) == "Guaranteed"
    assert (
        PodTemplateSpec.model_validate(template.model_dump(by_alias=True, exclude_none=True, mode="json")) == template
    )


def test_node_with_gpu_capacity_round_trips() -> None:
    node = roundtrip(Node, load(NODE))
    assert isinstance(node, Node) and node.status
    assert node.status.capacity and node.status.capacity["nvidia.com/gpu"] == 8
    assert node.status.allocatable and node.status.allocatable["cpu"].milli() == 95500
    assert node.status.capacity["memory"].amount == Decimal(1056440300 * 1024)
    assert node.status.daemon_endpoints and node.status.daemon_endpoints.kubelet_endpoint
    assert node.status.daemon_endpoints.kubelet_endpoint.port == 10250
    assert node.to_dict()["status"]["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    assert node.to_dict()["spec"]["podCIDR"] == "10.244.1.0/24" and node.spec.provider_id == "ray://node/abc123"
    assert node.is_ready() and node.status.address() == "10.0.0.5"
    assert node.metadata.namespace is None and not Node.NAMESPACED


def test_service_and_endpoints_round_trip() -> None:
    svc = roundtrip(Service, load(SERVICE))
    assert isinstance(svc, Service) and svc.spec.ports
    assert svc.spec.ports[0].target_port == "http" and svc.spec.ports[1].target_port == 9090
    assert svc.spec.ports[0].protocol == "TCP" and svc.to_dict()["spec"]["clusterIP"] == "10.96.0.20"
    plain = Service.model_validate({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}})
    assert plain.spec.type == "ClusterIP" and plain.spec.ports and plain.spec.ports[0].target_port == 80
    ep = roundtrip(Endpoints, load(ENDPOINTS))
    assert isinstance(ep, Endpoints) and ep.subsets and ep.subsets[0].addresses
    assert ep.subsets[0].addresses[0].target_ref and ep.subsets[0].addresses[0].target_ref.kind == "Pod"


def test_namespace() -> None:
    ns = roundtrip(
        Namespace,
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "team-a"},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        },
    )
    assert isinstance(ns, Namespace) and ns.status and ns.status.phase == "Active"
    with pytest.raises(crds.ValidationFailed, match="Unsupported value"):
        validate_object(Namespace, {"metadata": {"name": "x"}, "status": {"phase": "Gone"}})


def test_configmap_and_secret() -> None:
    cm = roundtrip(
        ConfigMap,
        {
            "metadata": {"name": "c"},
            "data": {"a.yaml": "x: 1"},
            "binaryData": {"b": "AAE="},
            "immutable": True,
        },
    )
    assert isinstance(cm, ConfigMap) and cm.binary_data == {"b": "AAE="}
    secret = roundtrip(
        Secret, {"metadata": {"name": "s"}, "data": {"user": "YWRtaW4="}, "stringData": {"pw": "hunter2"}}
    )
    assert isinstance(secret, Secret)
    assert secret.type == "Opaque" and secret.string_data is None  # stringData is merged into data
    assert secret.decoded() == {"user": b"admin", "pw": b"hunter2"}
    assert secret.data and secret.data["pw"] == base64.b64encode(b"hunter2").decode()
    with pytest.raises(crds.ValidationFailed) as exc:
        validate_object(Secret, {"metadata": {"name": "s"}, "data": {"bad key": "!!!"}})
    fields = {e.field for e in exc.value.errors}
    assert fields == {"data", "data[bad key]"}
    assert "!!!" not in exc.value.message  # secret values are never echoed


def test_event_and_lease_micro_time() -> None:
    ev = roundtrip(
        Event,
        {
            "metadata": {"name": "web-0.17a", "namespace": "prod"},
            "involvedObject": {
                "kind": "Pod",
                "name": "web-0",
                "namespace": "prod",
                "uid": "u",
                "fieldPath": "spec.containers{web}",
            },
            "reason": "Scheduled",
            "message": "Successfully assigned prod/web-0 to gpu-node-1",
            "type": "Normal",
            "count": 1,
            "firstTimestamp": "2024-05-01T10:00:00Z",
            "lastTimestamp": "2024-05-01T10:00:00Z",
            "eventTime": "2024-05-01T10:00:00.123456Z",
            "source": {"component": "default-scheduler"},
            "reportingComponent": "default-scheduler",
            "reportingInstance": "sched-1",
            "action": "Binding",
        },
    )
    assert isinstance(ev, Event) and ev.involved_object.field_path == "spec.containers{web}"
    assert ev.to_dict()["eventTime"] == "2024-05-01T10:00:00.123456Z"
    now = datetime(2024, 5, 1, 10, 0, 0, tzinfo=timezone.utc)
    lease = Lease.model_validate(
        {
            "metadata": {"name": "kube-scheduler", "namespace": "kube-system"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": now},
        }
    )
    assert lease.api_version == "coordination.k8s.io/v1"
    assert lease.to_dict()["spec"]["renewTime"] == "2024-05-01T10:00:00.000000Z"  # MicroTime: always 6 digits
    assert Lease.model_validate(lease.to_dict()) == lease
    naive = Lease.model_validate({"spec": {"acquireTime": datetime(2024, 1, 1, 0, 0, 0, 5)}})
    assert Lease.model_validate(naive.to_dict()) == naive


def test_taints_and_tolerations() -> None:
    gpu = Taint(key="nvidia.com/gpu", value="present", effect="NoSchedule")
    assert Toleration(key="nvidia.com/gpu", operator="Exists").tolerates(gpu)
    assert Toleration(key="nvidia.com/gpu", value="present", effect="NoSchedule").tolerates(gpu)
    assert not Toleration(key="nvidia.com/gpu", value="absent").tolerates(gpu)
    assert not Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoExecute").tolerates(gpu)
    assert Toleration(operator="Exists").tolerates(gpu)  # empty key + Exists tolerates everything
    assert crds.core.tolerates_all([], [Taint(key="x", effect="PreferNoSchedule")], ("NoSchedule",))
    assert not crds.core.tolerates_all([], [gpu], ("NoSchedule",))


def test_built_in_python_objects_serialize_with_type_meta() -> None:
    pod = Pod(metadata=crds.ObjectMeta(name="p"), spec=PodSpec(containers=[crds.Container(name="c", image="i:1")]))
    wire = pod.to_dict()
    assert wire["apiVersion"] == "v1" and wire["kind"] == "Pod"
    assert Pod.model_validate(wire) == pod
    assert Pod.model_validate_json(pod.model_dump_json(by_alias=True, exclude_none=True)) == pod


def test_unknown_fields_are_kept() -> None:
    data = load(POD)
    data["spec"]["futureField"] = {"x": 1}
    data["spec"]["containers"][0]["resizePolicy"] = [{"resourceName": "cpu", "restartPolicy": "NotRequired"}]
    pod = roundtrip(Pod, data)
    wire = pod.to_dict()
    assert wire["spec"]["futureField"] == {"x": 1}
    assert wire["spec"]["containers"][0]["resizePolicy"][0]["resourceName"] == "cpu"


def test_builtin_objects_pickle() -> None:
    import pickle

    pod = Pod.model_validate(load(POD))
    assert pickle.loads(pickle.dumps(pod)) == pod
    node = Node.model_validate(load(NODE))
    assert pickle.loads(pickle.dumps(node)) == node
