"""Over real HTTP (uvicorn on a thread, MemoryKV behind it): the ClientListWatcher feeding an
informer, and ControllerActor run as a plain object (no Ray)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from kray.actors.apiserver import ApiServer, ServerThread
from kray.actors.framework import ClientListWatcher, FuncHandler, Informer, ResourceExpired
from kray.actors.framework.hosting import ControllerActor, resolve_spec
from kray.actors.framework.sample import CONFIGMAP, LABEL
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient, NotFound
from kray.config import KrayConfig
from kray.crds import REGISTRY, ConfigMap, Namespace, ObjectMeta

TOKEN = "http-token"
CM = REGISTRY.for_model(ConfigMap)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    async def build() -> ApiServer:
        return ApiServer(ObjectStore(MemoryKV(), REGISTRY), REGISTRY, token=TOKEN)

    thread = ServerThread(build)
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture
async def http_client(server: ServerThread) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server=server.url, token=TOKEN) as c:
        yield c


async def test_informer_over_http_watch(http_client: AsyncClient) -> None:
    await http_client.create(ConfigMap(metadata=ObjectMeta(name="h1", namespace="default")))
    seen: list[tuple[str, str]] = []
    inf = Informer(ClientListWatcher(http_client), CM)
    inf.add_handler(
        FuncHandler(
            add=lambda o: seen.append(("add", o.name)),
            update=lambda a, b: seen.append(("update", b.name)),
            delete=lambda o: seen.append(("delete", o.name)),
        )
    )
    inf.start()
    try:
        assert await inf.wait_for_sync(5)
        created = await http_client.create(ConfigMap(metadata=ObjectMeta(name="h2", namespace="default")))
        await http_client.delete(ConfigMap, "h1", "default")
        await inf.wait_for_version(created.metadata.resource_version or "")
        for _ in range(200):
            if ("delete", "h1") in seen:
                break
            await asyncio.sleep(0.01)
        assert [e for e in seen if e[1] in ("h1", "h2")] == [("add", "h1"), ("add", "h2"), ("delete", "h1")]
    finally:
        await inf.stop()


async def test_http_watch_too_old_is_resource_expired(server: ServerThread, http_client: AsyncClient) -> None:
    for i in range(3):
        await http_client.create(ConfigMap(metadata=ObjectMeta(name=f"old{i}", namespace="default")))
    assert server.api is not None and server.loop is not None
    store = server.api.store
    compact = asyncio.run_coroutine_threadsafe(store.kv.compact(await_current(server)), server.loop)
    compact.result(5)
    with pytest.raises(ResourceExpired):
        async for _ in ClientListWatcher(http_client).watch(CM, "default", "1"):
            pass


def await_current(server: ServerThread) -> int:
    assert server.api is not None and server.loop is not None
    fut = asyncio.run_coroutine_threadsafe(server.api.store.current_revision(), server.loop)
    return fut.result(5)


def test_resolve_spec_errors() -> None:
    with pytest.raises(ValueError, match="module:attr"):
        resolve_spec("no-colon")
    with pytest.raises(ValueError, match="FOR"):
        resolve_spec("kray.actors.framework.sample:NamespaceMirror")
    with pytest.raises(ModuleNotFoundError):
        resolve_spec("no_such_module_xyz:build")


async def test_controller_actor_without_ray(server: ServerThread, http_client: AsyncClient) -> None:
    config = KrayConfig(server=server.url, token=TOKEN)
    actor = ControllerActor(
        "mirror-local",
        "kray.actors.framework.sample:build",
        config,
        lease_duration=3,
        renew_deadline=2,
        retry_period=0.5,
    )
    try:
        await http_client.create(Namespace(metadata=ObjectMeta(name="hosted", labels={LABEL: "true"})))
        for _ in range(500):
            try:
                await http_client.get(ConfigMap, CONFIGMAP, "hosted")
                break
            except NotFound:
                await asyncio.sleep(0.01)
        status = await actor.status()
        assert status["leader"] and status["synced"] and status["error"] is None
        assert status["reconciles"]["namespace-mirror"] >= 1
    finally:
        await actor.stop()
