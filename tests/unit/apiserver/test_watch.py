"""WATCH over HTTP: initial events, live events, selectors, compaction, bookmarks, disconnects."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from kray.actors.apiserver import ApiServer, ServerThread
from kray.actors.store import MemoryKV, ObjectStore

from .conftest import TOKEN, fresh_registry, pod

PODS = "/api/v1/namespaces/default/pods"
MERGE = {"Content-Type": "application/merge-patch+json"}


def _events(r: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    assert r.status_code == 200, r.text
    lines = [json.loads(line) for line in r.text.splitlines() if line]
    return [(e["type"], e["object"]) for e in lines]


async def _watch_while(client: httpx.AsyncClient, params: dict[str, str], action: Any) -> list[tuple[str, Any]]:
    """Run a 1-second watch (ASGITransport buffers the body) while ``action`` writes."""
    task = asyncio.ensure_future(client.get(PODS, params={"watch": "true", "timeoutSeconds": "1", **params}))
    await asyncio.sleep(0.05)
    await action()
    return _events(await task)


async def test_watch_initial_then_live_events(client: httpx.AsyncClient) -> None:
    await client.post(PODS, json=pod("old"))

    async def act() -> None:
        await client.post(PODS, json=pod("new"))
        await client.patch(f"{PODS}/new", json={"metadata": {"labels": {"a": "b"}}}, headers=MERGE)
        await client.delete(f"{PODS}/new")

    events = await _watch_while(client, {}, act)
    assert [(t, o["metadata"]["name"]) for t, o in events] == [
        ("ADDED", "old"),
        ("ADDED", "new"),
        ("MODIFIED", "new"),
        ("DELETED", "new"),
    ]
    rvs = [int(o["metadata"]["resourceVersion"]) for _, o in events]
    assert rvs == sorted(rvs)
    assert events[2][1]["metadata"]["labels"] == {"a": "b"}


async def test_watch_from_resource_version(client: httpx.AsyncClient) -> None:
    first = (await client.post(PODS, json=pod("w1"))).json()
    await client.post(PODS, json=pod("w2"))
    events = await _watch_while(client, {"resourceVersion": first["metadata"]["resourceVersion"]}, _noop)
    assert [(t, o["metadata"]["name"]) for t, o in events] == [("ADDED", "w2")]


async def _noop() -> None:
    return None


async def test_watch_selector_sends_deleted_when_object_stops_matching(client: httpx.AsyncClient) -> None:
    await client.post(PODS, json=pod("s", labels={"app": "web"}))

    async def act() -> None:
        await client.post(PODS, json=pod("other", labels={"app": "db"}))
        await client.patch(f"{PODS}/s", json={"metadata": {"labels": {"app": "db"}}}, headers=MERGE)
        await client.patch(f"{PODS}/other", json={"metadata": {"labels": {"app": "web"}}}, headers=MERGE)

    events = await _watch_while(client, {"labelSelector": "app=web"}, act)
    assert [(t, o["metadata"]["name"]) for t, o in events] == [
        ("ADDED", "s"),
        ("DELETED", "s"),
        ("ADDED", "other"),
    ]


async def test_watch_compacted_revision_is_expired(client: httpx.AsyncClient, kv: MemoryKV) -> None:
    first = (await client.post(PODS, json=pod("c1"))).json()
    await client.post(PODS, json=pod("c2"))
    await client.post(PODS, json=pod("c3"))
    await kv.compact(await kv.current_revision())
    r = await client.get(PODS, params={"watch": "1", "resourceVersion": first["metadata"]["resourceVersion"]})
    [(kind, status)] = _events(r)
    assert kind == "ERROR"
    assert status["kind"] == "Status"
    assert (status["code"], status["reason"]) == (410, "Expired")
    assert status["message"].startswith("too old resource version")


async def test_watch_bookmarks_and_initial_events_end(client: httpx.AsyncClient) -> None:
    await client.post(PODS, json=pod("b1"))
    r = await client.get(
        PODS,
        params={
            "watch": "1",
            "allowWatchBookmarks": "true",
            "sendInitialEvents": "true",
            "timeoutSeconds": "1",
        },
    )
    events = _events(r)
    assert events[0][0] == "ADDED"
    kind, obj = events[1]
    assert kind == "BOOKMARK"
    assert obj["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_watch_single_object_by_field_selector(client: httpx.AsyncClient) -> None:
    await client.post(PODS, json=pod("one"))
    await client.post(PODS, json=pod("two"))
    events = await _watch_while(client, {"fieldSelector": "metadata.name=two"}, _noop)
    assert [o["metadata"]["name"] for _, o in events] == ["two"]


async def test_watch_over_real_server_streams_and_ends_on_disconnect_and_shutdown() -> None:
    async def build() -> ApiServer:
        registry = fresh_registry()
        return ApiServer(ObjectStore(MemoryKV(), registry), registry, token=TOKEN)

    thread = ServerThread(build)
    thread.start()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with httpx.AsyncClient(base_url=thread.url, headers=headers, timeout=10) as c:
            assert (await c.post(PODS, json=pod("live"))).status_code == 201
            async with c.stream("GET", PODS, params={"watch": "true"}) as r:
                lines = r.aiter_lines()
                first = json.loads(await anext(lines))
                assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "live")
                assert (await c.post(PODS, json=pod("later"))).status_code == 201
                second = json.loads(await anext(lines))
                assert (second["type"], second["object"]["metadata"]["name"]) == ("ADDED", "later")
            # The client went away; a new watch still works and shutdown does not hang on it.
            async with c.stream("GET", PODS, params={"watch": "true", "resourceVersion": "1"}) as r:
                await anext(r.aiter_lines())
                loop = asyncio.get_running_loop()
                started = loop.time()
                await loop.run_in_executor(None, thread.stop)
                assert loop.time() - started < 5
    finally:
        thread.stop()
