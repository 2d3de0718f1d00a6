"""The env fixture for the TrainingJob operator tests (helpers live in tj_harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from tj_harness import NOW, Env

from kray.actors.apiserver import ApiServer
from kray.actors.controllers import garbagecollector, podgroup, trainingjob
from kray.actors.store import MemoryKV, ObjectStore
from kray.api import FakeClock, Manager, StoreListWatcher
from kray.client import AsyncClient
from kray.crds.registry import REGISTRY


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    kv = MemoryKV()
    store = ObjectStore(kv, REGISTRY)
    api = ApiServer(store, REGISTRY, token="t", clock=lambda: NOW)
    await api.start()
    clock = FakeClock(NOW)
    transport = httpx.ASGITransport(app=api.app)
    async with AsyncClient(server="http://kray.test", token="t", transport=transport) as client:
        manager = Manager(StoreListWatcher(store), client, clock=clock)
        trainingjob.setup(manager)
        garbagecollector.setup(manager)
        podgroup.setup(manager)  # the gang's PodGroup status is its job
        assert await manager.start_informers(2)
        yield manager, client, clock
        await manager.stop()
    await kv.close()
