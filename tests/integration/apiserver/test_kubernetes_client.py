"""The official ``kubernetes`` Python client against kray's API server on a real etcd."""

# The client's models type every field as optional.
# mypy: disable-error-code="union-attr"

from __future__ import annotations

import threading

import pytest

import kray.crds  # noqa: F401
from kray.actors.apiserver import ServerThread

pytestmark = pytest.mark.etcd

kubernetes = pytest.importorskip("kubernetes")
from k8s_api import TOKEN  # noqa: E402  (its fixtures come through conftest.py)
from kubernetes import client as k8s  # noqa: E402
from kubernetes import watch as k8s_watch  # noqa: E402


def _pod(name: str, labels: dict[str, str] | None = None) -> k8s.V1Pod:
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name, labels=labels),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="main", image="busybox")]),
    )


def test_crud_and_list_with_label_selector(v1: k8s.CoreV1Api, namespace: str) -> None:
    created = v1.create_namespaced_pod(namespace, _pod("web", {"app": "web"}))
    assert created.metadata.uid and created.metadata.creation_timestamp is not None
    assert created.status.phase == "Pending"
    v1.create_namespaced_pod(namespace, _pod("db", {"app": "db"}))
    got = v1.read_namespaced_pod("web", namespace)
    assert got.spec.containers[0].image == "busybox"
    listed = v1.list_namespaced_pod(namespace, label_selector="app=web")
    assert [p.metadata.name for p in listed.items] == ["web"]
    assert listed.metadata.resource_version
    patched = v1.patch_namespaced_pod("web", namespace, {"metadata": {"labels": {"tier": "front"}}})
    assert patched.metadata.labels == {"app": "web", "tier": "front"}
    status = v1.patch_namespaced_pod_status("web", namespace, {"status": {"phase": "Running"}})
    assert status.status.phase == "Running"
    v1.delete_namespaced_pod("db", namespace)
    remaining = v1.list_namespaced_pod(namespace)
    assert [p.metadata.name for p in remaining.items] == ["web"]


def test_errors_are_api_exceptions(v1: k8s.CoreV1Api, namespace: str) -> None:
    from kubernetes.client.rest import ApiException

    with pytest.raises(ApiException) as exc:
        v1.read_namespaced_pod("missing", namespace)
    assert exc.value.status == 404
    bad = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="Bad_Name"), spec=_pod("x").spec)
    with pytest.raises(ApiException) as exc:
        v1.create_namespaced_pod(namespace, bad)
    assert exc.value.status == 422


def test_unauthorized_without_token(server: ServerThread) -> None:
    from kubernetes.client.rest import ApiException

    with k8s.ApiClient(k8s.Configuration(host=server.url)) as api_client, pytest.raises(ApiException) as exc:
        k8s.CoreV1Api(api_client).list_namespace()
    assert exc.value.status == 401


def test_watch_stream(v1: k8s.CoreV1Api, namespace: str) -> None:
    v1.create_namespaced_pod(namespace, _pod("first"))
    seen: list[tuple[str, str]] = []
    w = k8s_watch.Watch()

    def writer() -> None:
        v1.create_namespaced_pod(namespace, _pod("second"))
        v1.delete_namespaced_pod("second", namespace)

    started = threading.Event()

    def run_writer() -> None:
        started.wait(10)
        writer()

    thread = threading.Thread(target=run_writer)
    thread.start()
    for event in w.stream(v1.list_namespaced_pod, namespace, timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        started.set()
        if len(seen) == 4:
            w.stop()
    thread.join()
    assert seen == [
        ("ADDED", "first"),
        ("ADDED", "second"),
        ("MODIFIED", "second"),
        ("DELETED", "second"),
    ] or seen == [
        ("ADDED", "first"),
        ("ADDED", "second"),
        ("DELETED", "second"),
    ]


def test_discovery(server: ServerThread, v1: k8s.CoreV1Api) -> None:
    with k8s.ApiClient(k8s.Configuration(host=server.url, api_key={"authorization": f"Bearer {TOKEN}"})) as api_client:
        versions = k8s.CoreApi(api_client).get_api_versions()
        assert versions.versions == ["v1"]
        resources = v1.get_api_resources()
        names = {r.name for r in resources.resources}
        assert {"pods", "pods/status", "namespaces", "nodes"} <= names
        groups = k8s.ApisApi(api_client).get_api_versions()
        assert groups.groups
        info = k8s.VersionApi(api_client).get_code()
        assert info.git_version.startswith("v1.")
