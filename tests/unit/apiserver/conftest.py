"""Fixtures: an ApiServer over MemoryKV, driven in-process through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.store import MemoryKV, ObjectStore
from kray.crds.registry import REGISTRY, Registry

TOKEN = "s3cret-token"
NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)


def fresh_registry() -> Registry:
    """A copy of the built-in kinds, so CRD tests cannot leak kinds into other tests."""
    reg = Registry()
    for info in REGISTRY.all():
        if not info.model.__module__.startswith("kray.crds.apiextensions") or info.kind == "CustomResourceDefinition":
            reg.register(info.model)
    return reg


def pod(name: str = "p1", image: str | None = "busybox", **meta: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c"}
    if image is not None:
        container["image"] = image
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **meta},
        "spec": {"containers": [container]},
    }


@pytest.fixture
async def kv() -> AsyncIterator[MemoryKV]:
    store = MemoryKV()
    yield store
    await store.close()


@pytest.fixture
async def api(kv: MemoryKV) -> ApiServer:
    registry = fresh_registry()
    server = ApiServer(ObjectStore(kv, registry), registry, token=TOKEN, clock=lambda: NOW)
    await server.start()
    return server


@pytest.fixture
async def client(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=api.app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://kray.test", headers=headers) as c:
        yield c


async def snapshot(kv: MemoryKV) -> tuple[int, list[tuple[str, bytes, int]]]:
    """Everything in the store, to assert a failed request changed nothing."""
    items, rev = await kv.range("/")
    return rev, [(i.key, i.value, i.mod_revision) for i in items]
