"""Leader election on a Lease through the in-memory API server, with a FakeClock."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from kray.actors.framework import FakeClock, LeaderElector
from kray.client import AsyncClient
from kray.crds import Lease

NS = "kube-system"


def elector(client: AsyncClient, clock: FakeClock, identity: str, log: list[str]) -> LeaderElector:
    return LeaderElector(
        client,
        "my-controller",
        NS,
        identity,
        lease_duration=15,
        renew_deadline=10,
        retry_period=2,
        clock=clock,
        on_started_leading=lambda: log.append(f"{identity} started"),
        on_stopped_leading=lambda: log.append(f"{identity} stopped"),
    )


async def test_rounds_only_one_holder_and_takeover_after_expiry(client: AsyncClient, clock: FakeClock) -> None:
    a, b = elector(client, clock, "a", []), elector(client, clock, "b", [])
    assert await a.try_acquire_or_renew()  # creates the Lease
    assert not await b.try_acquire_or_renew()
    lease = await client.get(Lease, "my-controller", NS)
    assert lease.spec.holder_identity == "a"
    assert lease.spec.lease_transitions == 0

    clock.advance(10)
    assert await a.try_acquire_or_renew()  # renew
    clock.advance(10)
    assert not await b.try_acquire_or_renew(), "renewed 10s ago: not expired for b"
    clock.advance(14)
    assert not await b.try_acquire_or_renew(), "b first saw this renewal 14s ago"
    clock.advance(1)
    assert await b.try_acquire_or_renew(), "15s without a renewal: b takes over"
    lease = await client.get(Lease, "my-controller", NS)
    assert lease.spec.holder_identity == "b"
    assert lease.spec.lease_transitions == 1
    assert lease.spec.acquire_time == clock.now()
    assert not await a.try_acquire_or_renew(), "the old leader cannot renew a lease it lost"


async def test_concurrent_acquire_has_one_winner(client: AsyncClient, clock: FakeClock) -> None:
    electors = [elector(client, clock, f"c{i}", []) for i in range(5)]
    results = await asyncio.gather(*(e.try_acquire_or_renew() for e in electors))
    assert sum(results) == 1
    # Expired: again exactly one of the rest wins, thanks to the resourceVersion CAS.
    for e in electors:
        await e.try_acquire_or_renew()
    clock.advance(16)
    results = await asyncio.gather(*(e.try_acquire_or_renew() for e in electors))
    assert sum(results) == 1


async def test_run_loops_leader_stops_renewing_other_takes_over(client: AsyncClient, clock: FakeClock) -> None:
    log: list[str] = []
    a, b = elector(client, clock, "a", log), elector(client, clock, "b", log)
    ta = asyncio.ensure_future(a.run())
    await clock.advance_and_settle(0.1)
    tb = asyncio.ensure_future(b.run())
    try:
        await clock.advance_and_settle(30, step=1)
        assert (a.is_leader, b.is_leader) == (True, False)
        assert log == ["a started"]

        # The leader dies without releasing (a crash): cancel it with release disabled.
        a.release_on_cancel = False
        log.clear()
        ta.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ta
        await clock.advance_and_settle(14, step=1)
        assert not b.is_leader, "the lease has not expired yet"
        await clock.advance_and_settle(4, step=1)
        assert b.is_leader
        assert log == ["a stopped", "b started"]
    finally:
        for t in (ta, tb):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def test_clean_stop_releases_for_a_fast_handover(client: AsyncClient, clock: FakeClock) -> None:
    a, b = elector(client, clock, "a", []), elector(client, clock, "b", [])
    ta = asyncio.ensure_future(a.run())
    await clock.advance_and_settle(1, step=1)
    assert a.is_leader
    ta.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await ta
    assert (await client.get(Lease, "my-controller", NS)).spec.holder_identity is None
    assert await b.try_acquire_or_renew(), "a released lease is free at once"


async def test_leader_steps_down_when_renewals_fail(client: AsyncClient, clock: FakeClock) -> None:
    log: list[str] = []
    a = elector(client, clock, "a", log)
    ta = asyncio.ensure_future(a.run())
    try:
        await clock.advance_and_settle(1, step=1)
        assert a.is_leader

        async def broken(*args: object, **kwargs: object) -> None:
            raise ConnectionError("api server unreachable")

        a.writer = type("Broken", (), {"get": broken, "update": broken, "create": broken})()  # type: ignore[assignment]
        await clock.advance_and_settle(8, step=1)
        assert a.is_leader, "still inside the renew deadline"
        await clock.advance_and_settle(4, step=1)
        assert not a.is_leader
        assert log == ["a started", "a stopped"]
    finally:
        ta.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ta


def test_timing_must_be_ordered(client: AsyncClient) -> None:
    with pytest.raises(ValueError, match="retry_period < renew_deadline < lease_duration"):
        LeaderElector(client, "x", NS, "a", lease_duration=5, renew_deadline=10, retry_period=2)
