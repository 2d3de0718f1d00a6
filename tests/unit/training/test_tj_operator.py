"""The TrainingJob operator on the in-memory cluster, driven by step() with a FakeClock.

No kubelet runs here: the tests play it by patching pod status (phase, podIP, exit codes).
The garbage collector runs in the same manager to show that deleting a job takes its pods,
Service, PodGroup and ConfigMap with it.
"""

from __future__ import annotations

import pytest
from tj_harness import (
    NOW,
    NS,
    Env,
    cond,
    drive,
    exists,
    make_job,
    pods_of,
    run_all,
    set_phase,
    start_gang,
    tj,
)

from kray.client.errors import ApiError
from kray.crds import ConfigMap, Event, Pod, Service
from kray.crds.scheduling import POD_GROUP_LABEL, PodGroup
from kray.crds.training import ATTEMPT_LABEL, TrainingJob


async def test_creates_service_podgroup_and_pods_with_env(env: Env) -> None:
    manager, client, _ = env
    await client.create(make_job("mnist"))
    pods = await start_gang(manager, client, "mnist")
    job = await tj(client, "mnist")
    assert sorted(pods) == ["mnist-master-0", "mnist-worker-0", "mnist-worker-1"]
    assert cond(job, "Created") == ("True", "TrainingJobCreated")

    svc = await client.get(Service, "mnist", NS)
    pg = await client.get(PodGroup, "mnist", NS)
    cm = await client.get(ConfigMap, "mnist-rendezvous", NS)
    assert svc.spec.cluster_ip == "None" and svc.spec.selector == {"kray.io/job-name": "mnist"}
    assert [p.port for p in svc.spec.ports or []] == [23456]
    assert pg.spec.min_member == 3
    for obj in (svc, pg, cm, *pods.values()):
        (ref,) = obj.metadata.owner_references or []
        assert (ref.kind, ref.name, ref.uid, ref.controller) == ("TrainingJob", "mnist", job.metadata.uid, True)

    expected_rank = {"mnist-master-0": "0", "mnist-worker-0": "1", "mnist-worker-1": "2"}
    for name, pod in pods.items():
        labels = pod.metadata.labels or {}
        assert labels[POD_GROUP_LABEL] == "mnist" and labels[ATTEMPT_LABEL] == "0"
        assert labels["kray.io/replica-type"] == name.split("-")[1]
        assert labels["kray.io/replica-index"] == name.rsplit("-", 1)[1]
        assert (pod.spec.hostname, pod.spec.subdomain, pod.spec.restart_policy) == (name, "mnist", "Never")
        (c,) = pod.spec.containers
        env_vars = {e.name: e for e in c.env or []}
        values = {k: e.value for k, e in env_vars.items()}
        assert values["RANK"] == values["NODE_RANK"] == values["PET_NODE_RANK"] == expected_rank[name]
        assert values["WORLD_SIZE"] == "3" and values["LOCAL_RANK"] == "0" and values["PET_NNODES"] == "3"
        assert values["MASTER_PORT"] == values["PET_MASTER_PORT"] == "23456"
        assert values["PET_NPROC_PER_NODE"] == "1" and values["EPOCHS"] == "3"  # the user's own env stays
        assert values["KRAY_MASTER_SERVICE"] == "mnist-master-0.mnist"
        assert values["PET_MASTER_ADDR"] == "$(MASTER_ADDR)"
        addr = env_vars["MASTER_ADDR"].value_from
        assert addr is not None
        if name == "mnist-master-0":
            assert addr.field_ref is not None and addr.field_ref.field_path == "status.podIP"
            assert [p.container_port for p in c.ports or []] == [23456]
        else:
            ref = addr.config_map_key_ref
            assert ref is not None and (ref.name, ref.key, ref.optional) == ("mnist-rendezvous", "MASTER_ADDR", None)


async def test_master_ip_published_running_then_succeeded(env: Env) -> None:
    manager, client, _ = env
    await client.create(make_job("j1"))
    await start_gang(manager, client, "j1")
    await run_all(manager, client, "j1")  # the master gets 10.0.0.10

    cm = await client.get(ConfigMap, "j1-rendezvous", NS)
    job = await tj(client, "j1")
    assert (cm.data or {})["MASTER_ADDR"] == "10.0.0.10" == job.status.master_addr  # type: ignore[union-attr]
    assert job.status is not None and job.status.start_time == NOW
    assert {t: (r.active, r.succeeded, r.failed) for t, r in (job.status.replica_statuses or {}).items()} == {
        "Master": (1, 0, 0),
        "Worker": (2, 0, 0),
    }

    await set_phase(client, "j1-worker-1", "Succeeded", exit_code=0)  # a worker may finish first
    await set_phase(client, "j1-master-0", "Succeeded", exit_code=0)

    async def succeeded() -> bool:
        return cond(await tj(client, "j1"), "Succeeded") == ("True", "TrainingJobSucceeded")

    await drive(manager, succeeded)
    job = await tj(client, "j1")
    assert cond(job, "Running") == ("False", "TrainingJobSucceeded")
    assert job.status is not None and job.status.completion_time is not None

    async def cleaned() -> bool:  # cleanPodPolicy Running (the default): only the running pod goes
        return sorted(await pods_of(client, "j1")) == ["j1-master-0", "j1-worker-1"]

    await drive(manager, cleaned)
    reasons = [e.reason for e in (await client.list(Event, NS)).items]
    assert "TrainingJobCreated" in reasons and "TrainingJobSucceeded" in reasons


async def test_the_kubelet_resolves_master_addr_without_dns(env: Env) -> None:
    """What the kubelet does with the injected env: the Master reads its own pod IP; a worker
    cannot be configured (CreateContainerConfigError, retried) until the operator has published
    the Master's IP, then gets it."""
    from kray.actors.kubelet.envvars import ContainerConfigError, EnvContext, build_env

    manager, client, _ = env
    await client.create(make_job("dns"))
    pods = await start_gang(manager, client, "dns")
    worker, master = pods["dns-worker-0"], pods["dns-master-0"]
    with pytest.raises(ContainerConfigError, match="MASTER_ADDR"):
        await build_env(EnvContext(worker, client), worker.spec.containers[0])

    await run_all(manager, client, "dns")  # the master runs at 10.0.0.10
    got = await build_env(EnvContext(worker, client, pod_ip="10.0.0.11"), worker.spec.containers[0])
    assert (got["MASTER_ADDR"], got["PET_MASTER_ADDR"], got["RANK"]) == ("10.0.0.10", "10.0.0.10", "1")
    got = await build_env(EnvContext(master, client, pod_ip="10.0.0.10"), master.spec.containers[0])
    assert (got["MASTER_ADDR"], got["PET_MASTER_ADDR"], got["RANK"]) == ("10.0.0.10", "10.0.0.10", "0")


async def test_worker_failure_restarts_the_whole_gang(env: Env) -> None:
    manager, client, _ = env
    await client.create(make_job("gang", backoffLimit=2))
    await start_gang(manager, client, "gang")
    await run_all(manager, client, "gang")
    first_uids = {p.metadata.uid for p in (await pods_of(client, "gang")).values()}
    await set_phase(client, "gang-worker-1", "Failed", exit_code=3)

    async def restarted() -> bool:
        pods = await pods_of(client, "gang")
        fresh = [p for p in pods.values() if (p.metadata.labels or {})[ATTEMPT_LABEL] == "1"]
        return len(fresh) == 3 and not ({p.metadata.uid for p in pods.values()} & first_uids)

    await drive(manager, restarted)
    job = await tj(client, "gang")
    assert job.status is not None and job.status.restarts == 1
    restarting = job.status.condition("Restarting")
    assert restarting is not None and restarting.status == "True"
    assert "gang-worker-1" in (restarting.message or "") and "exit code 3" in (restarting.message or "")
    assert cond(job, "Running") == ("False", "TrainingJobRestarting")
    cm = await client.get(ConfigMap, "gang-rendezvous", NS)
    assert "MASTER_ADDR" not in (cm.data or {})  # the old master's IP is withdrawn
    events = [e for e in (await client.list(Event, NS)).items if e.reason == "Restarting"]
    assert len(events) == 1 and events[0].type == "Warning" and "exit code 3" in (events[0].message or "")

    await run_all(manager, client, "gang")  # the new gang comes up: Running again, no longer Restarting
    job = await tj(client, "gang")
    assert cond(job, "Restarting") == ("False", "TrainingJobRunning")
    assert (await client.get(ConfigMap, "gang-rendezvous", NS)).data == {"MASTER_ADDR": "10.0.0.10"}

    # A second failure (the master this time) restarts again; a third exceeds backoffLimit 2.
    await set_phase(client, "gang-master-0", "Failed", exit_code=1)

    async def attempt2() -> bool:
        pods = await pods_of(client, "gang")
        return len(pods) == 3 and all((p.metadata.labels or {})[ATTEMPT_LABEL] == "2" for p in pods.values())

    await drive(manager, attempt2)
    await set_phase(client, "gang-worker-0", "Failed", exit_code=1)

    async def failed() -> bool:
        return cond(await tj(client, "gang"), "Failed") == ("True", "BackoffLimitExceeded")

    await drive(manager, failed)
    job = await tj(client, "gang")
    assert job.status is not None and job.status.restarts == 2
    assert "gang-worker-0" in (job.status.condition("Failed").message or "")  # type: ignore[union-attr]


async def test_a_pod_lost_from_a_running_gang_restarts_it(env: Env) -> None:
    manager, client, _ = env
    await client.create(make_job("lost"))
    await start_gang(manager, client, "lost")
    await run_all(manager, client, "lost")
    await client.delete(Pod, "lost-worker-0", NS)  # evicted, preempted, or deleted by hand

    async def restarted() -> bool:
        job = await tj(client, "lost")
        pods = await pods_of(client, "lost")
        fresh = [p for p in pods.values() if (p.metadata.labels or {})[ATTEMPT_LABEL] == "1"]
        return job.status is not None and job.status.restarts == 1 and len(fresh) == 3

    await drive(manager, restarted)
    message = (await tj(client, "lost")).status.condition("Restarting").message  # type: ignore[union-attr]
    assert "lost-worker-0" in (message or "") and "deleted" in (message or "")


async def test_backoff_limit_zero_fails_at_once(env: Env) -> None:
    manager, client, _ = env
    await client.create(make_job("once", backoffLimit=0))
    await start_gang(manager, client, "once")
    await set_phase(client, "once-worker-0", "Failed", exit_code=7)

    async def failed() -> bool:
        return cond(await tj(client, "once"), "Failed") == ("True", "BackoffLimitExceeded")

    await drive(manager, failed)
    job = await tj(client, "once")
    assert job.status is not None and job.status.restarts == 0
    message = job.status.condition("Failed").message or ""  # type: ignore[union-attr]
    assert "once-worker-0" in message and "exit code 7" in message
    assert job.status.replica_statuses is not None and job.status.replica_statuses["Worker"].failed == 1

    async def cleaned() -> bool:  # the pending ones go, the failed one stays for its logs
        return sorted(await pods_of(client, "once")) == ["once-worker-0"]

    await drive(manager, cleaned)
    assert "BackoffLimitExceeded" in [e.reason for e in (await client.list(Event, NS)).items]


@pytest.mark.parametrize(
    ("policy", "code", "restarts"),
    [("Never", 137, False), ("ExitCode", 1, False), ("ExitCode", 137, True), ("Always", 1, True)],
)
async def test_replica_restart_policy(env: Env, policy: str, code: int, restarts: bool) -> None:
    manager, client, _ = env
    await client.create(make_job("rp", workers=1, worker_policy=policy))
    await start_gang(manager, client, "rp", 2)
    await set_phase(client, "rp-worker-0", "Failed", exit_code=code)

    async def decided() -> bool:
        job = await tj(client, "rp")
        return job.status is not None and (job.status.restarts == 1 or job.finished() is not None)

    await drive(manager, decided)
    job = await tj(client, "rp")
    if restarts:
        assert job.status is not None and job.status.restarts == 1 and job.finished() is None
    else:
        assert cond(job, "Failed") == ("True", "ReplicaFailed")


@pytest.mark.parametrize(("policy", "left"), [("All", []), ("None", ["cp-master-0", "cp-worker-0", "cp-worker-1"])])
async def test_clean_pod_policy(env: Env, policy: str, left: list[str]) -> None:
    manager, client, _ = env
    await client.create(make_job("cp", cleanPodPolicy=policy))
    await start_gang(manager, client, "cp")
    await run_all(manager, client, "cp")
    await set_phase(client, "cp-master-0", "Succeeded", exit_code=0)

    async def done() -> bool:
        return (await tj(client, "cp")).finished() == "Succeeded" and sorted(await pods_of(client, "cp")) == left

    await drive(manager, done)
    for _ in range(5):  # and it stays that way
        await manager.step()
    assert sorted(await pods_of(client, "cp")) == left


async def test_suspend_deletes_pods_and_resume_recreates_them(env: Env) -> None:
    manager, client, _ = env
    await client.create(make_job("sus"))
    await start_gang(manager, client, "sus")
    await client.patch(TrainingJob, "sus", {"spec": {"runPolicy": {"suspend": True}}}, NS)

    async def suspended() -> bool:
        job = await tj(client, "sus")
        return cond(job, "Suspended") == ("True", "TrainingJobSuspended") and not await pods_of(client, "sus")

    await drive(manager, suspended)
    assert await exists(client, Service, "sus") and await exists(client, PodGroup, "sus")
    await client.patch(TrainingJob, "sus", {"spec": {"runPolicy": {"suspend": False}}}, NS)
    await start_gang(manager, client, "sus")
    assert cond(await tj(client, "sus"), "Suspended") == ("False", "TrainingJobResumed")


async def test_active_deadline_fails_the_job(env: Env) -> None:
    manager, client, clock = env
    await client.create(make_job("slow", activeDeadlineSeconds=30))
    await start_gang(manager, client, "slow")
    await run_all(manager, client, "slow")
    clock.advance(31)

    async def failed() -> bool:
        return cond(await tj(client, "slow"), "Failed") == ("True", "DeadlineExceeded")

    await drive(manager, failed)

    async def cleaned() -> bool:
        return not await pods_of(client, "slow")

    await drive(manager, cleaned)


async def test_deleting_the_job_collects_everything(env: Env) -> None:
    manager, client, _ = env
    await client.create(make_job("gc"))
    await start_gang(manager, client, "gc")
    await client.delete(TrainingJob, "gc", NS)

    async def collected() -> bool:
        children = [
            await exists(client, Service, "gc"),
            await exists(client, PodGroup, "gc"),
            await exists(client, ConfigMap, "gc-rendezvous"),
        ]
        return not any(children) and not await pods_of(client, "gc")

    await drive(manager, collected)


async def test_ttl_after_finished_deletes_the_job(env: Env) -> None:
    manager, client, clock = env
    await client.create(make_job("ttl", workers=0, ttlSecondsAfterFinished=60))
    await start_gang(manager, client, "ttl", 1)
    await set_phase(client, "ttl-master-0", "Succeeded", exit_code=0)

    async def finished() -> bool:
        return (await tj(client, "ttl")).finished() == "Succeeded"

    await drive(manager, finished)
    clock.advance(61)

    async def gone() -> bool:
        return not await exists(client, TrainingJob, "ttl") and not await exists(client, Service, "ttl")

    await drive(manager, gone)


async def test_validation_names_the_field(env: Env) -> None:
    _, client, _ = env
    bad = make_job("bad").to_dict()
    bad["spec"]["replicaSpecs"]["Master"]["replicas"] = 2
    bad["spec"]["replicaSpecs"]["Chief"] = bad["spec"]["replicaSpecs"]["Worker"]
    with pytest.raises(ApiError) as err:
        await client.create_raw(bad)
    assert err.value.status == 422
    fields = {c.get("field") for c in err.value.causes}
    assert fields == {"spec.replicaSpecs[Master].replicas", "spec.replicaSpecs[Chief]"}

    bad = make_job("bad").to_dict()
    bad["spec"]["runPolicy"] = {"cleanPodPolicy": "Sometimes", "backoffLimit": -1}
    with pytest.raises(ApiError) as err:
        await client.create_raw(bad)
    fields = {c.get("field") for c in err.value.causes}
    assert fields == {"spec.runPolicy.cleanPodPolicy", "spec.runPolicy.backoffLimit"}

    nomaster = make_job("nomaster").to_dict()
    del nomaster["spec"]["replicaSpecs"]["Master"]
    nomaster["metadata"]["name"] = "9lives"  # becomes a Service name: DNS-1035
    with pytest.raises(ApiError) as err:
        await client.create_raw(nomaster)
    fields = {c.get("field") for c in err.value.causes}
    assert fields == {"metadata.name", "spec.replicaSpecs[Master]"}
    assert "Required value" in str(err.value)
