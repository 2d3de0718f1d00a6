"""A gang that cannot be scheduled says so on the job: Running False with reason
GangUnschedulable and the scheduler's word for one of the pods, one Warning Event per stall
(not per scheduling retry), and Running True once the gang is placed and runs. The PodGroup's
status (phase, member counts), kept by the PodGroup controller, follows the gang."""

from __future__ import annotations

from tj_harness import NS, Env, cond, drive, make_job, run_all, set_phase, start_gang, tj

from kray.client import AsyncClient
from kray.crds import Event, Pod
from kray.crds.scheduling import PodGroup, PodGroupStatus

INSUFFICIENT = "0/1 nodes are available: 1 Insufficient cpu."
SIBLING = "0/1 nodes are available: sibling {pod} of PodGroup default/{job} is unschedulable."


async def unschedulable(client: AsyncClient, pod: str, message: str) -> None:
    """What the scheduler writes on a pod it could not place."""
    condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
    await client.patch(Pod, pod, {"status": {"phase": "Pending", "conditions": [condition]}}, NS, subresource="status")


async def gang_events(client: AsyncClient) -> list[Event]:
    return [e for e in (await client.list(Event, NS)).items if e.reason == "GangUnschedulable"]


async def message_of(client: AsyncClient, job: str) -> str:
    running = (await tj(client, job)).status.condition("Running")  # type: ignore[union-attr]
    return (running.message or "") if running else ""


async def test_a_stuck_gang_is_reported_once_then_runs(env: Env) -> None:
    manager, client, _ = env
    await client.create(make_job("big"))
    await start_gang(manager, client, "big")

    # Tried before its siblings existed: reported on the condition, no Event (that is routine).
    await unschedulable(client, "big-master-0", "pre-filter pod big-master-0 cannot find enough sibling pods")

    async def one_blocked() -> bool:
        return (await message_of(client, "big")).startswith("1 of 3 pods of the gang cannot be scheduled")

    await drive(manager, one_blocked)
    assert cond(await tj(client, "big"), "Running") == ("False", "GangUnschedulable")
    assert await gang_events(client) == []

    # Every pod rejected: the whole gang is stuck -> one Warning Event naming the first pod.
    await unschedulable(client, "big-master-0", INSUFFICIENT)
    for worker in ("big-worker-0", "big-worker-1"):
        await unschedulable(client, worker, SIBLING.format(pod="big-master-0", job="big"))

    async def all_blocked() -> bool:
        return (await message_of(client, "big")).startswith("3 of 3 pods")

    await drive(manager, all_blocked)
    assert await message_of(client, "big") == (
        f"3 of 3 pods of the gang cannot be scheduled; pod big-master-0: Unschedulable: {INSUFFICIENT}"
    )
    events = await gang_events(client)
    assert len(events) == 1 and events[0].type == "Warning" and INSUFFICIENT in (events[0].message or "")

    # The scheduler retries and words it differently: the condition follows, no new Event.
    await unschedulable(client, "big-master-0", "0/1 nodes are available: 1 Insufficient memory.")

    async def reworded() -> bool:
        return "Insufficient memory" in await message_of(client, "big")

    await drive(manager, reworded)
    assert len(await gang_events(client)) == 1

    # Room appears: all bind and run -> Running True.
    await run_all(manager, client, "big")
    assert cond(await tj(client, "big"), "Running") == ("True", "TrainingJobRunning")


async def test_a_bound_pod_is_never_reported_unschedulable(env: Env) -> None:
    """A stale PodScheduled=False on a pod that has a node (the scheduler bound it after all)."""
    from kray.actors.controllers.trainingjob_pods import unschedulable_reason

    manager, client, _ = env
    await client.create(make_job("bound", workers=0))
    pods = await start_gang(manager, client, "bound", 1)
    pod = pods["bound-master-0"].model_copy(deep=True)
    assert unschedulable_reason(pod) is None  # not tried yet
    await unschedulable(client, "bound-master-0", INSUFFICIENT)
    pod = await client.get(Pod, "bound-master-0", NS)
    assert unschedulable_reason(pod) == f"Unschedulable: {INSUFFICIENT}"
    pod.spec.node_name = "n1"
    assert unschedulable_reason(pod) is None


async def pod_group_phase(client: AsyncClient, name: str) -> tuple[str | None, int, int, int]:
    pg = await client.get(PodGroup, name, NS)
    s = pg.status or PodGroupStatus()
    return s.phase, s.scheduled, s.running, s.succeeded


async def test_the_pod_group_status_follows_the_gang(env: Env) -> None:
    manager, client, _ = env
    await client.create(make_job("pg", cleanPodPolicy="None"))
    await start_gang(manager, client, "pg")

    async def phase_is(want: tuple[str | None, int, int, int]) -> bool:
        return await pod_group_phase(client, "pg") == want

    await drive(manager, lambda: phase_is(("Scheduling", 0, 0, 0)))  # all 3 members exist, none bound
    await run_all(manager, client, "pg")
    await drive(manager, lambda: phase_is(("Running", 0, 3, 0)))  # (the tests bind no pod)
    for name in ("pg-worker-0", "pg-worker-1", "pg-master-0"):
        await set_phase(client, name, "Succeeded", exit_code=0)
    await drive(manager, lambda: phase_is(("Finished", 0, 0, 3)))
