"""The CronJob controller on the in-memory cluster, driven by step() with a FakeClock.

The API server stamps creationTimestamp from the same FakeClock, so "now", the CronJob's
creation and the schedule all live on one fake timeline; nothing sleeps on the wall clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.controllers import cronjob as cronctl
from kray.actors.framework import EventRecorder, FakeClock, Manager, Request, StoreListWatcher
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient
from kray.crds import Event
from kray.crds.batch import CronJob, Job
from kray.crds.registry import REGISTRY

UTC = timezone.utc
NOW = datetime(2024, 1, 1, 0, 0, 30, tzinfo=UTC)  # half a minute past midnight
NS = "default"


class Env:
    def __init__(self, store: ObjectStore, client: AsyncClient, clock: FakeClock) -> None:
        self.store, self.client, self.clock = store, client, clock
        self.manager = self.new_manager()

    def new_manager(self) -> Manager:
        manager = Manager(StoreListWatcher(self.store), self.client, clock=self.clock)
        cronctl.setup(manager)
        # Event names come from the recorder's clock: the real one keeps them unique.
        reconciler = manager.controllers["cronjob"].reconciler
        reconciler.recorder = EventRecorder(self.client, "cronjob-controller")  # type: ignore[attr-defined]
        return manager

    @property
    def reconciler(self) -> cronctl.CronJobReconciler:
        return self.manager.controllers["cronjob"].reconciler  # type: ignore[return-value]

    async def drive(self, cond: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await cond():
            if loop.time() > deadline:
                raise AssertionError("the controller did not converge in time")
            await self.manager.step()
            await asyncio.sleep(0.005)

    async def settle(self, rounds: int = 30) -> None:
        """Let the controller act on everything ready now (for asserting that nothing happens)."""
        for _ in range(rounds):
            await self.manager.step()
            await asyncio.sleep(0.003)

    async def advance_to(self, when: datetime) -> None:
        self.clock.advance((when - self.clock.now()).total_seconds())


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    kv = MemoryKV()
    store = ObjectStore(kv, REGISTRY)
    clock = FakeClock(NOW)
    api = ApiServer(store, REGISTRY, token="t", clock=clock.now)
    await api.start()
    transport = httpx.ASGITransport(app=api.app)
    async with AsyncClient(server="http://kray.test", token="t", transport=transport) as client:
        e = Env(store, client, clock)
        assert await e.manager.start_informers(2)
        yield e
        await e.manager.stop()
    await kv.close()


def make_cronjob(name: str, schedule: str, **spec: Any) -> CronJob:
    template = {
        "metadata": {"labels": {"app": name}, "annotations": {"team": "ml"}},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "busybox"}]}}},
    }
    return CronJob.model_validate(
        {"metadata": {"name": name, "namespace": NS}, "spec": {"schedule": schedule, "jobTemplate": template, **spec}}
    )


def minutes(t: datetime) -> int:
    return int(t.timestamp()) // 60


async def jobs(client: AsyncClient) -> list[Job]:
    items = (await client.list(Job, NS)).items
    return sorted((j for j in items if j.metadata.deletion_timestamp is None), key=lambda j: j.name)


async def job_names(client: AsyncClient) -> list[str]:
    return [j.name for j in await jobs(client)]


async def status_of(client: AsyncClient, name: str) -> Any:
    return (await client.get(CronJob, name, NS)).status


async def events(client: AsyncClient, reason: str | None = None) -> list[Event]:
    items = (await client.list(Event, NS)).items
    return [e for e in items if reason is None or e.reason == reason]


async def finish(client: AsyncClient, name: str, condition: str, started: datetime, done: datetime) -> None:
    status: dict[str, Any] = {
        "conditions": [{"type": condition, "status": "True", "reason": "Test"}],
        "startTime": started.isoformat(),
    }
    if condition == "Complete":
        status["completionTime"] = done.isoformat()
    await client.patch(Job, name, {"status": status}, NS, subresource="status")


def has(names: list[str]) -> Callable[[Env], Callable[[], Awaitable[bool]]]:
    def build(env: Env) -> Callable[[], Awaitable[bool]]:
        async def cond() -> bool:
            return await job_names(env.client) == names

        return cond

    return build


async def wait_jobs(env: Env, names: list[str]) -> None:
    await env.drive(has(names)(env))


async def test_creates_jobs_at_the_scheduled_times(env: Env) -> None:
    client = env.client
    await client.create(make_cronjob("every5", "*/5 * * * *"))
    await env.settle()
    assert await job_names(client) == []  # 00:00:30: nothing is due before 00:05
    # Just before the time, still nothing.
    await env.advance_to(datetime(2024, 1, 1, 0, 4, 59, tzinfo=UTC))
    await env.settle()
    assert await job_names(client) == []
    first = datetime(2024, 1, 1, 0, 5, tzinfo=UTC)
    await env.advance_to(first + timedelta(seconds=0.2))  # the wake-up is 100ms after the time
    await wait_jobs(env, [f"every5-{minutes(first)}"])
    assert minutes(first) == 28401125

    (job,) = await jobs(client)
    assert job.metadata.labels == {"app": "every5"}
    assert job.metadata.annotations == {
        "team": "ml",
        "batch.kubernetes.io/cronjob-scheduled-timestamp": "2024-01-01T00:05:00Z",
    }
    (owner,) = job.metadata.owner_references or []
    cj = await client.get(CronJob, "every5", NS)
    assert (owner.kind, owner.name, owner.uid, owner.controller) == ("CronJob", "every5", cj.metadata.uid, True)
    assert job.spec.template.spec.containers[0].image == "busybox"
    status = await status_of(client, "every5")
    assert [(r.kind, r.name, r.uid) for r in status.active] == [("Job", job.name, job.metadata.uid)]
    assert status.last_schedule_time == first
    assert [e.message for e in await events(client, "SuccessfulCreate")] == [f"Created job {job.name}"]

    second = datetime(2024, 1, 1, 0, 10, tzinfo=UTC)
    await env.advance_to(second + timedelta(seconds=0.2))
    await wait_jobs(env, sorted([job.name, f"every5-{minutes(second)}"]))  # Allow: both run
    assert (await status_of(client, "every5")).last_schedule_time == second


async def test_requeue_after_is_the_time_to_the_next_run(env: Env) -> None:
    client = env.client
    await client.create(make_cronjob("tokyo", "0 9 * * *", timeZone="Asia/Tokyo"))
    await env.settle()
    request = Request(NS, "tokyo")
    # 09:00 in Tokyo is 00:00 UTC: the next one is 2024-01-02 00:00 UTC, from 00:00:30.
    result = await env.reconciler.reconcile(request)
    assert result.requeue_after == pytest.approx(24 * 3600 - 30 + 0.1)
    await env.advance_to(datetime(2024, 1, 1, 13, 15, tzinfo=UTC))
    result = await env.reconciler.reconcile(request)
    assert result.requeue_after == pytest.approx((10 * 3600 + 45 * 60) + 0.1)
    # At the time: a Job, stamped in the CronJob's zone, and a wake-up a day later.
    await env.advance_to(datetime(2024, 1, 2, 0, 0, 1, tzinfo=UTC))
    result = await env.reconciler.reconcile(request)
    assert result.requeue_after == pytest.approx(24 * 3600 - 1 + 0.1)
    (job,) = await jobs(client)
    assert (job.metadata.annotations or {})["batch.kubernetes.io/cronjob-scheduled-timestamp"] == (
        "2024-01-02T09:00:00+09:00"
    )


async def test_no_duplicate_after_a_restart(env: Env) -> None:
    client = env.client
    await client.create(make_cronjob("once", "* * * * *"))
    due = datetime(2024, 1, 1, 0, 1, tzinfo=UTC)
    await env.advance_to(due + timedelta(seconds=1))
    await wait_jobs(env, [f"once-{minutes(due)}"])
    # The controller "crashed" before its status write landed: status is empty again.
    cj = await client.get(CronJob, "once", NS)
    cj.status = None
    await client.update_status(cj)
    await env.manager.stop()
    env.manager = env.new_manager()
    assert await env.manager.start_informers(2)

    async def adopted() -> bool:
        s = await status_of(client, "once")
        return s is not None and s.last_schedule_time == due and len(s.active or []) == 1

    await env.drive(adopted)
    assert await job_names(client) == [f"once-{minutes(due)}"]  # one Job, not two
    assert len(await events(client, "SuccessfulCreate")) == 1
    assert [e.message for e in await events(client, "UnexpectedJob")] == [
        f"Saw a job that the controller did not create or forgot: once-{minutes(due)}"
    ]


async def test_forbid_skips_while_a_job_is_active(env: Env) -> None:
    client = env.client
    await client.create(make_cronjob("solo", "* * * * *", concurrencyPolicy="Forbid"))
    t1 = datetime(2024, 1, 1, 0, 1, tzinfo=UTC)
    await env.advance_to(t1 + timedelta(seconds=1))
    await wait_jobs(env, [f"solo-{minutes(t1)}"])
    t2 = t1 + timedelta(minutes=1)
    await env.advance_to(t2 + timedelta(seconds=1))

    async def refused() -> bool:
        return bool(await events(client, "JobAlreadyActive"))

    await env.drive(refused)
    await env.settle()
    assert await job_names(client) == [f"solo-{minutes(t1)}"]
    # Once it finishes, the next scheduled time starts one.
    await finish(client, f"solo-{minutes(t1)}", "Complete", t1, t2)
    t3 = t2 + timedelta(minutes=1)
    await env.advance_to(t3 + timedelta(seconds=1))
    await wait_jobs(env, [f"solo-{minutes(t1)}", f"solo-{minutes(t3)}"])


async def test_replace_deletes_the_active_job_first(env: Env) -> None:
    client = env.client
    await client.create(make_cronjob("fresh", "* * * * *", concurrencyPolicy="Replace"))
    t1 = datetime(2024, 1, 1, 0, 1, tzinfo=UTC)
    await env.advance_to(t1 + timedelta(seconds=1))
    await wait_jobs(env, [f"fresh-{minutes(t1)}"])
    t2 = t1 + timedelta(minutes=1)
    await env.advance_to(t2 + timedelta(seconds=1))
    await wait_jobs(env, [f"fresh-{minutes(t2)}"])
    status = await status_of(client, "fresh")
    assert [r.name for r in status.active] == [f"fresh-{minutes(t2)}"]
    assert [e.message for e in await events(client, "SuccessfulDelete")] == [f"Deleted job fresh-{minutes(t1)}"]


async def test_allow_runs_jobs_concurrently(env: Env) -> None:
    client = env.client
    await client.create(make_cronjob("many", "* * * * *"))
    times = [datetime(2024, 1, 1, 0, m, tzinfo=UTC) for m in (1, 2, 3)]
    for t in times:
        await env.advance_to(t + timedelta(seconds=1))
        await env.drive(lambda t=t: _scheduled(client, "many", t))  # type: ignore[misc]
    assert await job_names(client) == [f"many-{minutes(t)}" for t in times]
    assert len((await status_of(client, "many")).active) == 3


async def _scheduled(client: AsyncClient, name: str, t: datetime) -> bool:
    s = await status_of(client, name)
    return s is not None and s.last_schedule_time == t


async def test_suspend_then_resume(env: Env) -> None:
    client = env.client
    await client.create(make_cronjob("paused", "*/10 * * * *", suspend=True))
    await env.advance_to(datetime(2024, 1, 1, 0, 35, tzinfo=UTC))
    await env.settle()
    assert await job_names(client) == []
    cj = await client.get(CronJob, "paused", NS)
    cj.spec.suspend = False
    await client.update(cj)
    # Resumed: the most recent missed time (00:30) starts, the earlier ones do not.
    await wait_jobs(env, [f"paused-{minutes(datetime(2024, 1, 1, 0, 30, tzinfo=UTC))}"])


async def test_starting_deadline_skips_late_starts(env: Env) -> None:
    client = env.client
    await client.create(make_cronjob("strict", "*/10 * * * *", startingDeadlineSeconds=30))
    # The controller only looks again 2 minutes after 00:10: too late for it.
    missed = datetime(2024, 1, 1, 0, 10, tzinfo=UTC)
    env.clock.advance((missed - NOW).total_seconds() + 120)  # the queued wake-up fires late

    async def missed_event() -> bool:
        return bool(await events(client, "MissSchedule"))

    await env.drive(missed_event)
    (event,) = await events(client, "MissSchedule")
    assert event.message == "Missed scheduled time to start a job: Mon, 01 Jan 2024 00:10:00 +0000"
    assert event.type == "Warning"
    assert await job_names(client) == []
    # The next one, on time, starts.
    on_time = datetime(2024, 1, 1, 0, 20, 10, tzinfo=UTC)
    await env.advance_to(on_time)
    await wait_jobs(env, [f"strict-{minutes(on_time)}"])


async def test_too_many_missed_start_times(env: Env) -> None:
    client = env.client
    await client.create(make_cronjob("behind", "* * * * *"))
    await env.settle()
    env.clock.advance(200 * 60)  # 200 missed minutes
    latest = datetime(2024, 1, 1, 3, 20, tzinfo=UTC)

    async def one() -> bool:
        return await job_names(client) == [f"behind-{minutes(latest)}"]

    await env.drive(one)
    assert [e.type for e in await events(client, "TooManyMissedTimes")] == ["Warning"]


async def test_history_limits_and_status(env: Env) -> None:
    client = env.client
    await client.create(make_cronjob("hist", "* * * * *", successfulJobsHistoryLimit=1, failedJobsHistoryLimit=1))
    times = [datetime(2024, 1, 1, 0, m, tzinfo=UTC) for m in (1, 2, 3, 4, 5)]
    names = [f"hist-{minutes(t)}" for t in times]
    for t in times:
        await env.advance_to(t + timedelta(seconds=1))
        await env.drive(lambda t=t: _scheduled(client, "hist", t))  # type: ignore[misc]
    # 1-3 succeed (finishing in reverse order), 4 and 5 fail.
    for i, name in enumerate(names[:3]):
        await finish(client, name, "Complete", times[i], times[4] + timedelta(seconds=30 - i))
    await finish(client, names[3], "Failed", times[3], times[4])
    await finish(client, names[4], "Failed", times[4], times[4])

    async def pruned() -> bool:
        s = await status_of(client, "hist")
        return await job_names(client) == [names[2], names[4]] and not s.active

    await env.drive(pruned)
    status = await status_of(client, "hist")
    # lastSuccessfulTime is the latest completion, of any succeeded Job (the deleted ones too).
    assert status.last_successful_time == times[4] + timedelta(seconds=30)
    deleted = [e.message for e in await events(client, "SuccessfulDelete")]
    assert sorted(deleted) == sorted(f"Deleted job {n}" for n in (names[0], names[1], names[3]))
    saw = [e.message for e in await events(client, "SawCompletedJob")]
    assert f"Saw completed job: {names[4]}, condition: Failed" in saw
    assert f"Saw completed job: {names[2]}, condition: Complete" in saw


async def test_oldest_finished_jobs_go_first(env: Env) -> None:
    client = env.client
    await client.create(make_cronjob("order", "* * * * *", successfulJobsHistoryLimit=2))
    times = [datetime(2024, 1, 1, 0, m, tzinfo=UTC) for m in (1, 2, 3)]
    names = [f"order-{minutes(t)}" for t in times]
    for t in times:
        await env.advance_to(t + timedelta(seconds=1))
        await env.drive(lambda t=t: _scheduled(client, "order", t))  # type: ignore[misc]
    # Started in the order 2, 0, 1: job 2 is the oldest by startTime and goes.
    starts = [times[0] + timedelta(seconds=20), times[0] + timedelta(seconds=30), times[0]]
    for name, start in zip(names, starts, strict=True):
        await finish(client, name, "Complete", start, times[2])
    await wait_jobs(env, [names[0], names[1]])


async def test_missing_active_job_leaves_status(env: Env) -> None:
    client = env.client
    await client.create(make_cronjob("gone", "0 * * * *"))
    due = datetime(2024, 1, 1, 1, 0, tzinfo=UTC)
    await env.advance_to(due + timedelta(seconds=1))
    await wait_jobs(env, [f"gone-{minutes(due)}"])
    await client.delete(Job, f"gone-{minutes(due)}", NS)

    async def cleared() -> bool:
        s = await status_of(client, "gone")
        return not s.active and s.last_schedule_time == due

    await env.drive(cleared)
    assert [e.message for e in await events(client, "MissingJob")] == [f"Active job went missing: gone-{minutes(due)}"]
