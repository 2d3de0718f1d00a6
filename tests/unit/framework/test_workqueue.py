"""WorkQueue: client-go semantics (dedupe, processing set, delays, back-off, shutdown)."""

from __future__ import annotations

import asyncio

import pytest

from kray.actors.framework import ExponentialBackoff, FakeClock, ShutDown, WorkQueue


def test_adding_a_queued_key_is_a_noop() -> None:
    q: WorkQueue[str] = WorkQueue(clock=FakeClock())
    for key in ["a", "b", "a", "a", "c", "b"]:
        q.add(key)
    assert len(q) == 3
    assert q.drain_ready() == ["a", "b", "c"]


def test_key_added_while_processing_is_requeued_on_done_not_before() -> None:
    q: WorkQueue[str] = WorkQueue(clock=FakeClock())
    q.add("a")
    assert q.get_nowait() == "a"
    q.add("a")  # changed while being processed
    q.add("a")
    assert q.get_nowait() is None, "a key in processing must not be handed out again"
    q.done("a")
    assert q.get_nowait() == "a"
    q.done("a")
    assert q.get_nowait() is None


async def test_never_two_workers_on_one_key() -> None:
    q: WorkQueue[int] = WorkQueue(clock=FakeClock())
    active: set[int] = set()
    overlaps = 0
    handled = 0

    async def worker() -> None:
        nonlocal overlaps, handled
        while True:
            try:
                key = await q.get()
            except ShutDown:
                return
            if key in active:
                overlaps += 1
            active.add(key)
            await asyncio.sleep(0)
            q.add(key % 3)  # re-add keys (often ones being processed) while working
            await asyncio.sleep(0)
            active.discard(key)
            handled += 1
            q.done(key)
            if handled > 200:
                q.shutdown()

    for i in range(10):
        q.add(i % 3)
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(4))), 5)
    assert overlaps == 0
    assert handled > 200


async def test_get_waits_for_add() -> None:
    q: WorkQueue[str] = WorkQueue(clock=FakeClock())
    getter = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)
    assert not getter.done()
    q.add("x")
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_add_after_uses_the_clock_and_keeps_the_earliest_time() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add_after("a", 10)
    q.add_after("a", 20)  # later: ignored
    q.add_after("b", 5)
    assert q.drain_ready() == []
    assert q.waiting() == 2
    clock.advance(5)
    assert q.drain_ready() == ["b"]
    clock.advance(5)
    assert q.drain_ready() == ["a"]
    clock.advance(100)
    assert q.drain_ready() == [], "the ignored later add must not fire again"


async def test_blocking_get_wakes_when_a_delayed_key_is_due() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add_after("late", 3)
    getter = asyncio.ensure_future(q.get())
    await clock.advance_and_settle(2)
    assert not getter.done()
    await clock.advance_and_settle(1)
    assert await asyncio.wait_for(getter, 1) == "late"


def test_rate_limited_backoff_grows_and_forget_resets() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock, rate_limiter=ExponentialBackoff(base=1.0, cap=8.0))
    delays = []
    for _ in range(5):
        q.add_rate_limited("k")
        start = clock.monotonic()
        while not q.drain_ready():
            clock.advance(0.5)
        delays.append(clock.monotonic() - start)
        q.done("k")
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]  # doubling, capped
    assert q.num_requeues("k") == 5
    q.forget("k")
    assert q.num_requeues("k") == 0
    q.add_rate_limited("k")
    clock.advance(1.0)
    assert q.drain_ready() == ["k"]


def test_backoff_is_per_key() -> None:
    limiter: ExponentialBackoff[str] = ExponentialBackoff(base=0.1, cap=100)
    assert [limiter.when("a") for _ in range(3)] == pytest.approx([0.1, 0.2, 0.4])
    assert limiter.when("b") == pytest.approx(0.1)


async def test_shutdown_wakes_getters_and_ignores_adds() -> None:
    q: WorkQueue[str] = WorkQueue(clock=FakeClock())
    getter = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)
    q.shutdown()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(getter, 1)
    q.add("x")
    assert len(q) == 0
    assert q.shutting_down
