"""Contract of KV.txn (multi-key compare-and-swap), on MemoryKV and on real etcd."""

from __future__ import annotations

import asyncio

import pytest
from kvbackends import Backend

from kray.actors.store.kv import Compare, RevisionConflictError


async def test_txn_applies_all_at_one_revision(backend: Backend) -> None:
    kv, p = backend.kv, backend.prefix
    rev_a = await kv.create(p + "a", b"1")
    await kv.create(p + "gone", b"x")
    rev = await kv.txn(
        [Compare(p + "a", rev_a), Compare(p + "b", 0)],
        [(p + "a", b"2"), (p + "b", b"3")],
        [p + "gone", p + "never-existed"],
    )
    a, b = await kv.get(p + "a"), await kv.get(p + "b")
    assert a is not None and b is not None
    assert (a.value, b.value, a.mod_revision, b.mod_revision) == (b"2", b"3", rev, rev)
    assert await kv.get(p + "gone") is None


async def test_txn_conflict_changes_nothing(backend: Backend) -> None:
    kv, p = backend.kv, backend.prefix
    rev_a = await kv.create(p + "a", b"1")
    await kv.put(p + "a", b"moved")
    with pytest.raises(RevisionConflictError) as err:
        await kv.txn([Compare(p + "a", rev_a)], [(p + "a", b"2"), (p + "b", b"3")])
    assert err.value.current_revision > rev_a
    assert await kv.get(p + "b") is None
    with pytest.raises(RevisionConflictError) as err:  # "absent" guard on a present key
        await kv.txn([Compare(p + "a", 0)], [(p + "c", b"1")])
    assert await kv.get(p + "c") is None


async def test_concurrent_txns_on_one_counter_never_lose_updates(backend: Backend) -> None:
    kv, key = backend.kv, backend.prefix + "counter"
    await kv.create(key, b"0")

    async def bump() -> None:
        while True:
            cur = await kv.get(key)
            assert cur is not None
            try:
                await kv.txn([Compare(key, cur.mod_revision)], [(key, str(int(cur.value) + 1).encode())])
                return
            except RevisionConflictError:
                await asyncio.sleep(0)

    await asyncio.gather(*(bump() for _ in range(20)))
    final = await kv.get(key)
    assert final is not None and final.value == b"20"


async def test_txn_events_arrive_in_one_batch(backend: Backend) -> None:
    kv, p = backend.kv, backend.prefix
    start = await kv.current_revision() + 1
    rev = await kv.txn([Compare(p + "x", 0), Compare(p + "y", 0)], [(p + "x", b"1"), (p + "y", b"2")])
    it = kv.watch(p, start_revision=start)
    batch = await asyncio.wait_for(it.__anext__(), 5)
    await it.aclose()  # type: ignore[attr-defined]
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in batch] == [("PUT", p + "x", rev), ("PUT", p + "y", rev)]
