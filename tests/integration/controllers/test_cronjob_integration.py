"""CronJob end to end on etcd and a real API server over HTTP: a ``* * * * *`` schedule whose
minutes pass on an injected FakeClock (the controller's), so no test waits for a real minute."""

# mypy: disable-error-code="union-attr"

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from controllers_it import wait_for

from kray.actors.controllers import cronjob
from kray.actors.framework import ClientListWatcher, FakeClock, Manager
from kray.client import AsyncClient
from kray.config import KrayConfig
from kray.crds import Event, Namespace, ObjectMeta
from kray.crds.batch import CronJob, Job

pytestmark = [pytest.mark.etcd]


@pytest.fixture
async def cluster(config: KrayConfig) -> AsyncIterator[tuple[AsyncClient, FakeClock]]:
    clock = FakeClock(datetime.now(timezone.utc).replace(microsecond=0))
    async with AsyncClient(config) as c:
        manager = Manager(ClientListWatcher(c, timeout_seconds=30), c, clock=clock)
        cronjob.setup(manager)
        task = asyncio.ensure_future(manager.run())
        try:
            yield c, clock
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_every_minute_on_a_fake_clock(cluster: tuple[AsyncClient, FakeClock]) -> None:
    client, clock = cluster
    ns = f"cron-{uuid.uuid4().hex[:8]}"
    await client.create(Namespace(metadata=ObjectMeta(name=ns)))
    template: dict[str, Any] = {
        "metadata": {"labels": {"app": "tick"}},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "x"}]}}},
    }
    spec = {"schedule": "* * * * *", "jobTemplate": template, "successfulJobsHistoryLimit": 1}
    created = await client.create(CronJob.model_validate({"metadata": {"name": "tick", "namespace": ns}, "spec": spec}))
    # The API server stamps creation on the real clock; the schedule counts from there.
    assert created.metadata.creation_timestamp is not None
    floor = created.metadata.creation_timestamp

    async def names() -> list[str]:
        return sorted(j.name for j in (await client.list(Job, ns)).items if j.metadata.deletion_timestamp is None)

    async def advance_to_next_minute() -> datetime:
        now = clock.now()
        due = max(now, floor).replace(second=0, microsecond=0) + timedelta(minutes=1)
        while clock.sleepers == 0:  # the controller is waiting for the next run on our clock
            await asyncio.sleep(0.05)
        clock.advance((due - now).total_seconds() + 1)
        return due

    first = await advance_to_next_minute()
    first_name = f"tick-{int(first.timestamp()) // 60}"

    async def one() -> bool:
        return await names() == [first_name]

    await wait_for(one, "the first Job")
    job = await client.get(Job, first_name, ns)
    assert (job.metadata.labels or {}) == {"app": "tick"}
    stamp = first.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (job.metadata.annotations or {})["batch.kubernetes.io/cronjob-scheduled-timestamp"] == stamp
    assert job.metadata.owner_references[0].kind == "CronJob" and job.metadata.owner_references[0].controller

    async def active() -> bool:
        s = (await client.get(CronJob, "tick", ns)).status
        return s is not None and [r.name for r in s.active or []] == [first_name] and s.last_schedule_time == first

    await wait_for(active, "status.active and lastScheduleTime")

    # The Job completes (as the Job controller would say); the CronJob records it.
    done = first + timedelta(seconds=20)
    status = {
        "conditions": [{"type": "Complete", "status": "True"}],
        "startTime": first.isoformat(),
        "completionTime": done.isoformat(),
    }
    await client.patch(Job, first_name, {"status": status}, ns, subresource="status")

    async def succeeded() -> bool:
        s = (await client.get(CronJob, "tick", ns)).status
        return not s.active and s.last_successful_time == done

    await wait_for(succeeded, "lastSuccessfulTime")

    # The next minute: a second Job; with a history of one, the first stays until the second finishes.
    second = await advance_to_next_minute()
    second_name = f"tick-{int(second.timestamp()) // 60}"

    async def two() -> bool:
        return await names() == sorted([first_name, second_name])

    await wait_for(two, "the second Job")
    status["startTime"], status["completionTime"] = second.isoformat(), (second + timedelta(seconds=5)).isoformat()
    await client.patch(Job, second_name, {"status": status}, ns, subresource="status")

    async def pruned() -> bool:
        return await names() == [second_name]

    await wait_for(pruned, "the older finished Job deleted")
    reasons = [e.reason for e in (await client.list(Event, ns)).items]
    assert reasons.count("SuccessfulCreate") == 2 and "SuccessfulDelete" in reasons and "SawCompletedJob" in reasons
