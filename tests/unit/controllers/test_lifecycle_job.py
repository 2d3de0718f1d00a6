"""The Job controller on the in-memory cluster, driven by step() with a FakeClock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.controllers import job as jobctl
from kray.actors.framework import EventRecorder, FakeClock, Manager, StoreListWatcher
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient
from kray.crds import Event, Pod
from kray.crds.batch import COMPLETION_INDEX, Job
from kray.crds.registry import REGISTRY

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
NS = "default"


@pytest.fixture
async def env() -> AsyncIterator[tuple[Manager, AsyncClient, FakeClock]]:
    kv = MemoryKV()
    store = ObjectStore(kv, REGISTRY)
    api = ApiServer(store, REGISTRY, token="t", clock=lambda: NOW)
    await api.start()
    clock = FakeClock(NOW)
    transport = httpx.ASGITransport(app=api.app)
    async with AsyncClient(server="http://kray.test", token="t", transport=transport) as client:
        manager = Manager(StoreListWatcher(store), client, clock=clock)
        jobctl.setup(manager)
        # Event names come from the recorder's clock; a FakeClock that stands still would
        # give every event of a pass the same name, so events use the real clock here.
        manager.controllers["job"].reconciler.recorder = EventRecorder(client, "job-controller")  # type: ignore[attr-defined]
        assert await manager.start_informers(2)
        yield manager, client, clock
        await manager.stop()
    await kv.close()


async def drive(manager: Manager, cond: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await cond():
        if loop.time() > deadline:
            raise AssertionError("the controllers did not converge in time")
        await manager.step()
        await asyncio.sleep(0.005)


def make_job(name: str, **spec: Any) -> Job:
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}
    return Job.model_validate({"metadata": {"name": name, "namespace": NS}, "spec": {"template": template, **spec}})


async def pods_of(client: AsyncClient, job: str) -> list[Pod]:
    items = (await client.list(Pod, NS, label_selector=f"batch.kubernetes.io/job-name={job}")).items
    return [p for p in items if p.metadata.deletion_timestamp is None]


async def live(client: AsyncClient, job: str) -> list[Pod]:
    return [p for p in await pods_of(client, job) if p.status is None or p.status.phase not in ("Succeeded", "Failed")]


async def finish(client: AsyncClient, pod: Pod, phase: str, exit_code: int = 0) -> None:
    pod = await client.get(Pod, pod.name, NS)
    code = 0 if phase == "Succeeded" else exit_code
    status = {
        "phase": phase,
        "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": code}}}],
    }
    await client.patch(Pod, pod.name, {"status": status}, NS, subresource="status")


async def job_status(client: AsyncClient, name: str) -> Any:
    return (await client.get(Job, name, NS)).status


def cond(status: Any, type_: str) -> tuple[str, str | None] | None:
    c = status.condition(type_) if status else None
    return (c.status, c.reason) if c else None


async def test_job_runs_pods_to_completion(env: tuple[Manager, AsyncClient, FakeClock]) -> None:
    manager, client, _ = env
    await client.create(make_job("pi", parallelism=2, completions=3))

    async def two_running() -> bool:
        return len(await live(client, "pi")) == 2

    await drive(manager, two_running)
    for pod in await live(client, "pi"):
        assert pod.metadata.owner_references and pod.metadata.owner_references[0].kind == "Job"
        await finish(client, pod, "Succeeded")

    async def third() -> bool:  # only one completion is left: one more pod, not two
        s = await job_status(client, "pi")
        return len(await live(client, "pi")) == 1 and s is not None and s.succeeded == 2

    await drive(manager, third)
    (last,) = await live(client, "pi")
    await finish(client, last, "Succeeded")

    async def complete() -> bool:
        return cond(await job_status(client, "pi"), "Complete") == ("True", "CompletionsReached")

    await drive(manager, complete)
    status = await job_status(client, "pi")
    assert (status.succeeded, status.active, status.failed or 0) == (3, 0, 0)
    assert status.completion_time is not None and status.start_time is not None
    reasons = [e.reason for e in (await client.list(Event, NS)).items]
    assert reasons.count("SuccessfulCreate") == 3 and "Completed" in reasons


async def test_backoff_limit_fails_the_job(env: tuple[Manager, AsyncClient, FakeClock]) -> None:
    manager, client, _ = env
    await client.create(make_job("flaky", backoffLimit=1))
    for attempt in range(2):

        async def running(n: int = attempt) -> bool:
            return len(await live(client, "flaky")) == 1 and len(await pods_of(client, "flaky")) == n + 1

        await drive(manager, running)
        (pod,) = await live(client, "flaky")
        await finish(client, pod, "Failed", exit_code=1)

    async def failed() -> bool:
        return cond(await job_status(client, "flaky"), "Failed") == ("True", "BackoffLimitExceeded")

    await drive(manager, failed)
    assert (await job_status(client, "flaky")).failed == 2
    assert await live(client, "flaky") == []
    assert "BackoffLimitExceeded" in [e.reason for e in (await client.list(Event, NS)).items]


async def test_active_deadline(env: tuple[Manager, AsyncClient, FakeClock]) -> None:
    manager, client, clock = env
    await client.create(make_job("slow", activeDeadlineSeconds=30, parallelism=2))

    async def running() -> bool:
        return len(await live(client, "slow")) == 2

    await drive(manager, running)
    clock.advance(31)

    async def failed() -> bool:
        return cond(await job_status(client, "slow"), "Failed") == ("True", "DeadlineExceeded")

    await drive(manager, failed)
    assert await live(client, "slow") == []


async def test_indexed_job(env: tuple[Manager, AsyncClient, FakeClock]) -> None:
    manager, client, _ = env
    await client.create(make_job("idx", completionMode="Indexed", completions=3, parallelism=3))

    async def three() -> bool:
        return len(await live(client, "idx")) == 3

    await drive(manager, three)
    pods = {int((p.metadata.annotations or {})[COMPLETION_INDEX]): p for p in await live(client, "idx")}
    assert sorted(pods) == [0, 1, 2]
    for i, pod in pods.items():
        assert (pod.metadata.labels or {})[COMPLETION_INDEX] == str(i)
        assert pod.spec.hostname == f"idx-{i}"
        env_vars = {e.name: e.value for e in pod.spec.containers[0].env or []}
        assert env_vars["JOB_COMPLETION_INDEX"] == str(i)
    # Index 1 fails: it is retried with the same index; 0 and 2 succeed.
    await finish(client, pods[0], "Succeeded")
    await finish(client, pods[2], "Succeeded")
    await finish(client, pods[1], "Failed", exit_code=3)

    async def retried() -> bool:
        running = await live(client, "idx")
        s = await job_status(client, "idx")
        return (
            len(running) == 1
            and (running[0].metadata.annotations or {})[COMPLETION_INDEX] == "1"
            and s is not None
            and s.completed_indexes == "0,2"
        )

    await drive(manager, retried)
    (again,) = await live(client, "idx")
    await finish(client, again, "Succeeded")

    async def complete() -> bool:
        s = await job_status(client, "idx")
        return cond(s, "Complete") is not None and s.completed_indexes == "0-2"

    await drive(manager, complete)
    assert (await job_status(client, "idx")).failed == 1


async def test_pod_failure_policy(env: tuple[Manager, AsyncClient, FakeClock]) -> None:
    manager, client, _ = env
    policy = {
        "rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [137]}},
        ]
    }
    await client.create(make_job("pfp", backoffLimit=0, podFailurePolicy=policy))

    async def one() -> bool:
        return len(await live(client, "pfp")) == 1

    await drive(manager, one)
    (pod,) = await live(client, "pfp")
    await finish(client, pod, "Failed", exit_code=137)  # ignored: not counted against backoffLimit=0

    async def replaced() -> bool:
        return len(await live(client, "pfp")) == 1 and len(await pods_of(client, "pfp")) == 2

    await drive(manager, replaced)
    assert cond(await job_status(client, "pfp"), "Failed") is None
    (pod,) = await live(client, "pfp")
    await finish(client, pod, "Failed", exit_code=42)

    async def failed() -> bool:
        return cond(await job_status(client, "pfp"), "Failed") == ("True", "PodFailurePolicy")

    await drive(manager, failed)


async def test_suspend_and_resume(env: tuple[Manager, AsyncClient, FakeClock]) -> None:
    manager, client, _ = env
    await client.create(make_job("sus", parallelism=2, completions=4))

    async def two() -> bool:
        return len(await live(client, "sus")) == 2

    await drive(manager, two)
    await client.patch(Job, "sus", {"spec": {"suspend": True}}, NS)

    async def suspended() -> bool:
        s = await job_status(client, "sus")
        return cond(s, "Suspended") == ("True", "JobSuspended") and not await live(client, "sus") and s.active == 0

    await drive(manager, suspended)
    assert (await job_status(client, "sus")).start_time is None
    await client.patch(Job, "sus", {"spec": {"suspend": False}}, NS)

    async def resumed() -> bool:
        s = await job_status(client, "sus")
        return cond(s, "Suspended") == ("False", "JobResumed") and len(await live(client, "sus")) == 2

    await drive(manager, resumed)


async def test_ttl_after_finished_deletes_the_job(env: tuple[Manager, AsyncClient, FakeClock]) -> None:
    manager, client, clock = env
    await client.create(make_job("ttl", ttlSecondsAfterFinished=60))

    async def one() -> bool:
        return len(await live(client, "ttl")) == 1

    await drive(manager, one)
    (pod,) = await live(client, "ttl")
    await finish(client, pod, "Succeeded")

    async def complete() -> bool:
        return cond(await job_status(client, "ttl"), "Complete") is not None

    await drive(manager, complete)
    clock.advance(61)

    async def gone() -> bool:
        return not [j for j in (await client.list(Job, NS)).items if j.name == "ttl"]

    await drive(manager, gone)


def test_job_validation() -> None:
    from kray.crds.validation import ValidationFailed, validate_object

    bad = make_job("x").to_dict()
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(ValidationFailed):
        validate_object(Job, bad)
    indexed = make_job("y").to_dict()
    indexed["spec"]["completionMode"] = "Indexed"
    with pytest.raises(ValidationFailed):
        validate_object(Job, indexed)
    assert make_job("z").spec.backoff_limit == 6
