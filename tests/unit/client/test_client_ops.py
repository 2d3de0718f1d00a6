"""The sans-I/O request builders and the apply merge, shared by both clients."""

from __future__ import annotations

from typing import Any

import pytest

from kray.client import ops
from kray.client.errors import AlreadyExists, Conflict, Gone, Invalid, ServerError, error_from_response
from kray.client.paths import ResourceRef

PODS = ResourceRef("", "v1", "pods", True, "Pod")
NODES = ResourceRef("", "v1", "nodes", False, "Node")
JOBS = ResourceRef("batch.kray.io", "v1alpha1", "trainjobs", True, "TrainJob")


def test_paths() -> None:
    assert PODS.path("default", "web", "status") == "/api/v1/namespaces/default/pods/web/status"
    assert PODS.path(None) == "/api/v1/pods"
    assert NODES.path("ignored", "n1") == "/api/v1/nodes/n1"
    assert JOBS.path("ml") == "/apis/batch.kray.io/v1alpha1/namespaces/ml/trainjobs"
    assert ops.namespace_for(NODES, "x", "default") is None
    assert ops.namespace_for(PODS, None, "default") == "default"


def test_requests() -> None:
    req = ops.delete_request(PODS, "web", "d", "Foreground", {"uid": "u1"}, 0)
    assert req.method == "DELETE"
    assert req.body == {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Foreground",
        "preconditions": {"uid": "u1"},
        "gracePeriodSeconds": 0,
    }
    assert ops.delete_request(PODS, "web", "d").body is None
    patch = ops.patch_request(PODS, "web", [{"op": "add"}], "d", "json", None)
    assert patch.content_type == "application/json-patch+json"
    assert ops.patch_request(PODS, "w", {}, "d", "strategic", "status").path.endswith("/w/status")
    with pytest.raises(ValueError):
        ops.patch_request(PODS, "w", {}, "d", "apply", None)
    watch = ops.watch_request(PODS, "d", "42", "app=web", "spec.nodeName=n1", 30, True)
    assert watch.params == {
        "watch": "true",
        "labelSelector": "app=web",
        "fieldSelector": "spec.nodeName=n1",
        "resourceVersion": "42",
        "timeoutSeconds": "30",
        "allowWatchBookmarks": "true",
    }


@pytest.mark.parametrize(
    ("code", "body", "cls"),
    [
        (409, b'{"kind":"Status","code":409,"reason":"AlreadyExists","message":"x"}', AlreadyExists),
        (409, b'{"kind":"Status","code":409,"reason":"Conflict","message":"x"}', Conflict),
        (410, b'{"kind":"Status","code":410,"reason":"Expired","message":"too old"}', Gone),
        (422, b'{"kind":"Status","code":422,"reason":"Invalid","message":"x"}', Invalid),
        (502, b"<html>bad gateway</html>", ServerError),
    ],
)
def test_errors_from_responses(code: int, body: bytes, cls: type) -> None:
    err = error_from_response(code, body)
    assert type(err) is cls and err.status == code and err.message


def test_merge_for_apply_keeps_server_defaults() -> None:
    live: dict[str, Any] = {
        "metadata": {"name": "web", "resourceVersion": "7", "uid": "u"},
        "spec": {
            "containers": [{"name": "c", "image": "a", "imagePullPolicy": "Always"}],
            "restartPolicy": "Always",
        },
        "status": {"phase": "Running"},
    }
    manifest = {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "a"}]}}
    assert ops.merge_for_apply(live, manifest) is None  # unchanged: only defaults differ
    manifest["spec"]["containers"][0]["image"] = "b"
    merged = ops.merge_for_apply(live, manifest)
    assert merged is not None
    assert merged["spec"]["containers"] == [{"name": "c", "image": "b", "imagePullPolicy": "Always"}]
    assert merged["metadata"]["resourceVersion"] == "7" and merged["status"] == {"phase": "Running"}
    two = {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c"}, {"name": "d"}]}}
    assert ops.merge_for_apply(live, two)["spec"]["containers"] == two["spec"]["containers"]  # type: ignore[index]
