"""A tiny in-process stand-in for the API server, behind ``httpx.MockTransport``.

It speaks just enough of the wire protocol (discovery, CRUD, merge patch, Status errors, a
newline-delimited watch) to test the clients' request building and decoding without a server.
The real server is exercised by tests/integration/cli.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

TOKEN = "t0ken"

CORE = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {
            "name": "pods",
            "singularName": "pod",
            "namespaced": True,
            "kind": "Pod",
            "verbs": ["get"],
            "shortNames": ["po"],
        },
        {"name": "pods/status", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
        {"name": "nodes", "singularName": "node", "namespaced": False, "kind": "Node", "shortNames": ["no"]},
        {
            "name": "services",
            "singularName": "service",
            "namespaced": True,
            "kind": "Service",
            "shortNames": ["svc"],
        },
    ],
}
GROUPS = {
    "kind": "APIGroupList",
    "groups": [
        {
            "name": "example.com",
            "versions": [{"groupVersion": "example.com/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "example.com/v1", "version": "v1"},
        }
    ],
}
WIDGETS = {
    "kind": "APIResourceList",
    "groupVersion": "example.com/v1",
    "resources": [
        {
            "name": "widgets",
            "singularName": "widget",
            "namespaced": True,
            "kind": "Widget",
            "shortNames": ["wd"],
        }
    ],
}


def status(code: int, reason: str, message: str, **details: Any) -> httpx.Response:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason}
    body["message"] = message
    if details:
        body["details"] = details
    return httpx.Response(code, json=body)


class FakeApi:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}  # path -> object
        self.requests: list[httpx.Request] = []
        self.rv = 1
        self.watch_lines: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return status(401, "Unauthorized", "Unauthorized")
        path = request.url.path
        docs = {"/api/v1": CORE, "/apis": GROUPS, "/apis/example.com/v1": WIDGETS}
        if path in docs:
            return httpx.Response(200, json=docs[path])
        if path.startswith(("/api/", "/apis/")) and path.count("/") <= 3:
            return status(404, "NotFound", "the server could not find the requested resource")
        if request.url.params.get("watch") == "true":
            body = "".join(json.dumps(line) + "\n" for line in self.watch_lines)
            return httpx.Response(200, content=body.encode())
        return self.crud(request, path)

    def crud(self, request: httpx.Request, path: str) -> httpx.Response:
        name = path.rsplit("/", 1)[1]
        body: Any = json.loads(request.content) if request.content else None
        if request.method == "POST":
            key = f"{path}/{body['metadata']['name']}"
            if key in self.objects:
                return status(409, "AlreadyExists", f'pods "{body["metadata"]["name"]}" already exists')
            if not body.get("spec"):
                return status(422, "Invalid", "Pod is invalid: spec: Required value", causes=[{"field": "spec"}])
            return self.store(key, body, 201)
        if request.method == "GET" and path in self.objects:
            return httpx.Response(200, json=self.objects[path])
        if request.method == "GET" and name in ("pods", "nodes", "services", "widgets"):  # a collection
            items = [o for k, o in self.objects.items() if k.startswith(path + "/")]
            return httpx.Response(
                200, json={"kind": "List", "metadata": {"resourceVersion": str(self.rv)}, "items": items}
            )
        if path not in self.objects:
            return status(404, "NotFound", f'pods "{name}" not found')
        if request.method == "PUT":
            sent = body["metadata"].get("resourceVersion")
            if sent != self.objects[path]["metadata"]["resourceVersion"]:
                return status(409, "Conflict", "the object has been modified")
            return self.store(path, body, 200)
        if request.method == "PATCH":
            merged = {**self.objects[path], **body}
            return self.store(path, merged, 200)
        if request.method == "DELETE":
            self.objects.pop(path)
            return httpx.Response(200, json={"kind": "Status", "status": "Success", "code": 200})
        return status(405, "MethodNotAllowed", "no")

    def store(self, key: str, obj: dict[str, Any], code: int) -> httpx.Response:
        self.rv += 1
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[key] = obj
        return httpx.Response(code, json=obj)


@pytest.fixture
def fake_api() -> FakeApi:
    return FakeApi()
