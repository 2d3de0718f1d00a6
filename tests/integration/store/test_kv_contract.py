"""The KV contract: every test runs against MemoryKV and a real etcd (EtcdKV)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from kvbackends import Backend

from kray.actors.store.kv import (
    CompactedError,
    KeyExistsError,
    KeyNotFoundError,
    KVEvent,
    LeaseNotFoundError,
    RevisionConflictError,
)

pytestmark = pytest.mark.etcd


async def collect(it: AsyncIterator[list[KVEvent]], n: int, timeout: float = 10.0) -> list[list[KVEvent]]:
    """Read batches until ``n`` events arrived (fails on timeout), then close the watch."""
    batches: list[list[KVEvent]] = []

    async def run() -> None:
        count = 0
        async for batch in it:
            batches.append(batch)
            count += len(batch)
            if count >= n:
                return

    try:
        await asyncio.wait_for(run(), timeout)
    finally:
        await it.aclose()  # type: ignore[attr-defined]
    return batches


def flat(batches: list[list[KVEvent]]) -> list[tuple[str, str, int]]:
    return [(e.type, e.kv.key, e.kv.mod_revision) for b in batches for e in b]


async def test_create_get_and_create_twice(backend: Backend) -> None:
    kv, k = backend.kv, backend.prefix + "a"
    rev = await kv.create(k, b"1")
    got = await kv.get(k)
    assert got is not None and got.value == b"1"
    assert got.create_revision == got.mod_revision == rev and got.version == 1
    assert await kv.current_revision() == rev
    with pytest.raises(KeyExistsError):
        await kv.create(k, b"2")
    assert await kv.get(backend.prefix + "missing") is None


async def test_get_many_reads_each_key_or_none(backend: Backend) -> None:
    kv, p = backend.kv, backend.prefix
    await kv.create(p + "a", b"1")
    rev = await kv.create(p + "b", b"2")
    got = await kv.get_many([p + "b", p + "missing", p + "a"])
    assert [g.value if g else None for g in got] == [b"2", None, b"1"]
    assert got[0] is not None and got[0].mod_revision == rev
    assert await kv.get_many([]) == []
    many = await kv.get_many([p + "a"] * 300)  # more keys than one etcd transaction takes
    assert len(many) == 300 and all(g is not None and g.value == b"1" for g in many)


async def test_update_cas(backend: Backend) -> None:
    kv, k = backend.kv, backend.prefix + "u"
    r1 = await kv.create(k, b"1")
    r2 = await kv.update(k, b"2", expected_mod_revision=r1)
    assert r2 > r1
    with pytest.raises(RevisionConflictError) as info:
        await kv.update(k, b"3", expected_mod_revision=r1)
    assert info.value.current_revision == r2
    got = await kv.get(k)
    assert got is not None and got.value == b"2" and got.version == 2 and got.create_revision == r1
    with pytest.raises(KeyNotFoundError):
        await kv.update(backend.prefix + "nope", b"x", expected_mod_revision=r1)


async def test_delete_with_precondition(backend: Backend) -> None:
    kv, k = backend.kv, backend.prefix + "d"
    r1 = await kv.create(k, b"1")
    r2 = await kv.update(k, b"2", expected_mod_revision=r1)
    with pytest.raises(RevisionConflictError):
        await kv.delete(k, expected_mod_revision=r1)
    rev, prev = await kv.delete(k, expected_mod_revision=r2)
    assert rev > r2 and prev.value == b"2" and prev.mod_revision == r2
    assert await kv.get(k) is None
    with pytest.raises(KeyNotFoundError):
        await kv.delete(k)
    # A re-created key starts over at version 1.
    r3 = await kv.create(k, b"3")
    again = await kv.get(k)
    assert again is not None and again.version == 1 and again.create_revision == r3
    rev4, _ = await kv.delete(k)  # unconditional
    assert rev4 > r3


async def test_range_prefix_order_limit_and_revision(backend: Backend) -> None:
    kv, p = backend.kv, backend.prefix
    for name in ("ns-b/x", "ns/b", "ns/a", "ns/c"):
        await kv.create(p + name, name.encode())
    items, rev = await kv.range(p + "ns/")
    assert [i.key for i in items] == [p + "ns/a", p + "ns/b", p + "ns/c"]  # not "ns-b/"
    assert rev == await kv.current_revision()
    assert await kv.count(p + "ns/") == 3 and await kv.count(p) == 4
    limited, _ = await kv.range(p + "ns/", limit=2)
    assert [i.key for i in limited] == [p + "ns/a", p + "ns/b"]

    await kv.update(p + "ns/a", b"changed", expected_mod_revision=items[0].mod_revision)
    await kv.delete(p + "ns/b")
    await kv.create(p + "ns/d", b"d")
    past, at = await kv.range(p + "ns/", revision=rev)
    assert at == rev
    assert [(i.key, i.value) for i in past] == [
        (p + "ns/a", b"ns/a"),
        (p + "ns/b", b"ns/b"),
        (p + "ns/c", b"ns/c"),
    ]
    now, _ = await kv.range(p + "ns/")
    assert [(i.key, i.value) for i in now] == [
        (p + "ns/a", b"changed"),
        (p + "ns/c", b"ns/c"),
        (p + "ns/d", b"d"),
    ]


async def test_watch_from_revision_exact_and_ordered(backend: Backend) -> None:
    kv, p = backend.kv, backend.prefix
    r1 = await kv.create(p + "w/1", b"1")
    r2 = await kv.create(p + "w/2", b"2")
    await kv.create(p + "other", b"x")  # outside the watched prefix
    r3 = await kv.update(p + "w/1", b"1b", expected_mod_revision=r1)
    r4, _ = await kv.delete(p + "w/2")

    batches = await collect(kv.watch(p + "w/", start_revision=r2), 3)
    assert flat(batches) == [("PUT", p + "w/2", r2), ("PUT", p + "w/1", r3), ("DELETE", p + "w/2", r4)]
    events = [e for b in batches for e in b]
    assert events[0].kv.create_revision == r2 and events[1].kv.create_revision == r1
    assert events[1].prev_kv is not None and events[1].prev_kv.value == b"1"
    assert events[2].prev_kv is not None and events[2].prev_kv.value == b"2"
    # The backlog is delivered in batches, not one event at a time.
    assert len(batches) < 3


async def test_watch_live_events_and_start_zero(backend: Backend) -> None:
    kv, p = backend.kv, backend.prefix
    await kv.create(p + "before", b"0")
    it = kv.watch(p, start_revision=0)  # from now on
    reader = asyncio.create_task(collect(it, 20))
    await asyncio.sleep(0.2)  # let the watch be established before writing
    revs = [await kv.create(p + f"k{i:02d}", b"v") for i in range(20)]
    batches = await reader
    assert [e[2] for e in flat(batches)] == revs


async def test_many_concurrent_watchers(backend: Backend) -> None:
    kv, p = backend.kv, backend.prefix
    start = await kv.current_revision() + 1
    readers = [asyncio.create_task(collect(kv.watch(p, start_revision=start), 10)) for _ in range(8)]
    revs = [await kv.put(p + f"c{i}", b"v") for i in range(10)]
    results = await asyncio.gather(*readers)
    for batches in results:
        assert [e[2] for e in flat(batches)] == revs


async def test_lease_expiry_deletes_key(backend: Backend) -> None:
    kv, k = backend.kv, backend.prefix + "leased"
    lease = await kv.grant_lease(2)  # etcd's minimum TTL is 2 s
    rev = await kv.create(k, b"alive", lease=lease)
    got = await kv.get(k)
    assert got is not None and got.lease == lease
    await backend.elapse(1.0)
    assert await kv.keepalive(lease) > 0
    watch = kv.watch(backend.prefix, start_revision=rev + 1)
    reader = asyncio.create_task(collect(watch, 1, timeout=15))
    await backend.elapse(1.5)
    assert await kv.get(k) is not None  # the keepalive pushed the deadline out
    await backend.elapse(3.0)
    batches = await reader
    assert flat(batches)[0][:2] == ("DELETE", k)
    assert batches[0][0].prev_kv is not None and batches[0][0].prev_kv.value == b"alive"
    assert await kv.get(k) is None
    assert await kv.keepalive(lease) <= 0


async def test_lease_revoke_and_unknown_lease(backend: Backend) -> None:
    kv, p = backend.kv, backend.prefix
    lease = await kv.grant_lease(60)
    await kv.create(p + "l1", b"1", lease=lease)
    await kv.put(p + "l2", b"2", lease=lease)
    await kv.revoke_lease(lease)
    assert await kv.count(p) == 0
    await kv.revoke_lease(lease)  # idempotent
    with pytest.raises(LeaseNotFoundError):
        await kv.put(p + "l3", b"3", lease=lease)


async def test_compaction(private_backend: Backend) -> None:
    kv, p = private_backend.kv, private_backend.prefix
    r1 = await kv.create(p + "a", b"1")
    r2 = await kv.update(p + "a", b"2", expected_mod_revision=r1)
    r3 = await kv.create(p + "b", b"3")
    await kv.compact(r2)
    with pytest.raises(CompactedError):
        await collect(kv.watch(p, start_revision=r1), 1)
    with pytest.raises(CompactedError):
        await kv.range(p, revision=r1)
    with pytest.raises(CompactedError):
        await kv.compact(r1)
    # From the compaction point on, history is intact.
    batches = await collect(kv.watch(p, start_revision=r2), 2)
    assert [e[2] for e in flat(batches)] == [r2, r3]
