"""An API server over the session's real etcd, and the official `kubernetes` client against it,
shared by the tests in this folder that speak to kray as kubectl and client-go programs do."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

import kray.crds  # noqa: F401
from kray.actors.apiserver import ApiServer, ServerThread
from kray.actors.store.etcd import EtcdKV
from kray.actors.store.objects import ObjectStore
from kray.crds.registry import REGISTRY

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client as k8s  # noqa: E402

TOKEN = "integration-token"


@pytest.fixture(scope="module")
def server(etcd_endpoint: str) -> Iterator[ServerThread]:
    async def build() -> ApiServer:
        return ApiServer(ObjectStore(EtcdKV(etcd_endpoint), REGISTRY), REGISTRY, token=TOKEN)

    thread = ServerThread(build)
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture(scope="module")
def v1(server: ServerThread) -> Iterator[k8s.CoreV1Api]:
    config = k8s.Configuration(host=server.url, api_key={"authorization": f"Bearer {TOKEN}"})
    with k8s.ApiClient(config) as api_client:
        yield k8s.CoreV1Api(api_client)


@pytest.fixture
def namespace(v1: k8s.CoreV1Api) -> str:
    name = f"it-{uuid.uuid4().hex[:8]}"
    v1.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    return name
