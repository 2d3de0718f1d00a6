"""Pod lifecycle through the kubelet core: phases, restarts with back-off, init containers,
images, admission, graceful deletion, re-adoption after a kubelet restart, GPUs."""

from __future__ import annotations

from kubelet_harness import Env

from kray.actors.kubelet.fakes import FakeDevices
from kray.actors.kubelet.ports import POD_UID
from kray.crds import Lease, Node, Pod
from kray.runtime.cri import api_pb2 as pb

BUSY = {"name": "main", "image": "busybox", "command": ["sleep", "1000"]}


def state(pod: Pod, i: int = 0) -> dict:
    return pod.status.to_dict()["containerStatuses"][i]


def conds(pod: Pod) -> dict[str, str]:
    return {c.type: c.status for c in pod.status.conditions or []}


async def test_node_registration_and_lease(env: Env):
    await env.step()
    node = await env.client.get(Node, "n1")
    st = node.status
    assert {k: str(v) for k, v in st.capacity.items()} == {"cpu": "4", "memory": "8Gi", "pods": "110"}
    assert st.address("InternalIP") == "192.168.0.10" and st.address("Hostname") == "n1"
    assert st.daemon_endpoints.kubelet_endpoint.port == 10250
    assert node.spec.pod_cidr == "10.88.0.0/24"
    assert (
        node.metadata.labels["kubernetes.io/hostname"] == "n1" and node.metadata.labels["kubernetes.io/os"] == "linux"
    )
    assert {c.type: c.status for c in st.conditions} == {
        "Ready": "True", "MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False"
    }  # fmt: skip
    lease = await env.client.get(Lease, "n1", "kube-node-lease")
    first = lease.spec.renew_time
    await env.step(advance=11)
    lease = await env.client.get(Lease, "n1", "kube-node-lease")
    assert lease.spec.renew_time > first and lease.spec.holder_identity == "n1"


async def test_pod_runs_then_succeeds(env: Env):
    await env.create("web", {"containers": [BUSY], "restartPolicy": "Never"})
    await env.step()
    pod = await env.pod("web")
    assert pod.status.phase == "Running", pod.status
    cs = state(pod)
    assert "running" in cs["state"] and cs["ready"] and cs["restartCount"] == 0
    assert cs["containerID"].startswith("kray://") and pod.status.pod_ip.startswith("10.88.0.")
    assert conds(pod) == {"PodScheduled": "True", "Initialized": "True", "ContainersReady": "True", "Ready": "True"}
    assert pod.status.host_ip == "192.168.0.10" and pod.status.start_time is not None
    [c] = env.cri.by_name(pod.metadata.uid, "main")
    assert list(c.config.command) == ["sleep", "1000"] and c.config.metadata.attempt == 0
    env.cri.exit(c.id, 0)
    await env.step()
    pod = await env.pod("web")
    assert pod.status.phase == "Succeeded"
    term = state(pod)["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    assert conds(pod)["Ready"] == "False"
    # the sandbox is stopped but kept (logs stay readable) until the pod is deleted
    [sb] = env.cri.sandboxes.values()
    assert not sb.ready
    writes = env.cri.count("CreateContainer")
    await env.step(advance=60)
    assert env.cri.count("CreateContainer") == writes


async def test_never_leaves_failed_pod_with_exit_code(env: Env):
    await env.create("bad", {"containers": [BUSY], "restartPolicy": "Never"})
    await env.step()
    pod = await env.pod("bad")
    env.cri.exit(env.cri.by_name(pod.metadata.uid, "main")[0].id, 3)
    await env.step(advance=30)
    pod = await env.pod("bad")
    assert pod.status.phase == "Failed"
    t = state(pod)["state"]["terminated"]
    assert t["exitCode"] == 3 and t["reason"] == "Error"
    assert env.cri.count("CreateContainer") == 1


async def test_onfailure_restarts_failures_and_completes(env: Env):
    await env.create("job", {"containers": [BUSY], "restartPolicy": "OnFailure"})
    await env.step()
    uid = (await env.pod("job")).metadata.uid
    env.cri.exit(env.cri.by_name(uid, "main")[-1].id, 1)
    await env.step()
    assert len(env.cri.by_name(uid, "main")) == 2
    assert (await env.pod("job")).status.phase == "Running"
    env.cri.exit(env.cri.by_name(uid, "main")[-1].id, 0)
    await env.step()
    pod = await env.pod("job")
    assert pod.status.phase == "Succeeded" and state(pod)["restartCount"] == 1


async def test_always_crashloop_backoff_doubles(env: Env):
    await env.create("crash", {"containers": [BUSY]})
    await env.step()
    uid = (await env.pod("crash")).metadata.uid

    def crash() -> None:
        env.cri.exit(env.cri.by_name(uid, "main")[-1].id, 2)

    crash()
    await env.step()  # the first restart is immediate
    assert len(env.cri.by_name(uid, "main")) == 2
    crash()
    await env.step()
    pod = await env.pod("crash")
    cs = state(pod)
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff" and "10s" in cs["state"]["waiting"]["message"]
    assert cs["lastState"]["terminated"]["exitCode"] == 2 and cs["restartCount"] == 1
    assert pod.status.phase == "Running" and conds(pod)["Ready"] == "False"
    await env.step(advance=9)
    assert len(env.cri.by_name(uid, "main")) == 2
    await env.step(advance=1.5)
    assert len(env.cri.by_name(uid, "main")) == 3
    cs = state(await env.pod("crash"))
    assert "running" in cs["state"] and cs["restartCount"] == 2 and cs["lastState"]["terminated"]["exitCode"] == 2
    crash()
    await env.step(advance=15)  # back-off is 20 s now
    assert len(env.cri.by_name(uid, "main")) == 3
    await env.step(advance=6)
    assert len(env.cri.by_name(uid, "main")) == 4


async def test_init_containers_run_in_order(env: Env):
    init = [
        {"name": "i1", "image": "busybox", "command": ["true"]},
        {"name": "i2", "image": "busybox", "command": ["true"]},
    ]
    await env.create("ini", {"initContainers": init, "containers": [BUSY]})
    await env.step()
    pod = await env.pod("ini")
    uid = pod.metadata.uid
    assert pod.status.phase == "Pending" and conds(pod)["Initialized"] == "False"
    assert [n for n, _ in env.cri.calls if n == "CreateContainer"] == ["CreateContainer"]
    assert state(pod)["state"]["waiting"]["reason"] == "PodInitializing"
    env.cri.exit(env.cri.by_name(uid, "i1")[0].id, 0)
    await env.step()
    assert env.cri.by_name(uid, "i2") and not env.cri.by_name(uid, "main")
    env.cri.exit(env.cri.by_name(uid, "i2")[0].id, 0)
    await env.step()
    pod = await env.pod("ini")
    assert pod.status.phase == "Running" and conds(pod)["Initialized"] == "True"
    inits = pod.status.to_dict()["initContainerStatuses"]
    assert [s["state"]["terminated"]["reason"] for s in inits] == ["Completed", "Completed"]


async def test_failed_init_container_fails_never_pod(env: Env):
    init = [{"name": "i1", "image": "busybox", "command": ["false"]}]
    await env.create("ini", {"initContainers": init, "containers": [BUSY], "restartPolicy": "Never"})
    await env.step()
    uid = (await env.pod("ini")).metadata.uid
    env.cri.exit(env.cri.by_name(uid, "i1")[0].id, 1)
    await env.step()
    pod = await env.pod("ini")
    assert pod.status.phase == "Failed" and not env.cri.by_name(uid, "main")


async def test_missing_image_errimagepull_then_backoff(env: Env):
    await env.create("img", {"containers": [{"name": "main", "image": "nothere:1"}]})
    await env.step(rounds=1)
    w = state(await env.pod("img"))["state"]["waiting"]
    assert w["reason"] == "ErrImagePull" and "nothere:1" in w["message"]
    await env.step(advance=1)
    assert state(await env.pod("img"))["state"]["waiting"]["reason"] == "ImagePullBackOff"
    env.cri.images.add("nothere:1")
    await env.step(advance=11)
    assert "running" in state(await env.pod("img"))["state"]


async def test_admission_refuses_what_does_not_fit(env: Env):
    big = {**BUSY, "resources": {"requests": {"cpu": "3"}}}
    await env.create("a", {"containers": [big]})
    await env.step()
    await env.create("b", {"containers": [big]})
    await env.step()
    b = await env.pod("b")
    assert b.status.phase == "Failed" and b.status.reason == "OutOfcpu" and "cpu" in b.status.message
    assert (await env.pod("a")).status.phase == "Running"
    assert env.cri.count("RunPodSandbox") == 1


async def test_graceful_deletion_then_final_delete(env: Env):
    await env.create("gone", {"containers": [BUSY], "terminationGracePeriodSeconds": 7})
    await env.step()
    uid = (await env.pod("gone")).metadata.uid
    await env.client.delete(Pod, "gone", "default")
    pod = await env.pod("gone")
    assert pod.metadata.deletion_timestamp is not None  # graceful: the kubelet finishes it
    await env.step()
    stops = [arg for n, arg in env.cri.calls if n == "StopContainer"]
    assert stops and stops[0][1] == 7
    assert not env.cri.sandboxes and not env.cri.containers
    assert not (env.volumes.root / uid).exists()
    assert not (await env.client.list(Pod, "default")).items


async def test_restarted_kubelet_adopts_and_cleans_up(env: Env):
    await env.create("keep", {"containers": [BUSY]})
    await env.create("drop", {"containers": [BUSY]})
    await env.step()
    keep_uid = (await env.pod("keep")).metadata.uid
    drop_uid = (await env.pod("drop")).metadata.uid
    before = dict(env.cri.containers)
    # The kubelet goes away; meanwhile "drop" is force-deleted from the API.
    await env.client.delete(Pod, "drop", "default", grace_period_seconds=0)
    env.kubelet = env.new_kubelet()
    calls = len(env.cri.calls)
    await env.step(rounds=3)
    new_calls = [n for n, _ in env.cri.calls[calls:]]
    assert "CreateContainer" not in new_calls and "RunPodSandbox" not in new_calls
    assert {c.config.labels[POD_UID] for c in env.cri.containers.values()} == {keep_uid}
    assert all(c.id in before for c in env.cri.containers.values())
    assert not [s for s in env.cri.sandboxes.values() if s.config.labels[POD_UID] == drop_uid]
    pod = await env.pod("keep")
    assert pod.status.phase == "Running" and state(pod)["restartCount"] == 0
    assert env.cri.containers[env.cri.by_name(keep_uid, "main")[0].id].state == pb.CONTAINER_RUNNING


async def test_gpu_allocation_and_release(env: Env, gpus: FakeDevices):
    env.kubelet = env.new_kubelet(devices=gpus)
    gpu = {**BUSY, "resources": {"limits": {"nvidia.com/gpu": "1"}}}
    await env.create("train", {"containers": [gpu]})
    await env.step()
    node = await env.client.get(Node, "n1")
    assert str(node.status.capacity["nvidia.com/gpu"]) == "2"
    uid = (await env.pod("train")).metadata.uid
    [c] = env.cri.by_name(uid, "main")
    assert {e.key: e.value for e in c.config.envs}["NVIDIA_VISIBLE_DEVICES"] == "GPU-a"
    await env.create("train2", {"containers": [{**gpu, "resources": {"limits": {"nvidia.com/gpu": "2"}}}]})
    await env.step()
    assert (await env.pod("train2")).status.reason == "OutOfnvidia.com/gpu"
    await env.client.delete(Pod, "train", "default")
    await env.step()
    assert gpus.allocations == {}


async def test_finished_pod_keeps_its_status_when_its_containers_are_gone(env: Env):
    """A node torn down and brought back (`kray down`, `kray up`) has no containers for a pod
    that already Succeeded: its terminal status must stay, never fall back to waiting, and the
    pod must not run again (`podstatus.phase` keeps a terminal phase; this guards it)."""
    await env.create("done", {"containers": [BUSY], "restartPolicy": "Never"})
    await env.step()
    pod = await env.pod("done")
    [c] = env.cri.by_name(pod.metadata.uid, "main")
    env.cri.exit(c.id, 0)
    await env.step()
    finished = (await env.pod("done")).status
    assert finished.phase == "Succeeded"
    for sandbox_id in list(env.cri.sandboxes):  # the node loses everything
        await env.cri.remove_pod_sandbox(sandbox_id)
    env.kubelet = env.new_kubelet()
    await env.step(rounds=3)
    after = (await env.pod("done")).status
    assert after.phase == "Succeeded"
    assert state(await env.pod("done"))["state"]["terminated"]["exitCode"] == 0
    assert env.cri.count("CreateContainer") == 1
