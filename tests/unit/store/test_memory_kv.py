"""MemoryKV specifics (the shared etcd semantics are in tests/integration/store)."""

from __future__ import annotations

import asyncio

import pytest

from kray.actors.store import KVEvent, MemoryKV, StoreError
from kray.actors.store.memory import prefix_end


def test_prefix_end() -> None:
    assert prefix_end("/a/") == "/a0"
    assert prefix_end("/a/") > "/a/zzz" and prefix_end("/a/") <= "/a0"


async def test_revisions_start_like_etcd() -> None:
    kv = MemoryKV()
    assert await kv.current_revision() == 1
    assert await kv.put("/k", b"v") == 2
    await kv.close()


async def test_background_reaper_expires_leases_on_the_injected_clock() -> None:
    now = [0.0]
    kv = MemoryKV(clock=lambda: now[0], reap_interval=0.01)
    lease = await kv.grant_lease(5)
    await kv.put("/leased", b"v", lease=lease)
    await asyncio.sleep(0.05)
    assert await kv.count("/") == 1
    events: list[KVEvent] = []

    async def watch() -> None:
        async for batch in kv.watch("/", start_revision=0):
            events.extend(batch)
            return

    task = asyncio.create_task(watch())
    await asyncio.sleep(0)
    now[0] = 6.0  # no call touches the store: only the reaper can notice
    await asyncio.wait_for(task, 2)
    assert [(e.type, e.kv.key) for e in events] == [("DELETE", "/leased")]
    await kv.close()


async def test_close_ends_watchers_and_rejects_calls() -> None:
    kv = MemoryKV()
    seen: list[list[KVEvent]] = []

    async def watch() -> None:
        async for batch in kv.watch("/", start_revision=0):
            seen.append(batch)

    task = asyncio.create_task(watch())
    await asyncio.sleep(0)
    await kv.close()
    await asyncio.wait_for(task, 1)
    assert seen == []
    with pytest.raises(StoreError):
        await kv.get("/x")


async def test_big_backlog_comes_in_bounded_batches() -> None:
    kv = MemoryKV()
    for i in range(2500):
        await kv.put(f"/b/{i}", b"v")
    sizes: list[int] = []
    async for batch in kv.watch("/b/", start_revision=2):
        sizes.append(len(batch))
        if sum(sizes) >= 2500:
            break
    assert sizes == [1000, 1000, 500]
    await kv.close()
