"""Kind resolution: server discovery first (custom resources), the local registry as fallback."""

from __future__ import annotations

import httpx
import pytest

from kray.cli.common import CliError, ref_for_manifest, resolve_kind
from kray.client import Client

CORE = {
    "groupVersion": "v1",
    "resources": [
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "shortNames": ["po"]},
        {"name": "pods/status", "namespaced": True, "kind": "Pod"},
    ],
}
GROUPS = {
    "groups": [{"name": "ml.example.com", "preferredVersion": {"version": "v2"}, "versions": [{"version": "v2"}]}]
}
JOBS = {
    "groupVersion": "ml.example.com/v2",
    "resources": [{"name": "trainjobs", "singularName": "trainjob", "namespaced": True, "kind": "TrainJob"}],
}


def client_for(docs: dict[str, dict]) -> Client:
    def handler(request: httpx.Request) -> httpx.Response:
        doc = docs.get(request.url.path)
        if doc is None:
            return httpx.Response(404, json={"kind": "Status", "code": 404, "reason": "NotFound"})
        return httpx.Response(200, json=doc)

    return Client(server="http://kray.test", token="t", transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("typed", "plural", "group"),
    [
        ("po", "pods", ""),
        ("pod", "pods", ""),
        ("Pods", "pods", ""),
        ("trainjob", "trainjobs", "ml.example.com"),
        ("trainjobs.ml.example.com", "trainjobs", "ml.example.com"),
    ],
)
def test_resolves_through_discovery(typed: str, plural: str, group: str) -> None:
    with client_for({"/api/v1": CORE, "/apis": GROUPS, "/apis/ml.example.com/v2": JOBS}) as c:
        ref = resolve_kind(c, typed)
    assert (ref.plural, ref.group) == (plural, group)


def test_falls_back_to_the_local_registry_when_discovery_lacks_a_kind() -> None:
    with client_for({"/api/v1": {"resources": []}, "/apis": {"groups": []}}) as c:
        assert resolve_kind(c, "svc").plural == "services"
        assert ref_for_manifest(c, "v1", "ConfigMap").plural == "configmaps"
        with pytest.raises(CliError, match='the server doesn\'t have a resource type "nosuchkind"'):
            # (not "gizmo": an integration test in the same process registers a Gizmo CRD)
            resolve_kind(c, "nosuchkind")
        with pytest.raises(CliError, match='no matches for kind "Gizmo" in version "v1"'):
            ref_for_manifest(c, "v1", "Gizmo")
