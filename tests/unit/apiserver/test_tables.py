"""Server-side printing: a CRD's additionalPrinterColumns come back as a meta.k8s.io/v1 Table."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from kray.actors.apiserver.tables import wants_table
from kray.crds.jsonpath import JsonPathError, compile_path, evaluate

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
OBJ: dict[str, Any] = {
    "metadata": {"name": "a", "creationTimestamp": "2024-01-01T00:00:00Z"},
    "spec": {"replicas": 3, "ports": [{"port": 80}, {"port": 443}]},
    "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Failed", "status": "False"}]},
}


@pytest.mark.parametrize(
    ("path", "want"),
    [
        (".spec.replicas", [3]),
        ("{.spec.replicas}", [3]),
        ("$.spec.replicas", [3]),
        (".spec.ports[1].port", [443]),
        (".spec.ports[-1].port", [443]),
        (".spec.ports[*].port", [80, 443]),
        ('.status.conditions[?(@.type=="Ready")].status', ["True"]),
        (".status.conditions[?(@.type!='Ready')].type", ["Failed"]),
        (".spec.missing", []),
        (".spec.ports[7].port", []),
    ],
)
def test_jsonpath_subset(path: str, want: list[Any]) -> None:
    assert evaluate(path, OBJ) == want


@pytest.mark.parametrize("path", ["spec.replicas", ".spec[", ".spec.ports[?(@.port>1)]", ".a..b"])
def test_jsonpath_rejects_what_it_cannot_read(path: str) -> None:
    with pytest.raises(JsonPathError, match="unsupported jsonPath"):
        compile_path(path)


@pytest.mark.parametrize(
    ("accept", "want"),
    [
        (TABLE, True),
        (f"{TABLE}, application/json", True),
        ("application/json;as=Table;g=meta.k8s.io;v=v1beta1", True),
        ("application/json", False),
        ("application/json;as=Table;v=v1;g=example.com", False),
        ("", False),
    ],
)
def test_wants_table(accept: str, want: bool) -> None:
    assert wants_table(accept) is want


def crd(columns: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "boards.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "boards", "kind": "Board"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


COLUMNS = [
    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Logdir", "type": "string", "jsonPath": ".spec.logdir", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


async def test_crd_printer_columns_print_as_a_table(client: httpx.AsyncClient) -> None:
    r = await client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd(COLUMNS))
    assert r.status_code == 201, r.text
    base = "/apis/example.com/v1/namespaces/default/boards"
    for name, replicas in (("b1", 2), ("b2", 5)):
        body = {"apiVersion": "example.com/v1", "kind": "Board", "metadata": {"name": name}}
        body["spec"] = {"replicas": replicas, "logdir": f"/logs/{name}"}
        assert (await client.post(base, json=body)).status_code == 201

    listed = (await client.get(base, headers={"Accept": TABLE})).json()
    assert listed["kind"] == "Table" and listed["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in listed["columnDefinitions"]] == ["Name", "Replicas", "Ready", "Logdir", "Age"]
    assert [c["priority"] for c in listed["columnDefinitions"]][3] == 1
    assert [row["cells"][:4] for row in listed["rows"]] == [["b1", 2, None, "/logs/b1"], ["b2", 5, None, "/logs/b2"]]
    assert listed["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert listed["metadata"]["resourceVersion"]

    one = (await client.get(f"{base}/b2", headers={"Accept": f"{TABLE}, application/json"})).json()
    assert [row["cells"][0] for row in one["rows"]] == ["b2"]
    plain = (await client.get(f"{base}/b2")).json()
    assert plain["kind"] == "Board"  # without the Accept header: the object itself


async def test_builtin_kind_without_columns_gets_name_and_age(client: httpx.AsyncClient) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}
    assert (await client.post("/api/v1/namespaces/default/configmaps", json=cm)).status_code == 201
    table = (await client.get("/api/v1/namespaces/default/configmaps", headers={"Accept": TABLE})).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]
    assert table["rows"][0]["cells"][0] == "c"


@pytest.mark.parametrize(
    ("column", "field", "reason"),
    [
        ({"name": "X", "type": "string", "jsonPath": "spec.x"}, "jsonPath", "FieldValueInvalid"),
        ({"name": "X", "type": "float", "jsonPath": ".spec.x"}, "type", "FieldValueNotSupported"),
    ],
)
async def test_a_bad_printer_column_is_refused_naming_it(
    client: httpx.AsyncClient, column: dict[str, Any], field: str, reason: str
) -> None:
    r = await client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd([column]))
    assert r.status_code == 422, r.text
    causes = r.json()["details"]["causes"]
    assert any(c["field"].endswith(f"additionalPrinterColumns[0].{field}") and c["reason"] == reason for c in causes)
    assert (
        await client.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/boards.example.com")
    ).status_code == 404


async def test_the_async_client_asks_for_tables(api: Any) -> None:
    from kray.client import AsyncClient
    from kray.config import KrayConfig
    from kray.crds.core import ConfigMap

    from .conftest import TOKEN

    async with AsyncClient(KrayConfig("http://kray.test", TOKEN), transport=httpx.ASGITransport(app=api.app)) as c:
        await c.create_raw({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "t1"}})
        listed = await c.table(ConfigMap)
        one = await c.table(ConfigMap, name="t1")
    assert [row["cells"][0] for row in listed["rows"]] == ["t1"] == [row["cells"][0] for row in one["rows"]]


async def test_a_builtin_kind_declares_its_columns(client: httpx.AsyncClient) -> None:
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l1"}}
    lease["spec"] = {"holderIdentity": "node-a"}
    base = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
    assert (await client.post(base, json=lease)).status_code == 201
    table = (await client.get(base, headers={"Accept": TABLE})).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Holder", "Age"]
    assert table["rows"][0]["cells"][:2] == ["l1", "node-a"]


async def test_node_devices_print_their_gpus(client: httpx.AsyncClient) -> None:
    devices = [
        {"name": f"GPU-{i}", "index": i, "model": "NVIDIA H200", "health": "Unhealthy" if i == 2 else "Healthy"}
        for i in range(4)
    ]
    nd = {"apiVersion": "kray.io/v1", "kind": "NodeDevices", "metadata": {"name": "n1"}}
    nd["spec"] = {"nodeName": "n1", "devices": devices}
    assert (await client.post("/apis/kray.io/v1/nodedevices", json=nd)).status_code == 201
    table = (await client.get("/apis/kray.io/v1/nodedevices", headers={"Accept": TABLE})).json()
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names[:5] == ["Name", "Driver", "Devices", "Unhealthy", "Model"]
    assert table["rows"][0]["cells"][:5] == ["n1", "nvidia.com/gpu", "0,1,2,3", "2", "NVIDIA H200"]
