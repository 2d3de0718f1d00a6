"""Controllers end to end on the in-memory cluster: the sample NamespaceMirror driven by step(),
conflict requeues, Result/exception handling, and the run() loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from kray.actors.framework import (
    Controller,
    ExponentialBackoff,
    FakeClock,
    Manager,
    Request,
    Result,
    StoreListWatcher,
    TerminalError,
)
from kray.actors.framework.sample import CONFIGMAP, LABEL, build, mirror_data
from kray.client import AsyncClient, Conflict, NotFound
from kray.crds import ConfigMap, Event, Namespace, ObjectMeta


async def drive(manager: Manager, cond: Callable[[], Awaitable[bool]], timeout: float = 3.0) -> None:
    """Step the controllers (letting watches deliver in between) until ``cond`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await cond():
        if loop.time() > deadline:
            raise AssertionError("the controllers did not converge in time")
        await manager.step()
        await asyncio.sleep(0.005)


async def configmap(client: AsyncClient, ns: str) -> ConfigMap | None:
    try:
        return await client.get(ConfigMap, CONFIGMAP, ns)
    except NotFound:
        return None


@pytest.fixture
async def manager(lw: StoreListWatcher, client: AsyncClient, clock: FakeClock) -> AsyncIterator[Manager]:
    m = Manager(lw, client, clock=clock)
    build(m)
    assert await m.start_informers(2)
    yield m
    await m.stop()


async def test_sample_controller_end_to_end(manager: Manager, client: AsyncClient, clock: FakeClock) -> None:
    ns = await client.create(Namespace(metadata=ObjectMeta(name="team-a", labels={LABEL: "true", "x": "1"})))
    await client.create(Namespace(metadata=ObjectMeta(name="team-b")))  # not labelled: left alone

    async def mirrored() -> bool:
        cm = await configmap(client, "team-a")
        return cm is not None and cm.data == mirror_data({LABEL: "true", "x": "1"})

    await drive(manager, mirrored)
    cm = await configmap(client, "team-a")
    assert cm is not None
    (ref,) = cm.metadata.owner_references or []
    assert (ref.kind, ref.name, ref.uid, ref.controller) == ("Namespace", "team-a", ns.metadata.uid, True)
    assert await configmap(client, "team-b") is None
    events = (await client.list(Event, "default")).items  # cluster-scoped objects: "default"
    assert [(e.reason, e.involved_object.name) for e in events] == [("MirrorCreated", "team-a")]

    # A label change flows through to the ConfigMap (For: Namespace events).
    await client.patch(Namespace, "team-a", {"metadata": {"labels": {"x": "2"}}})

    async def updated() -> bool:
        cm = await configmap(client, "team-a")
        return cm is not None and (cm.data or {}).get("x") == "2"

    await drive(manager, updated)

    # Someone edits the ConfigMap by hand: Owns maps the change to the Namespace, which repairs it.
    cm = await configmap(client, "team-a")
    assert cm is not None
    cm.data = {"tampered": "yes"}
    await client.update(cm)
    await drive(manager, updated)

    # Unlabel: the ConfigMap goes.
    await client.patch(Namespace, "team-a", {"metadata": {"labels": {LABEL: None}}})

    async def gone() -> bool:
        return await configmap(client, "team-a") is None

    await drive(manager, gone)
    controller = manager.controllers["namespace-mirror"]
    assert controller.errors == 0


async def test_conflict_from_a_stale_cache_requeues_quietly(
    manager: Manager, client: AsyncClient, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    controller = manager.controllers["namespace-mirror"]
    await client.create(Namespace(metadata=ObjectMeta(name="team-c", labels={LABEL: "true"})))

    async def mirrored(data: dict[str, str]) -> bool:
        cm = await configmap(client, "team-c")
        return cm is not None and cm.data == mirror_data(data)

    await drive(manager, lambda: mirrored({LABEL: "true"}))

    # Freeze the ConfigMap cache, then change the ConfigMap behind its back: the controller's
    # next update carries a stale resourceVersion.
    cm_informer = manager.informer_for(ConfigMap)
    await cm_informer.stop()
    live = await configmap(client, "team-c")
    assert live is not None
    live.data = {"edited": "elsewhere"}
    await client.update(live)
    ns = await client.patch(Namespace, "team-c", {"metadata": {"labels": {"y": "1"}}})
    await manager.informer_for(Namespace).wait_for_version(ns.metadata.resource_version or "")

    with caplog.at_level("WARNING"):
        assert await manager.step() == 1
    assert controller.conflicts == 1
    assert controller.errors == 0
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")], "no error log for a 409"
    request = Request(None, "team-c")
    assert controller.queue.num_requeues(request) == 1
    assert controller.queue.waiting() == 1  # back-off, on the injected clock
    assert await manager.step() == 0

    cm_informer.start()
    await cm_informer.wait_for_sync(2)
    clock.advance(1)
    await drive(manager, lambda: mirrored({LABEL: "true", "y": "1"}))
    assert controller.queue.num_requeues(request) == 0, "success forgets the back-off"


class Scripted:
    """Returns (or raises) the next scripted outcome for each call."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[Request] = []

    async def reconcile(self, request: Request) -> Result:
        self.calls.append(request)
        outcome = self.outcomes.pop(0) if self.outcomes else Result()
        if isinstance(outcome, BaseException):
            raise outcome
        assert isinstance(outcome, Result)
        return outcome


async def test_results_and_errors_map_to_queue_actions(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    key = Request("ns", "obj")
    rec = Scripted(
        Result(requeue_after=30),
        RuntimeError("flaky"),
        RuntimeError("flaky"),
        Result(requeue=True),
        Conflict(409, "Conflict", "stale"),
        TerminalError("bad spec"),
    )
    c = Controller("scripted", rec, clock=clock)
    c.queue.rate_limiter = ExponentialBackoff(base=1.0, cap=100.0)
    c.enqueue(key)
    assert await c.step() == 1  # -> requeue_after 30
    assert c.queue.waiting() == 1 and await c.step() == 0
    clock.advance(30)
    assert await c.step() == 1  # -> RuntimeError: back-off 1s
    assert c.queue.num_requeues(key) == 1
    clock.advance(1)
    assert await c.step() == 1  # -> RuntimeError again: back-off 2s
    clock.advance(1)
    assert await c.step() == 0, "the back-off doubled"
    clock.advance(1)
    assert await c.step() == 1  # -> requeue=True: rate limited (4s)
    clock.advance(4)
    assert await c.step() == 1  # -> Conflict: rate limited (8s), not an error
    clock.advance(8)
    with caplog.at_level("ERROR"):
        assert await c.step() == 1  # -> TerminalError: forgotten, not requeued
    assert c.queue.num_requeues(key) == 0
    clock.advance(1000)
    assert await c.step() == 0
    assert (c.errors, c.conflicts, c.reconciles) == (3, 1, 6)
    assert any("terminal" in r.getMessage() for r in caplog.records)


async def test_step_runs_distinct_keys_concurrently_but_never_one_key_twice() -> None:
    running: set[Request] = set()
    peak = 0

    class Slow:
        async def reconcile(self, request: Request) -> Result:
            nonlocal peak
            assert request not in running
            running.add(request)
            peak = max(peak, len(running))
            c.enqueue(request)  # an event arrives mid-reconcile: runs again later, not now
            await asyncio.sleep(0.01)
            running.discard(request)
            return Result()

    c = Controller("slow", Slow(), workers=3, clock=FakeClock())
    for i in range(5):
        c.enqueue(Request("ns", f"o{i}"))
    assert await c.step() == 5
    assert peak == 3
    assert len(c.queue) == 5  # each re-added while processing: queued again on done()


async def test_run_loop_reconciles_in_the_background(lw: StoreListWatcher, client: AsyncClient) -> None:
    manager = Manager(lw, client)  # real clock
    build(manager)
    task = asyncio.ensure_future(manager.run())
    try:
        await client.create(Namespace(metadata=ObjectMeta(name="team-run", labels={LABEL: "true"})))
        for _ in range(300):
            if await configmap(client, "team-run") is not None:
                break
            await asyncio.sleep(0.01)
        assert await configmap(client, "team-run") is not None
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
