"""Fixtures: a real-semantics in-memory cluster (ApiServer over MemoryKV, via ASGI) and a FakeClock.

Writes go through ``AsyncClient`` (the Writer port) to the API server; informers list and
watch the same ObjectStore directly (``StoreListWatcher``), because httpx's ASGI transport
buffers streamed bodies and so cannot carry a live watch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone

import httpx
import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.framework import FakeClock, StoreListWatcher
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient
from kray.crds.registry import REGISTRY

TOKEN = "framework-token"
NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
async def kv() -> AsyncIterator[MemoryKV]:
    store = MemoryKV()
    yield store
    await store.close()


@pytest.fixture
def store(kv: MemoryKV) -> ObjectStore:
    return ObjectStore(kv, REGISTRY)


@pytest.fixture
async def api(store: ObjectStore) -> ApiServer:
    server = ApiServer(store, REGISTRY, token=TOKEN, clock=lambda: NOW)
    await server.start()
    return server


@pytest.fixture
async def client(api: ApiServer) -> AsyncIterator[AsyncClient]:
    transport = httpx.ASGITransport(app=api.app)
    async with AsyncClient(server="http://kray.test", token=TOKEN, transport=transport) as c:
        yield c


@pytest.fixture
def lw(store: ObjectStore) -> StoreListWatcher:
    return StoreListWatcher(store)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


async def eventually(cond: Callable[[], bool | Awaitable[bool]], timeout: float = 3.0) -> None:
    """Poll ``cond`` (sync or async) until true; the watch tasks run in between."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = cond()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)
