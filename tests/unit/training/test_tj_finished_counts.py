"""Replica counts of a finished job stay true: the Master's success ends the job while workers
may still be finishing; they are counted as they end (cleanPodPolicy None), or settled at the
verdict when cleanPodPolicy stops them (Running/All)."""

from __future__ import annotations

import pytest
from tj_harness import Env, drive, make_job, pods_of, run_all, set_phase, start_gang, tj

from kray.crds.training import TrainingJob

Counts = dict[str, tuple[int, int, int]]


def counts(job: TrainingJob) -> Counts:
    statuses = (job.status.replica_statuses if job.status else None) or {}
    return {t: (r.active, r.succeeded, r.failed) for t, r in statuses.items()}


async def test_workers_finishing_after_the_master_are_counted(env: Env) -> None:
    manager, client, _ = env
    await client.create(make_job("late", cleanPodPolicy="None"))
    await start_gang(manager, client, "late")
    await run_all(manager, client, "late")
    await set_phase(client, "late-master-0", "Succeeded", exit_code=0)

    async def succeeded() -> bool:
        return (await tj(client, "late")).finished() == "Succeeded"

    await drive(manager, succeeded)
    assert counts(await tj(client, "late")) == {"Master": (0, 1, 0), "Worker": (2, 0, 0)}
    await set_phase(client, "late-worker-0", "Succeeded", exit_code=0)
    await set_phase(client, "late-worker-1", "Failed", exit_code=1)  # after the verdict: no restart

    async def counted() -> bool:
        return counts(await tj(client, "late")) == {"Master": (0, 1, 0), "Worker": (0, 1, 1)}

    await drive(manager, counted)
    job = await tj(client, "late")
    assert job.finished() == "Succeeded" and job.status is not None and job.status.restarts == 0


@pytest.mark.parametrize("policy", ["Running", "All"])
async def test_ranks_stopped_by_clean_pod_policy_are_settled(env: Env, policy: str) -> None:
    manager, client, _ = env
    await client.create(make_job("stop", cleanPodPolicy=policy))
    await start_gang(manager, client, "stop")
    await run_all(manager, client, "stop")
    await set_phase(client, "stop-master-0", "Succeeded", exit_code=0)

    async def cleaned() -> bool:
        return (await tj(client, "stop")).finished() == "Succeeded" and "stop-worker-0" not in await pods_of(
            client, "stop"
        )

    await drive(manager, cleaned)
    for _ in range(5):  # and later passes, with the workers gone, leave the counts alone
        await manager.step()
    assert counts(await tj(client, "stop")) == {"Master": (0, 1, 0), "Worker": (0, 2, 0)}


async def test_a_failed_job_stops_counting_the_ranks_it_stopped(env: Env) -> None:
    manager, client, _ = env
    await client.create(make_job("fail", backoffLimit=0))
    await start_gang(manager, client, "fail")
    await run_all(manager, client, "fail")
    await set_phase(client, "fail-worker-1", "Failed", exit_code=2)

    async def failed() -> bool:
        return (await tj(client, "fail")).finished() == "Failed"

    await drive(manager, failed)
    assert counts(await tj(client, "fail")) == {"Master": (0, 0, 0), "Worker": (0, 0, 1)}
