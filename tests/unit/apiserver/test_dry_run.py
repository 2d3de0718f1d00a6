"""``?dryRun=All`` on every write verb: the answer of the real request, and a store left as it was.

Each test snapshots the whole MemoryKV (keys, values, mod revisions and the revision counter)
before the dry run and compares after it, so any write at all, even one that leaves the object
readable as before, fails the test.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.datastructures import QueryParams

from kray.actors.apiserver import dryrun, errors
from kray.actors.store import MemoryKV

from .conftest import pod, snapshot

PODS = "/api/v1/namespaces/default/pods"
CMS = "/api/v1/namespaces/default/configmaps"
DRY = {"dryRun": "All"}
MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


async def test_parse_query_and_options() -> None:
    assert dryrun.from_query(QueryParams("")) is False
    assert dryrun.from_query(QueryParams("dryRun=All&dryRun=All")) is True
    assert dryrun.from_options({}) is False and dryrun.from_options({"dryRun": []}) is False
    assert dryrun.from_options({"dryRun": ["All"]}) is True
    for bad in (QueryParams("dryRun=Bogus"), QueryParams("dryRun=All&dryRun=all"), QueryParams("dryRun=")):
        with pytest.raises(errors.ApiError) as exc:
            dryrun.from_query(bad)
        assert exc.value.code == 400 and exc.value.message.startswith("dryRun: Unsupported value")
    with pytest.raises(errors.ApiError) as exc:
        dryrun.from_options({"dryRun": "All"})  # DeleteOptions.dryRun is a list
    assert exc.value.code == 400


async def test_create_answers_the_object_and_stores_nothing(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    before = await snapshot(kv)
    data = pod("")
    data["metadata"] = {"generateName": "web-"}
    r = await client.post(PODS, json=data, params=DRY)
    assert r.status_code == 201, r.text
    meta = r.json()["metadata"]
    assert meta["name"].startswith("web-") and len(meta["name"]) == 9
    assert len(meta["uid"]) == 36 and meta["creationTimestamp"] == "2024-01-01T00:00:00Z"
    assert meta["namespace"] == "default" and meta["generation"] == 1
    assert "resourceVersion" not in meta  # as Kubernetes: a dry-run create has none
    assert r.json()["status"] == {"phase": "Pending"}
    assert await snapshot(kv) == before
    assert (await client.get(f"{PODS}/{meta['name']}")).status_code == 404


async def test_create_of_a_taken_name_is_still_a_conflict(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    assert (await client.post(CMS, json=configmap("taken", a="1"))).status_code == 201
    before = await snapshot(kv)
    r = await client.post(CMS, json=configmap("taken", a="2"), params=DRY)
    assert (r.status_code, r.json()["reason"]) == (409, "AlreadyExists")
    assert await snapshot(kv) == before


async def test_errors_of_the_real_request_are_returned(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    before = await snapshot(kv)
    r = await client.post("/api/v1/namespaces/nowhere/configmaps", json=configmap("c"), params=DRY)
    assert (r.status_code, r.json()["reason"]) == (404, "NotFound")
    assert r.json()["message"] == 'namespaces "nowhere" not found'
    r = await client.post(PODS, json=pod("noimage", image=None), params=DRY)
    assert (r.status_code, r.json()["reason"]) == (422, "Invalid")
    r = await client.post(CMS, json=configmap("Not_A_Name"), params=DRY)
    assert r.status_code == 422
    assert await snapshot(kv) == before


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_unsupported_values_are_bad_requests(client: httpx.AsyncClient, kv: MemoryKV, method: str) -> None:
    assert (await client.post(CMS, json=configmap("c", a="1"))).status_code == 201
    before = await snapshot(kv)
    path = CMS if method == "POST" else f"{CMS}/c"
    body = {"PATCH": {"data": {"a": "2"}}, "DELETE": None}.get(method, configmap("c", a="2"))
    for query in ("dryRun=Bogus", "dryRun=All&dryRun=Bogus", "dryRun=all"):
        r = await client.request(method, f"{path}?{query}", json=body, headers=MERGE if method == "PATCH" else None)
        assert (r.status_code, r.json()["kind"], r.json()["reason"]) == (400, "Status", "BadRequest"), r.text
        assert r.json()["message"].startswith("dryRun: Unsupported value: ")
        assert r.json()["message"].endswith('supported values: "All"')
    assert await snapshot(kv) == before
    assert (await client.get(f"{CMS}/c")).json()["data"] == {"a": "1"}


async def test_repeated_all_is_a_dry_run(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    before = await snapshot(kv)
    r = await client.post(f"{CMS}?dryRun=All&dryRun=All", json=configmap("twice"))
    assert r.status_code == 201
    assert await snapshot(kv) == before


async def test_update_answers_the_merge_at_the_current_resource_version(
    client: httpx.AsyncClient, kv: MemoryKV
) -> None:
    created = (await client.post(CMS, json=configmap("c", a="1"))).json()
    rv = created["metadata"]["resourceVersion"]
    before = await snapshot(kv)
    new = {**created, "data": {"a": "2"}}
    r = await client.put(f"{CMS}/c", json=new, params=DRY)
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"a": "2"} and r.json()["metadata"]["resourceVersion"] == rv
    assert r.json()["metadata"]["uid"] == created["metadata"]["uid"]
    assert await snapshot(kv) == before
    got = (await client.get(f"{CMS}/c")).json()
    assert got["data"] == {"a": "1"} and got["metadata"]["resourceVersion"] == rv
    stale = {**new, "metadata": {**created["metadata"], "resourceVersion": str(int(rv) - 1)}}
    r = await client.put(f"{CMS}/c", json=stale, params=DRY)
    assert (r.status_code, r.json()["reason"]) == (409, "Conflict")
    invalid = {**created, "data": {"a": 1}}
    r = await client.put(f"{CMS}/c", json=invalid, params=DRY)
    assert r.status_code == 422
    assert await snapshot(kv) == before


@pytest.mark.parametrize(
    ("headers", "patch"),
    [
        (MERGE, {"metadata": {"labels": {"tier": "front"}}, "spec": {"activeDeadlineSeconds": 60}}),
        (
            JSON_PATCH,
            [
                {"op": "add", "path": "/metadata/labels", "value": {"tier": "front"}},
                {"op": "add", "path": "/spec/activeDeadlineSeconds", "value": 60},
            ],
        ),
        (STRATEGIC, {"metadata": {"labels": {"tier": "front"}}, "spec": {"activeDeadlineSeconds": 60}}),
    ],
    ids=["merge", "json", "strategic"],
)
async def test_patch_answers_the_patched_object(
    client: httpx.AsyncClient, kv: MemoryKV, headers: dict[str, str], patch: Any
) -> None:
    created = (await client.post(PODS, json=pod("web"))).json()
    rv = created["metadata"]["resourceVersion"]
    before = await snapshot(kv)
    r = await client.patch(f"{PODS}/web", json=patch, headers=headers, params=DRY)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metadata"]["labels"] == {"tier": "front"} and body["spec"]["activeDeadlineSeconds"] == 60
    assert body["metadata"]["generation"] == 2  # the spec changed: what a real patch would store
    assert body["metadata"]["resourceVersion"] == rv
    assert await snapshot(kv) == before
    got = (await client.get(f"{PODS}/web")).json()
    assert got == created


async def test_status_subresource_patch(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    created = (await client.post(PODS, json=pod("web"))).json()
    before = await snapshot(kv)
    r = await client.patch(f"{PODS}/web/status", json={"status": {"phase": "Running"}}, headers=MERGE, params=DRY)
    assert r.status_code == 200 and r.json()["status"]["phase"] == "Running"
    assert await snapshot(kv) == before
    assert (await client.get(f"{PODS}/web")).json() == created


async def test_delete_answers_the_object_and_leaves_it(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    created = (await client.post(CMS, json=configmap("c", a="1"))).json()
    before = await snapshot(kv)
    r = await client.delete(f"{CMS}/c", params=DRY)
    assert r.status_code == 200 and r.json() == created
    # kubectl delete --dry-run=server sends it in the DeleteOptions body.
    r = await client.request("DELETE", f"{CMS}/c", json={"kind": "DeleteOptions", "dryRun": ["All"]})
    assert r.status_code == 200 and r.json() == created
    r = await client.request("DELETE", f"{CMS}/c", json={"dryRun": ["Bogus"]})
    assert r.status_code == 400 and "dryRun" in r.json()["message"]
    r = await client.request("DELETE", f"{CMS}/c", json={"preconditions": {"uid": "other"}}, params=DRY)
    assert (r.status_code, r.json()["reason"]) == (409, "Conflict")
    assert await snapshot(kv) == before
    assert (await client.get(f"{CMS}/c")).json() == created


async def test_graceful_pod_delete_is_not_marked(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    data = pod("running")
    data["spec"]["nodeName"] = "n1"  # a kubelet may run it: deletion is graceful
    created = (await client.post(PODS, json=data)).json()
    before = await snapshot(kv)
    r = await client.delete(f"{PODS}/running", params=DRY)
    assert r.status_code == 200, r.text
    meta = r.json()["metadata"]
    assert meta["deletionTimestamp"] == "2024-01-01T00:00:30Z" and meta["deletionGracePeriodSeconds"] == 30
    assert meta["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert await snapshot(kv) == before
    got = (await client.get(f"{PODS}/running")).json()
    assert "deletionTimestamp" not in got["metadata"] and got == created


async def test_finalizer_removal_on_a_deleting_object_deletes_nothing(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    body = configmap("held")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    assert (await client.post(CMS, json=body)).status_code == 201
    marked = (await client.delete(f"{CMS}/held")).json()
    assert marked["metadata"]["deletionTimestamp"]
    before = await snapshot(kv)
    r = await client.patch(f"{CMS}/held", json={"metadata": {"finalizers": None}}, headers=MERGE, params=DRY)
    assert r.status_code == 200, r.text
    assert await snapshot(kv) == before
    assert (await client.get(f"{CMS}/held")).json() == marked


async def test_delete_collection(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    for name in ("a", "b"):
        assert (await client.post(CMS, json=configmap(name))).status_code == 201
    before = await snapshot(kv)
    r = await client.delete(CMS, params=DRY)
    assert r.status_code == 200
    assert sorted(i["metadata"]["name"] for i in r.json()["items"]) == ["a", "b"]
    assert await snapshot(kv) == before
