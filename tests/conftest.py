"""Shared fixtures: one real etcd per test session (temp data dir, loopback, free ports)."""

from __future__ import annotations

import logging
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


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """One Ray cluster for the whole test session, on loopback; yields its GCS address."""
    import os

    import ray

    from kray.cluster import LOOPBACK_ENV

    os.environ.update(LOOPBACK_ENV)
    # address="local": always a fresh cluster of our own, never one left running on the machine.
    ctx = ray.init(
        address="local",
        num_cpus=4,
        include_dashboard=False,
        namespace="kray-test",
        logging_level=logging.WARNING,
        _node_ip_address="127.0.0.1",
    )
    try:
        yield str(ctx.address_info["gcs_address"])
    finally:
        ray.shutdown()
