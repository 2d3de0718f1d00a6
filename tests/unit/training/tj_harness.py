"""The TrainingJob operator's test bed: an in-memory API server, a Manager running the operator
and the garbage collector, driven by step() with a FakeClock (the env fixture is in conftest.py).

No kubelet runs here: tests play it by patching pod status (phase, podIP, exit codes,
scheduling conditions).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import kray.crds  # noqa: F401  (registers the built-in kinds, TrainingJob included)
from kray.api import FakeClock, Manager
from kray.client import AsyncClient, NotFound
from kray.crds import Pod
from kray.crds.training import TrainingJob

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
NS = "default"
Env = tuple[Manager, AsyncClient, FakeClock]


async def drive(manager: Manager, cond: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await cond():
        if loop.time() > deadline:
            raise AssertionError("the operator did not converge in time")
        await manager.step()
        await asyncio.sleep(0.005)


def make_job(name: str, workers: int = 2, *, worker_policy: str = "OnFailure", **run_policy: Any) -> TrainingJob:
    def replica(n: int, policy: str = "OnFailure") -> dict[str, Any]:
        container = {
            "name": "pytorch",
            "image": "host",
            "command": ["python3", "/opt/train/train.py"],
            "env": [{"name": "RANK", "value": "99"}, {"name": "EPOCHS", "value": "3"}],
        }
        return {"replicas": n, "restartPolicy": policy, "template": {"spec": {"containers": [container]}}}

    spec = {
        "replicaSpecs": {"Master": replica(1), "Worker": replica(workers, worker_policy)},
        "runPolicy": run_policy,
    }
    return TrainingJob.model_validate({"metadata": {"name": name, "namespace": NS}, "spec": spec})


async def pods_of(client: AsyncClient, job: str) -> dict[str, Pod]:
    items = (await client.list(Pod, NS, label_selector=f"kray.io/job-name={job}")).items
    return {p.name: p for p in items if p.metadata.deletion_timestamp is None}


async def set_phase(client: AsyncClient, name: str, phase: str, *, exit_code: int | None = None, ip: str = "") -> None:
    status: dict[str, Any] = {"phase": phase}
    if ip:
        status["podIP"] = ip
    if exit_code is not None:
        term = {"exitCode": exit_code, "reason": "Error" if exit_code else "Completed"}
        status["containerStatuses"] = [{"name": "pytorch", "state": {"terminated": term}}]
    await client.patch(Pod, name, {"status": status}, NS, subresource="status")


async def tj(client: AsyncClient, name: str) -> TrainingJob:
    return await client.get(TrainingJob, name, NS)


def cond(job: TrainingJob, type_: str) -> tuple[str, str | None] | None:
    c = job.status.condition(type_) if job.status else None
    return (c.status, c.reason) if c else None


async def exists(client: AsyncClient, kind: Any, name: str) -> bool:
    try:
        await client.get(kind, name, NS)
        return True
    except NotFound:
        return False


async def start_gang(manager: Manager, client: AsyncClient, name: str, n: int = 3) -> dict[str, Pod]:
    async def all_there() -> bool:
        return len(await pods_of(client, name)) == n

    await drive(manager, all_there)
    return await pods_of(client, name)


async def run_all(manager: Manager, client: AsyncClient, name: str) -> None:
    for i, pod in enumerate(sorted(await pods_of(client, name))):
        await set_phase(client, pod, "Running", ip=f"10.0.0.{i + 10}")

    async def running() -> bool:
        return cond(await tj(client, name), "Running") == ("True", "TrainingJobRunning")

    await drive(manager, running)
