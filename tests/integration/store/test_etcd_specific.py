"""EtcdKV behaviour only a real etcd shows: outages, reconnecting watches, endpoints."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from kray.actors.store.etcd import EtcdKV
from kray.actors.store.kv import KVEvent, StoreUnavailableError
from kray.etcd_server import EtcdServer, free_port

pytestmark = [pytest.mark.etcd, pytest.mark.slow]


async def test_watch_resumes_after_etcd_restart_without_loss_or_repeat(private_etcd: EtcdServer) -> None:
    watcher_kv, writer_kv = EtcdKV(private_etcd.endpoint), EtcdKV(private_etcd.endpoint, timeout=2)
    prefix = f"/resume/{uuid.uuid4().hex[:8]}/"
    seen: list[KVEvent] = []
    written: list[int] = []
    try:
        written += [await writer_kv.put(f"{prefix}a{i}", b"v") for i in range(5)]

        async def consume() -> None:
            async for batch in watcher_kv.watch(prefix, start_revision=written[0]):
                seen.extend(batch)

        reader = asyncio.create_task(consume())
        await _until(lambda: len(seen) >= 5)

        private_etcd.kill()  # crash: the watch stream dies mid-flight
        with pytest.raises(StoreUnavailableError):
            await writer_kv.put(f"{prefix}during", b"lost")  # nothing is written while down
        await asyncio.sleep(1.0)  # the watcher retries (and backs off) meanwhile
        assert not reader.done(), "the watch must survive the outage"

        await asyncio.to_thread(private_etcd.start)  # same data dir and ports
        # Written at once: most land before the watcher's next retry, so they come from the
        # resumed watch's catch-up, the others live.
        written += [await writer_kv.put(f"{prefix}b{i}", b"v") for i in range(5)]
        await _until(lambda: len(seen) >= 10)
        written += [await writer_kv.update(f"{prefix}a0", b"w", expected_mod_revision=written[0])]
        await _until(lambda: len(seen) >= 11)
        await asyncio.sleep(0.3)  # a repeat would show up now
        assert [e.kv.mod_revision for e in seen] == written
        assert all(e.kv.mod_revision == r for e, r in zip(seen, written, strict=True))
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    finally:
        await watcher_kv.close()
        await writer_kv.close()


async def test_unreachable_store_raises_unavailable() -> None:
    kv = EtcdKV(f"http://127.0.0.1:{free_port()}", timeout=2)
    try:
        with pytest.raises(StoreUnavailableError):
            await kv.get("/x")
        with pytest.raises(StoreUnavailableError):
            await kv.create("/x", b"1")
    finally:
        await kv.close()


async def test_multiple_endpoints_tried_in_order(etcd_endpoint: str) -> None:
    kv = EtcdKV(f"http://127.0.0.1:{free_port()},{etcd_endpoint}")
    key = f"/endpoints/{uuid.uuid4().hex[:8]}"
    try:
        rev = await kv.put(key, b"1")
        got = await kv.get(key)
        assert got is not None and got.mod_revision == rev
        status = await kv.status()
        assert status.version.startswith("3.5")
    finally:
        await kv.delete_prefix(key)
        await kv.close()


async def _until(cond: object, timeout: float = 15.0) -> None:
    assert callable(cond)
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)
