"""Backends for the KV contract tests: MemoryKV (fake clock) and EtcdKV (real etcd).

Every etcd-backed test works under its own unique key prefix and deletes it afterwards, so
tests share the session etcd without seeing each other's keys.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kvbackends import Backend, FakeClock

from kray.actors.store.etcd import EtcdKV
from kray.actors.store.memory import MemoryKV
from kray.etcd_server import EtcdServer


async def _make(name: str, endpoint: str | None) -> Backend:
    prefix = f"/contract/{uuid.uuid4().hex[:12]}/"
    if name == "memory":
        clock = FakeClock()
        return Backend(name, MemoryKV(clock=clock), prefix, clock)
    assert endpoint is not None
    return Backend(name, EtcdKV(endpoint), prefix)


async def _cleanup(backend: Backend) -> None:
    if isinstance(backend.kv, EtcdKV):
        await backend.kv.delete_prefix(backend.prefix)
    await backend.kv.close()


@pytest.fixture(params=["memory", "etcd"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    endpoint = request.getfixturevalue("etcd_endpoint") if request.param == "etcd" else None
    b = await _make(request.param, endpoint)
    try:
        yield b
    finally:
        await _cleanup(b)


@pytest.fixture
def private_etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    """An etcd of one's own, for tests that compact or kill it (the session one is shared)."""
    server = EtcdServer(data_dir=tmp_path / "etcd", die_with_parent=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", "etcd"])
async def private_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Like ``backend`` but etcd is a private server, so global operations (compaction) are safe."""
    endpoint = request.getfixturevalue("private_etcd").endpoint if request.param == "etcd" else None
    b = await _make(request.param, endpoint)
    try:
        yield b
    finally:
        await b.kv.close()
