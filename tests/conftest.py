"""Shared fixtures: one real etcd per test session (temp data dir, loopback, free ports)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kray.etcd_server import EtcdServer


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    base: Path = tmp_path_factory.mktemp("etcd")
    server = EtcdServer(data_dir=base / "data").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def etcd_endpoint(etcd_server: EtcdServer) -> str:
    return etcd_server.endpoint
