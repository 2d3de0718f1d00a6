"""Every verb through the HTTP surface, with Kubernetes' semantics."""

from __future__ import annotations

import httpx

from kray.actors.apiserver import ApiServer
from kray.actors.apiserver.admission import AdmissionRequest
from kray.actors.store import MemoryKV, ObjectStore

from .conftest import NOW, TOKEN, fresh_registry, pod

PODS = "/api/v1/namespaces/default/pods"
MERGE = {"Content-Type": "application/merge-patch+json"}


async def test_create_defaults_and_get(client: httpx.AsyncClient) -> None:
    r = await client.post(PODS, json=pod("web"))
    assert r.status_code == 201, r.text
    body = r.json()
    meta = body["metadata"]
    assert meta["namespace"] == "default"
    assert meta["generation"] == 1
    assert meta["creationTimestamp"] == "2024-01-01T00:00:00Z"
    assert len(meta["uid"]) == 36
    assert int(meta["resourceVersion"]) > 0
    assert body["status"] == {"phase": "Pending"}
    got = await client.get(f"{PODS}/web")
    assert got.status_code == 200
    assert got.json() == body


async def test_create_without_type_meta_is_defaulted(client: httpx.AsyncClient) -> None:
    data = pod("bare")
    del data["apiVersion"], data["kind"]
    r = await client.post(PODS, json=data)
    assert r.status_code == 201
    assert (r.json()["apiVersion"], r.json()["kind"]) == ("v1", "Pod")


async def test_generate_name(client: httpx.AsyncClient) -> None:
    data = pod("")
    data["metadata"] = {"generateName": "job-"}
    r = await client.post(PODS, json=data)
    assert r.status_code == 201
    name = r.json()["metadata"]["name"]
    assert name.startswith("job-") and len(name) == 9


async def test_create_yaml_body(client: httpx.AsyncClient) -> None:
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: b\n"
    r = await client.post(
        "/api/v1/namespaces/default/configmaps", content=body, headers={"Content-Type": "application/yaml"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["data"] == {"a": "b"}


async def test_list_with_selectors_and_all_namespaces(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/namespaces", json={"metadata": {"name": "other"}})
    await client.post(PODS, json=pod("a", labels={"app": "web"}))
    await client.post(PODS, json=pod("b", labels={"app": "db"}))
    await client.post("/api/v1/namespaces/other/pods", json=pod("c", labels={"app": "web"}))
    r = await client.get(PODS, params={"labelSelector": "app=web"})
    assert r.status_code == 200
    body = r.json()
    assert body["kind"] == "PodList" and body["apiVersion"] == "v1"
    assert [i["metadata"]["name"] for i in body["items"]] == ["a"]
    assert int(body["metadata"]["resourceVersion"]) >= int(body["items"][0]["metadata"]["resourceVersion"])
    everywhere = (await client.get("/api/v1/pods", params={"labelSelector": "app in (web)"})).json()
    assert sorted(i["metadata"]["name"] for i in everywhere["items"]) == ["a", "c"]
    by_field = (await client.get("/api/v1/pods", params={"fieldSelector": "metadata.namespace=other"})).json()
    assert [i["metadata"]["name"] for i in by_field["items"]] == ["c"]
    phase = (await client.get(PODS, params={"fieldSelector": "status.phase=Pending,metadata.name!=a"})).json()
    assert [i["metadata"]["name"] for i in phase["items"]] == ["b"]


async def test_put_updates_with_optimistic_concurrency(client: httpx.AsyncClient) -> None:
    created = (await client.post(PODS, json=pod("u"))).json()
    created["metadata"]["labels"] = {"x": "1"}
    r = await client.put(f"{PODS}/u", json=created)
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["metadata"]["labels"] == {"x": "1"}
    assert updated["metadata"]["generation"] == 1  # metadata-only change
    assert updated["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]


async def test_put_without_resource_version_is_unconditional(client: httpx.AsyncClient) -> None:
    created = (await client.post(PODS, json=pod("uc"))).json()
    del created["metadata"]["resourceVersion"]
    created["spec"]["activeDeadlineSeconds"] = 10
    r = await client.put(f"{PODS}/uc", json=created)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["generation"] == 2


async def test_generation_and_status_subresource(client: httpx.AsyncClient) -> None:
    created = (await client.post(PODS, json=pod("g"))).json()
    # The main resource ignores status changes...
    created["status"] = {"phase": "Running"}
    r = await client.put(f"{PODS}/g", json=created)
    assert r.json()["status"]["phase"] == "Pending"
    # ...and /status changes only status.
    st = r.json()
    st["status"] = {"phase": "Running"}
    st["spec"]["activeDeadlineSeconds"] = 5
    st["metadata"]["labels"] = {"ignored": "yes"}
    r = await client.put(f"{PODS}/g/status", json=st)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"]["phase"] == "Running"
    assert "activeDeadlineSeconds" not in body["spec"]
    assert "labels" not in body["metadata"]
    assert body["metadata"]["generation"] == 1
    r = await client.patch(f"{PODS}/g/status", json={"status": {"phase": "Succeeded"}}, headers=MERGE)
    assert r.json()["status"]["phase"] == "Succeeded"
    r = await client.patch(f"{PODS}/g", json={"spec": {"activeDeadlineSeconds": 7}}, headers=MERGE)
    assert r.json()["metadata"]["generation"] == 2
    assert r.json()["status"]["phase"] == "Succeeded"
    got = (await client.get(f"{PODS}/g/status")).json()
    assert got["spec"]["activeDeadlineSeconds"] == 7


async def test_noop_update_writes_nothing(client: httpx.AsyncClient) -> None:
    created = (await client.post(PODS, json=pod("same"))).json()
    r = await client.put(f"{PODS}/same", json=created)
    assert r.json()["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_patch_types(client: httpx.AsyncClient) -> None:
    await client.post(PODS, json=pod("pt"))
    r = await client.patch(
        f"{PODS}/pt",
        json=[{"op": "add", "path": "/metadata/labels", "value": {"a": "1"}}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["labels"] == {"a": "1"}
    smp = {"spec": {"containers": [{"name": "c", "image": "nginx"}, {"name": "side", "image": "envoy"}]}}
    r = await client.patch(f"{PODS}/pt", json=smp, headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert r.status_code == 200, r.text
    containers = r.json()["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("c", "nginx"), ("side", "envoy")]
    assert containers[0]["imagePullPolicy"]  # merged into the existing element, not replaced


async def test_delete_returns_object_and_removes_it(client: httpx.AsyncClient) -> None:
    await client.post(PODS, json=pod("d"))
    r = await client.delete(f"{PODS}/d")
    assert r.status_code == 200
    assert r.json()["metadata"]["name"] == "d"
    assert (await client.get(f"{PODS}/d")).status_code == 404


async def test_finalizers_block_deletion_until_removed(client: httpx.AsyncClient) -> None:
    await client.post(PODS, json=pod("f", finalizers=["kray.io/keep"]))
    r = await client.delete(f"{PODS}/f")
    assert r.status_code == 200
    marked = r.json()
    assert marked["metadata"]["deletionTimestamp"] == "2024-01-01T00:00:00Z"
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 0
    assert (await client.get(f"{PODS}/f")).status_code == 200
    # Adding a finalizer while deleting is refused.
    r = await client.patch(f"{PODS}/f", json={"metadata": {"finalizers": ["kray.io/keep", "x/y"]}}, headers=MERGE)
    assert r.status_code == 422
    r = await client.patch(f"{PODS}/f", json={"metadata": {"finalizers": None}}, headers=MERGE)
    assert r.status_code == 200
    assert (await client.get(f"{PODS}/f")).status_code == 404


async def test_graceful_pod_deletion(client: httpx.AsyncClient) -> None:
    data = pod("gr")
    data["spec"]["nodeName"] = "node-1"
    await client.post(PODS, json=data)
    r = await client.delete(f"{PODS}/gr")
    assert r.status_code == 200
    assert r.json()["metadata"]["deletionGracePeriodSeconds"] == 30
    assert (await client.get(f"{PODS}/gr")).status_code == 200
    # A status update by the kubelet does not delete it; its final DELETE with grace 0 does.
    r = await client.patch(f"{PODS}/gr/status", json={"status": {"phase": "Succeeded"}}, headers=MERGE)
    assert r.status_code == 200
    r = await client.request("DELETE", f"{PODS}/gr", json={"gracePeriodSeconds": 0})
    assert r.status_code == 200
    assert (await client.get(f"{PODS}/gr")).status_code == 404


async def test_delete_preconditions(client: httpx.AsyncClient) -> None:
    created = (await client.post(PODS, json=pod("pre"))).json()
    r = await client.request("DELETE", f"{PODS}/pre", json={"preconditions": {"uid": "nope"}})
    assert r.status_code == 409
    assert r.json()["reason"] == "Conflict"
    assert "Precondition failed: UID in precondition: nope" in r.json()["message"]
    r = await client.request("DELETE", f"{PODS}/pre", json={"preconditions": {"uid": created["metadata"]["uid"]}})
    assert r.status_code == 200


async def test_delete_collection(client: httpx.AsyncClient) -> None:
    for n, app in (("x1", "a"), ("x2", "a"), ("x3", "b")):
        await client.post(PODS, json=pod(n, labels={"app": app}))
    r = await client.delete(PODS, params={"labelSelector": "app=a"})
    assert r.status_code == 200
    assert sorted(i["metadata"]["name"] for i in r.json()["items"]) == ["x1", "x2"]
    left = (await client.get(PODS)).json()["items"]
    assert [i["metadata"]["name"] for i in left] == ["x3"]


async def test_cluster_scoped_and_namespace_lifecycle(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/namespaces", json={"metadata": {"name": "team"}})
    assert r.status_code == 201
    assert r.json()["status"]["phase"] == "Active"
    node = {"metadata": {"name": "n1", "labels": {"gpu": "true"}}}
    assert (await client.post("/api/v1/nodes", json=node)).status_code == 201
    assert (await client.get("/api/v1/nodes/n1")).status_code == 200
    assert (await client.delete("/api/v1/namespaces/team")).status_code == 200
    assert (await client.get("/api/v1/namespaces/team")).status_code == 404
    # With finalizers the namespace becomes Terminating and refuses new content.
    await client.post("/api/v1/namespaces", json={"metadata": {"name": "slow"}, "spec": {"finalizers": ["kubernetes"]}})
    r = await client.delete("/api/v1/namespaces/slow")
    assert r.json()["status"]["phase"] == "Terminating"
    r = await client.post("/api/v1/namespaces/slow/pods", json=pod("late"))
    assert r.status_code == 403
    assert r.json()["reason"] == "Forbidden"
    assert "because it is being terminated" in r.json()["message"]
    r = await client.put("/api/v1/namespaces/slow/finalize", json={"metadata": {"name": "slow"}, "spec": {}})
    assert r.status_code == 200
    assert (await client.get("/api/v1/namespaces/slow")).status_code == 404
    r = await client.delete("/api/v1/namespaces/default")
    assert r.status_code == 403


async def test_admission_hook_can_mutate_and_deny(api: ApiServer, client: httpx.AsyncClient) -> None:
    from kray.actors.apiserver import AdmissionDenied

    class Hook:
        async def admit(self, request: AdmissionRequest) -> None:
            if request.operation == "CREATE" and request.object is not None:
                if request.name == "forbidden":
                    raise AdmissionDenied("pods named forbidden are not allowed")
                request.object.metadata.labels = {"admitted": "yes"}

    api.handlers.admission.append(Hook())
    r = await client.post(PODS, json=pod("ok"))
    assert r.json()["metadata"]["labels"] == {"admitted": "yes"}
    r = await client.post(PODS, json=pod("forbidden"))
    assert r.status_code == 403
    assert r.json()["message"] == "pods named forbidden are not allowed"
    assert (await client.get(f"{PODS}/forbidden")).status_code == 404


async def test_custom_resource_definition_makes_kind_servable(client: httpx.AsyncClient) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "trainjobs.kray.io"},
        "spec": {
            "group": "kray.io",
            "scope": "Namespaced",
            "names": {
                "plural": "trainjobs",
                "singular": "trainjob",
                "kind": "TrainJob",
                "shortNames": ["tj"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": {"type": "object", "properties": {"gpus": {"type": "integer"}}}},
                        }
                    },
                }
            ],
        },
    }
    r = await client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    assert r.status_code == 201, r.text
    conditions = {c["type"]: c["status"] for c in r.json()["status"]["conditions"]}
    assert conditions["Established"] == "True"
    groups = (await client.get("/apis")).json()
    assert "kray.io" in [g["name"] for g in groups["groups"]]
    resources = (await client.get("/apis/kray.io/v1")).json()["resources"]
    assert {"trainjobs", "trainjobs/status"} <= {r["name"] for r in resources}
    tj = {"apiVersion": "kray.io/v1", "kind": "TrainJob", "metadata": {"name": "t"}, "spec": {"gpus": 8}}
    path = "/apis/kray.io/v1/namespaces/default/trainjobs"
    r = await client.post(path, json=tj)
    assert r.status_code == 201, r.text
    bad = {**tj, "metadata": {"name": "t2"}, "spec": {"gpus": "many"}}
    r = await client.post(path, json=bad)
    assert r.status_code == 422
    r = await client.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/trainjobs.kray.io")
    assert r.status_code == 200
    assert (await client.get(path)).status_code == 404


async def test_crds_are_reregistered_on_start(api: ApiServer, client: httpx.AsyncClient) -> None:
    from kray.actors.store import ObjectStore

    from .conftest import fresh_registry

    crd = {
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1alpha1", "served": True, "storage": True}],
        },
    }
    assert (await client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)).status_code == 201
    registry = fresh_registry()
    restarted = ApiServer(ObjectStore(api.store.kv, registry), registry)
    await restarted.start()
    assert registry.by_resource("example.com", "v1alpha1", "widgets").kind == "Widget"


class _RacingWriter:
    """An admission hook that, on the first UPDATE it sees, changes the same object through the
    store first: the handler's compare-and-swap then loses a real race."""

    def __init__(self, store: ObjectStore) -> None:
        self.store, self.raced = store, False

    async def admit(self, request: AdmissionRequest) -> None:
        if request.operation != "UPDATE" or self.raced or request.old_object is None:
            return
        self.raced = True
        rival = request.old_object.model_copy(deep=True)
        rival.metadata.labels = {**(rival.metadata.labels or {}), "rival": "yes"}
        await self.store.update(request.kind, rival)


async def test_patch_without_resource_version_retries_a_lost_race(kv: MemoryKV) -> None:
    registry = fresh_registry()
    store = ObjectStore(kv, registry)
    racer = _RacingWriter(store)
    server = ApiServer(store, registry, token=TOKEN, clock=lambda: NOW, admission=[racer])
    await server.start()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=server.app), base_url="http://kray.test", headers=headers
    ) as c:
        assert (await c.post(PODS, json=pod("racy"))).status_code == 201
        r = await c.patch(f"{PODS}/racy", json={"metadata": {"labels": {"mine": "yes"}}}, headers=MERGE)
        assert racer.raced and r.status_code == 200, r.text
        assert r.json()["metadata"]["labels"] == {"rival": "yes", "mine": "yes"}
        # A resourceVersion in the patch is still a precondition.
        stale = {"metadata": {"resourceVersion": "1", "labels": {"late": "x"}}}
        assert (await c.patch(f"{PODS}/racy", json=stale, headers=MERGE)).status_code == 409
