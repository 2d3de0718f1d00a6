"""Shared fixtures: one real etcd per test session (temp data dir, loopback, free ports)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before anything imports grpc: pyroute2 enters network namespaces through a forked helper,
# and gRPC's fork handlers (with its poller threads busy) leave that child hung or crashed.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

from kray.cluster import LOOPBACK_ENV
from kray.etcd_server import EtcdServer
from tests.leftovers import leftovers

# Before anything imports ray: loopback-only clusters, no token auth (see kray.cluster).
os.environ.update(LOOPBACK_ENV)


@pytest.fixture(scope="session", autouse=True)
def no_leftovers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """At the end of the session: no netns, link, cgroup, nftables table, OCI container or
    process named after a prefix this session's tests took from tests.leftovers.session_prefix.
    Fails the session (an error at the last test's teardown) when something remains."""
    yield
    roots = [tmp_path_factory.getbasetemp()]
    deadline = time.monotonic() + 10.0
    found = leftovers(roots=roots)
    while found and time.monotonic() < deadline:  # shims and netns deletion finish a moment late
        time.sleep(0.5)
        found = leftovers(roots=roots)
    if found:
        pytest.fail("tests left these behind:\n  " + "\n  ".join(found), pytrace=False)


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    base: Path = tmp_path_factory.mktemp("etcd")
    server = EtcdServer(data_dir=base / "data", die_with_parent=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def etcd_endpoint(etcd_server: EtcdServer) -> str:
    return etcd_server.endpoint


@pytest.fixture
def private_etcd_endpoint(tmp_path: Path) -> Iterator[str]:
    """An etcd of the test's own, for a `kray up` whose controllers and scheduler must see only
    that test's objects (not what other tests left in the session's etcd)."""
    server = EtcdServer(data_dir=tmp_path / "etcd", die_with_parent=True).start()
    try:
        yield server.endpoint
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """One Ray cluster for the whole test session, on loopback; yields its GCS address."""
    import ray

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


# What each fixture needs, so `-m "not etcd and not ray"` leaves out every test that uses them.
_FIXTURE_MARKS = {"etcd_server": "etcd", "etcd_endpoint": "etcd", "ray_cluster": "ray"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            mark = _FIXTURE_MARKS.get(fixture)
            if mark:
                item.add_marker(getattr(pytest.mark, mark))
