"""One API server over the session's real etcd per test module, and a client config for it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from kray.actors.apiserver import ApiServer, ServerThread
from kray.actors.store import ObjectStore
from kray.config import KrayConfig
from kray.crds import REGISTRY

TOKEN = "controllers-it-token"


@pytest.fixture(scope="module")
def apiserver(etcd_endpoint: str) -> Iterator[ServerThread]:
    async def build() -> ApiServer:
        from kray.actors.store.etcd import EtcdKV

        return ApiServer(ObjectStore(EtcdKV(etcd_endpoint), REGISTRY), REGISTRY, token=TOKEN)

    start = asyncio.run(_revision(etcd_endpoint))
    thread = ServerThread(build)
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()
        asyncio.run(_forget_since(etcd_endpoint, start))


async def _revision(endpoint: str) -> int:
    from kray.actors.store.etcd import EtcdKV

    kv = EtcdKV(endpoint)
    try:
        return await kv.current_revision()
    finally:
        await kv.close()


async def _forget_since(endpoint: str, revision: int) -> None:
    """Delete every object this module created in the session's shared etcd. Left there, a
    StatefulSet or DaemonSet would come alive under a later test's `kray up` (whose controllers
    watch the same etcd) and make pods on its real node."""
    from kray.actors.store.etcd import EtcdKV

    kv = EtcdKV(endpoint)
    try:
        kvs, _ = await kv.range("/registry/")
        for item in kvs:
            if item.create_revision > revision:
                await kv.delete(item.key)
    finally:
        await kv.close()


@pytest.fixture
def config(apiserver: ServerThread) -> KrayConfig:
    return KrayConfig(server=apiserver.url, token=TOKEN)
