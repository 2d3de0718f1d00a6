"""Client and AsyncClient against the in-process fake API (see conftest)."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import pytest

from kray.client import (
    AlreadyExists,
    AsyncClient,
    Client,
    Conflict,
    ConnectionFailed,
    Gone,
    Invalid,
    NotFound,
    ResourceRef,
    Unauthorized,
    UnknownResource,
)
from kray.config import KrayConfig
from kray.crds.meta import KrayModel, Resource

TOKEN = "t0ken"  # what the fake API in conftest.py accepts
FakeApi = Any  # conftest.FakeApi; conftest modules are not importable by name


class WidgetSpec(KrayModel):
    size: int = 1


class Widget(Resource):
    GROUP: ClassVar[str] = "example.com"
    VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Widget"
    PLURAL: ClassVar[str] = "widgets"
    spec: WidgetSpec | None = None


def make(fake: FakeApi, token: str = TOKEN) -> Client:
    return Client(KrayConfig("http://kray.test", token), transport=httpx.MockTransport(fake))


def widget(name: str, size: int = 1) -> Widget:
    return Widget.model_validate({"metadata": {"name": name}, "spec": {"size": size}})


def test_typed_crud_roundtrip(fake_api: FakeApi) -> None:
    with make(fake_api) as c:
        created = c.create(widget("a", 2))
        assert isinstance(created, Widget) and created.metadata.resource_version
        assert fake_api.requests[-1].url.path == "/apis/example.com/v1/namespaces/default/widgets"
        got = c.get(Widget, "a")
        assert got.spec is not None and got.spec.size == 2
        got.spec.size = 3
        updated = c.update(got)
        assert updated.spec is not None and updated.spec.size == 3
        with pytest.raises(Conflict):
            c.update(got)  # stale resourceVersion
        listed = c.list(Widget)
        assert [w.name for w in listed.items] == ["a"] and listed.resource_version
        patched = c.patch(Widget, "a", {"spec": {"size": 9}})
        assert patched.spec is not None and patched.spec.size == 9
        assert fake_api.requests[-1].headers["content-type"] == "application/merge-patch+json"
        assert c.delete(Widget, "a") is None
        with pytest.raises(NotFound) as err:
            c.get(Widget, "a")
        assert err.value.status == 404 and err.value.reason == "NotFound"


def test_errors_are_typed_from_status_bodies(fake_api: FakeApi) -> None:
    with make(fake_api) as c:
        c.create(widget("a"))
        with pytest.raises(AlreadyExists):
            c.create(widget("a"))
        with pytest.raises(Invalid) as err:
            c.create_raw({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "b"}})
        assert err.value.causes == [{"field": "spec"}]
    with make(fake_api, token="wrong") as c, pytest.raises(Unauthorized):
        c.get(Widget, "a")


def test_connection_failure_names_the_server() -> None:
    with Client(server="http://127.0.0.1:1", token="x") as c, pytest.raises(ConnectionFailed) as err:
        c.list_raw(ResourceRef("", "v1", "pods", True))
    assert "cannot reach the kray API server at http://127.0.0.1:1" in str(err.value)


def test_discovery_resolves_names_and_caches(fake_api: FakeApi) -> None:
    with make(fake_api) as c:
        assert c.resolve("po").plural == "pods"
        assert c.resolve("pods").namespaced
        assert not c.resolve("no").namespaced
        assert len(fake_api.requests) == 1  # core names need only /api/v1, then the cache
        ref = c.resolve("wd")
        assert (ref.group, ref.version, ref.plural, ref.kind) == ("example.com", "v1", "widgets", "Widget")
        assert c.resolve("widgets.example.com") == ref
        assert c.resource_for("example.com/v1", "Widget") == ref
        with pytest.raises(UnknownResource, match='the server doesn\'t have a resource type "foo"'):
            c.resolve("foo")
        with pytest.raises(UnknownResource, match='no matches for kind "Gadget"'):
            c.resource_for("example.com/v1", "Gadget")
        assert "pods/status" not in {r.plural for r in c.api_resources()}


def test_raw_apply_created_configured_unchanged(fake_api: FakeApi) -> None:
    manifest: dict[str, Any] = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "labels": {"a": "1"}},
        "spec": {"size": 1},
    }
    with make(fake_api) as c:
        assert c.apply_raw(manifest).action == "created"
        assert c.apply_raw(manifest).action == "unchanged"
        changed = {**manifest, "spec": {"size": 5}}
        result = c.apply_raw(changed)
        assert result.action == "configured" and result.object["spec"] == {"size": 5}
        assert result.object["metadata"]["labels"] == {"a": "1"}


def test_watch_yields_events_and_raises_gone(fake_api: FakeApi) -> None:
    fake_api.watch_lines = [
        {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "5"}, "spec": {"size": 1}}},
        {"type": "BOOKMARK", "object": {"kind": "Widget", "metadata": {"resourceVersion": "6"}}},
    ]
    with make(fake_api) as c:
        events = list(c.watch(Widget, resource_version="4", allow_bookmarks=True))
        assert [e.type for e in events] == ["ADDED", "BOOKMARK"]
        assert isinstance(events[0].object, Widget) and events[1].resource_version == "6"
        params = fake_api.requests[-1].url.params
        assert params["watch"] == "true" and params["resourceVersion"] == "4"
        fake_api.watch_lines = [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}]
        with pytest.raises(Gone):
            list(c.watch_raw(Widget))


async def test_async_client_mirrors_sync(fake_api: FakeApi) -> None:
    transport = httpx.MockTransport(fake_api)
    async with AsyncClient(KrayConfig("http://kray.test", TOKEN), transport=transport) as c:
        created = await c.create(widget("x", 4))
        assert created.spec is not None and created.spec.size == 4
        assert (await c.resolve("wd")).plural == "widgets"
        assert [w.name for w in (await c.list(Widget)).items] == ["x"]
        assert (await c.apply_raw({**created.to_dict(), "spec": {"size": 4}})).action == "unchanged"
        with pytest.raises(NotFound):
            await c.get(Widget, "nope")
        fake_api.watch_lines = [{"type": "DELETED", "object": {"metadata": {"name": "x"}}}]
        events = [e async for e in c.watch(Widget)]
        assert events[0].type == "DELETED" and events[0].object.name == "x"
