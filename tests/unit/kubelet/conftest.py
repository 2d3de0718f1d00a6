"""Fixtures for the kubelet core tests (helpers live in kubelet_harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from kubelet_harness import NOW, Env, volume_manager

from kray.actors.apiserver import ApiServer
from kray.actors.framework import FakeClock
from kray.actors.kubelet.fakes import FakeCri, FakeDevices
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient
from kray.crds.registry import REGISTRY


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    kv = MemoryKV()
    api = ApiServer(ObjectStore(kv, REGISTRY), REGISTRY, token="t")
    await api.start()
    clock = FakeClock(NOW)
    cri = FakeCri(now_ns=lambda: int(clock.now().timestamp() * 1e9), log_root=str(tmp_path / "logs"))
    transport = httpx.ASGITransport(app=api.app)
    async with AsyncClient(server="http://kray.test", token="t", transport=transport) as client:
        e = Env(api, client, clock, cri, None, volume_manager(tmp_path / "pods"), tmp_path)  # type: ignore[arg-type]
        e.kubelet = e.new_kubelet()
        yield e
        await e.kubelet.drain()
    await kv.close()


@pytest.fixture
def gpus() -> FakeDevices:
    return FakeDevices({"nvidia.com/gpu": ["GPU-a", "GPU-b"]})
