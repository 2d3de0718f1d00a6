"""One API server over the session's real etcd per test module, and a client config for it."""

from __future__ import annotations

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

    thread = ServerThread(build)
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture
def config(apiserver: ServerThread) -> KrayConfig:
    return KrayConfig(server=apiserver.url, token=TOKEN)
