"""When a rank dies the rest of its gang fail right after it (their collectives lose a peer):
the restart (or the failure) must name the rank that caused it, not whichever sorts first."""

from __future__ import annotations

from typing import Any

from tj_harness import NS, Env, drive, make_job, run_all, start_gang, tj

from kray.actors.controllers.trainingjob_pods import first_failed
from kray.client import AsyncClient
from kray.crds import Pod
from kray.crds.training import TrainingJob


async def failed(client: AsyncClient, pod: str, code: int, finished_at: str) -> None:
    term = {"exitCode": code, "reason": "Error", "finishedAt": finished_at}
    status: dict[str, Any] = {
        "phase": "Failed",
        "containerStatuses": [{"name": "pytorch", "state": {"terminated": term}}],
    }
    await client.patch(Pod, pod, {"status": status}, NS, subresource="status")


async def restart_message(client: AsyncClient, job: str) -> str:
    got = await tj(client, job)
    restarting = got.status.condition("Restarting") if got.status else None
    return (restarting.message or "") if restarting is not None and restarting.status == "True" else ""


async def test_the_killed_worker_is_named_not_the_master_that_lost_it(env: Env) -> None:
    manager, client, _ = env
    await client.create(make_job("cause"))
    await start_gang(manager, client, "cause")
    await run_all(manager, client, "cause")
    # Same second (the kubelet's precision): the master's error came from losing worker 1.
    await failed(client, "cause-master-0", 1, "2024-01-01T00:01:00Z")
    await failed(client, "cause-worker-1", 137, "2024-01-01T00:01:00Z")

    async def restarted() -> bool:
        return bool(await restart_message(client, "cause"))

    await drive(manager, restarted)
    message = await restart_message(client, "cause")
    assert message.startswith("Worker 1 (pod cause-worker-1) failed with exit code 137"), message


def test_the_earliest_failure_wins_then_a_signal_then_the_name() -> None:
    job = make_job("j")
    ts = "2024-01-01T00:00:0{}Z"

    def pod(name: str, code: int, second: int | None) -> Pod:
        term: dict[str, Any] = {"exitCode": code}
        if second is not None:
            term["finishedAt"] = ts.format(second)
        labels = {"kray.io/replica-type": name.split("-")[1], "kray.io/replica-index": name.rsplit("-", 1)[1]}
        return Pod.model_validate(
            {
                "metadata": {"name": name, "namespace": NS, "labels": labels},
                "spec": {"containers": [{"name": "pytorch", "image": "x"}]},
                "status": {
                    "phase": "Failed",
                    "containerStatuses": [{"name": "pytorch", "state": {"terminated": term}}],
                },
            }
        )

    def cause(*pods: Pod) -> str:
        assert isinstance(job, TrainingJob)
        return first_failed(job, list(pods)).name

    assert cause(pod("j-master-0", 137, 5), pod("j-worker-0", 1, 3)) == "j-worker-0"  # earlier, even if not signalled
    assert cause(pod("j-master-0", 1, 3), pod("j-worker-0", 137, 3)) == "j-worker-0"  # same second: the signal
    assert cause(pod("j-worker-1", 1, 3), pod("j-worker-0", 1, 3)) == "j-worker-0"  # else by name
    assert cause(pod("j-master-0", 1, None), pod("j-worker-0", 2, 4)) == "j-worker-0"  # no time sorts last
