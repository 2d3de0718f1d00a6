"""Every bad input: the exact Status, and nothing written to the store."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from kray.actors.apiserver import MAX_OBJECT_BYTES
from kray.actors.store import MemoryKV

from .conftest import TOKEN, pod, snapshot

PODS = "/api/v1/namespaces/default/pods"


async def _expect(
    kv: MemoryKV, send: Any, code: int, reason: str, message: str | None = None, contains: str | None = None
) -> dict[str, Any]:
    before = await snapshot(kv)
    r: httpx.Response = await send()
    assert r.status_code == code, r.text
    body = r.json()
    assert body["kind"] == "Status" and body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == code
    assert body["reason"] == reason
    if message is not None:
        assert body["message"] == message
    if contains is not None:
        assert contains in body["message"]
    assert await snapshot(kv) == before, "a failed request changed the store"
    return body


async def test_malformed_json(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    send = lambda: client.post(PODS, content=b'{"kind": "Pod",', headers={"Content-Type": "application/json"})  # noqa: E731
    await _expect(kv, send, 400, "BadRequest", contains="not valid JSON")


async def test_malformed_yaml(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    send = lambda: client.post(PODS, content=b"kind: [Pod", headers={"Content-Type": "application/yaml"})  # noqa: E731
    await _expect(kv, send, 400, "BadRequest", contains="not valid YAML")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([1, 2], "must be a JSON object, not an array"),
        ({"kind": "Pod", "metadata": "p"}, "metadata must be an object, not a string"),
        ({"kind": "Pod", "metadata": {"name": "p"}, "spec": [1]}, "spec must be an object"),
        ({"kind": 7, "metadata": {"name": "p"}}, "kind must be a string"),
    ],
)
async def test_wrong_top_level_types(client: httpx.AsyncClient, kv: MemoryKV, body: Any, fragment: str) -> None:
    await _expect(kv, lambda: client.post(PODS, json=body), 400, "BadRequest", contains=fragment)


async def test_mismatched_kind_and_api_version(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    svc = {**pod("p"), "kind": "Service"}
    await _expect(
        kv,
        lambda: client.post(PODS, json=svc),
        400,
        "BadRequest",
        "the kind in the data (Service) does not match the expected kind (Pod)",
    )
    v2 = {**pod("p"), "apiVersion": "v2"}
    await _expect(kv, lambda: client.post(PODS, json=v2), 400, "BadRequest", contains="API version in the data (v2)")


async def test_unknown_resource_and_version(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    msg = "the server could not find the requested resource"
    await _expect(kv, lambda: client.post("/api/v1/namespaces/default/gizmos", json={}), 404, "NotFound", msg)
    await _expect(kv, lambda: client.post("/api/v2/namespaces/default/pods", json=pod()), 404, "NotFound", msg)
    await _expect(kv, lambda: client.get("/apis/nope.io/v1/things"), 404, "NotFound", msg)


async def test_missing_required_field(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    body = await _expect(
        kv,
        lambda: client.post(PODS, json=pod("noimg", image=None)),
        422,
        "Invalid",
        'Pod "noimg" is invalid: spec.containers[0].image: Required value',
    )
    assert body["details"]["kind"] == "Pod"
    assert body["details"]["name"] == "noimg"
    assert body["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers[0].image"}
    ]


async def test_wrong_nested_type(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    data = pod("wt")
    data["spec"]["containers"][0]["ports"] = [{"containerPort": "eighty"}]
    body = await _expect(kv, lambda: client.post(PODS, json=data), 422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "spec.containers[0].ports[0].containerPort"


async def test_invalid_name(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    body = await _expect(
        kv,
        lambda: client.post(PODS, json=pod("Bad_Name")),
        422,
        "Invalid",
        contains='Pod "Bad_Name" is invalid',
    )
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert "RFC 1123 subdomain" in body["message"]


async def test_missing_name(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    data = pod("")
    data["metadata"] = {}
    await _expect(kv, lambda: client.post(PODS, json=data), 422, "Invalid", contains="name or generateName is required")


async def test_object_too_large(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    data = pod("big", annotations={"blob": "x" * (MAX_OBJECT_BYTES + 10)})
    raw = json.dumps(data).encode()
    await _expect(
        kv,
        lambda: client.post(PODS, content=raw, headers={"Content-Type": "application/json"}),
        413,
        "RequestEntityTooLarge",
        f"Request entity too large: limit is {MAX_OBJECT_BYTES}",
    )


async def test_stale_resource_version(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    created = (await client.post(PODS, json=pod("stale"))).json()
    fresh = dict(created, metadata={**created["metadata"], "labels": {"v": "1"}})
    assert (await client.put(f"{PODS}/stale", json=fresh)).status_code == 200
    created["metadata"]["labels"] = {"v": "old"}
    msg = (
        'Operation cannot be fulfilled on pods "stale": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    await _expect(kv, lambda: client.put(f"{PODS}/stale", json=created), 409, "Conflict", msg)
    patch = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"], "labels": {"v": "p"}}}
    headers = {"Content-Type": "application/merge-patch+json"}
    await _expect(kv, lambda: client.patch(f"{PODS}/stale", json=patch, headers=headers), 409, "Conflict", msg)


async def test_already_exists(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    await client.post(PODS, json=pod("dup"))
    await _expect(kv, lambda: client.post(PODS, json=pod("dup")), 409, "AlreadyExists", 'pods "dup" already exists')


async def test_namespace_does_not_exist(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    body = await _expect(
        kv,
        lambda: client.post("/api/v1/namespaces/ghost/pods", json=pod("p")),
        404,
        "NotFound",
        'namespaces "ghost" not found',
    )
    assert body["details"] == {"name": "ghost", "kind": "namespaces"}


async def test_namespace_mismatch(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    await _expect(
        kv,
        lambda: client.post(PODS, json=pod("p", namespace="kube-system")),
        400,
        "BadRequest",
        "the namespace of the provided object does not match the namespace sent on the request",
    )


async def test_name_mismatch_on_put(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    await client.post(PODS, json=pod("n1"))
    await _expect(
        kv,
        lambda: client.put(f"{PODS}/n1", json=pod("n2")),
        400,
        "BadRequest",
        contains="does not match the name",
    )


async def test_not_found(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    msg = 'pods "x" not found'
    await _expect(kv, lambda: client.get(f"{PODS}/x"), 404, "NotFound", msg)
    await _expect(kv, lambda: client.put(f"{PODS}/x", json=pod("x")), 404, "NotFound", msg)
    await _expect(kv, lambda: client.delete(f"{PODS}/x"), 404, "NotFound", msg)


async def test_unauthorized(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
    ):
        await _expect(
            kv,
            lambda h=headers: client.post(PODS, json=pod("p"), headers=h),
            401,
            "Unauthorized",
            "Unauthorized",
        )
    # Probes and /version stay open.
    for path in ("/healthz", "/readyz", "/livez", "/version"):
        assert (await client.get(path, headers={"Authorization": ""})).status_code == 200


async def test_unsupported_patch_type(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    await client.post(PODS, json=pod("pp"))
    await _expect(
        kv,
        lambda: client.patch(f"{PODS}/pp", content=b"{}", headers={"Content-Type": "text/plain"}),
        415,
        "UnsupportedMediaType",
        contains="application/merge-patch+json",
    )


async def test_bad_patches(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    await client.post(PODS, json=pod("bp"))
    jp = {"Content-Type": "application/json-patch+json"}
    await _expect(kv, lambda: client.patch(f"{PODS}/bp", json={"op": "add"}, headers=jp), 400, "BadRequest")
    test_op = [{"op": "test", "path": "/metadata/name", "value": "other"}]
    await _expect(kv, lambda: client.patch(f"{PODS}/bp", json=test_op, headers=jp), 422, "Invalid")
    drop_image = [{"op": "remove", "path": "/spec/containers/0/image"}]
    await _expect(kv, lambda: client.patch(f"{PODS}/bp", json=drop_image, headers=jp), 422, "Invalid")
    rename = {"metadata": {"name": "zz"}}
    mp = {"Content-Type": "application/merge-patch+json"}
    await _expect(kv, lambda: client.patch(f"{PODS}/bp", json=rename, headers=mp), 400, "BadRequest")


async def test_method_not_allowed_and_bad_params(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    await _expect(kv, lambda: client.post("/api/v1/pods", json=pod()), 405, "MethodNotAllowed")
    await _expect(kv, lambda: client.get(PODS, params={"labelSelector": "a in (b"}), 400, "BadRequest")
    await _expect(kv, lambda: client.get(PODS, params={"watch": "1", "resourceVersion": "abc"}), 400, "BadRequest")
    await _expect(kv, lambda: client.get("/api/v1/nodes/n1/status/extra"), 404, "NotFound")
