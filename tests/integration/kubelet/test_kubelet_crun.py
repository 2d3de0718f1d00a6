"""The kubelet on real crun containers through the CRI runtime service and a real API server:
a busybox Pod runs to Succeeded (logs via the API server and `kray logs`, its own hostname and
process tree), containers share localhost and an emptyDir, pods reach each other by IP,
OOMKilled, liveness restarts, restartPolicy Never, a kubelet restart adopting running pods, and
everything removed at the end."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys

import httpx
import pytest
from kubelet_node import RunningKubelet, fetch_loop, httpd_requests, httpd_serving, phase, pod_body, wait_for

from kray.actors.kubelet.ports import POD_UID
from kray.client import AsyncClient
from kray.crds import Node as NodeObj
from kray.crds import Pod
from kray.crds.core import Event
from kray.runtime.cri import api_pb2 as pb

pytestmark = [pytest.mark.root]
TOKEN = "kubelet-test"  # the module API server's token (conftest.py)


def cstatus(pod: Pod, i: int = 0) -> dict:
    return pod.status.to_dict()["containerStatuses"][i]


async def get(client: AsyncClient, name: str) -> Pod:
    return await client.get(Pod, name, "default")


async def test_busybox_pod_succeeds_with_logs_hostname_ps(client: AsyncClient, kubelet: RunningKubelet, apiserver):
    script = "echo hello-from-kray; hostname; ps -o comm | tail -n +2 | tr '\\n' ' '; echo; sleep 1"
    await client.create(
        pod_body(
            "hello", [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}], restartPolicy="Never"
        )
    )
    await wait_for(lambda: phase(client, "hello"), 30, "hello to start")
    pod = await wait_for(lambda: _when(client, "hello", "Succeeded"), 30, "hello Succeeded")
    t = cstatus(pod)["state"]["terminated"]
    assert t["exitCode"] == 0 and t["reason"] == "Completed" and cstatus(pod)["containerID"].startswith("kray://")
    assert pod.status.pod_ip and pod.status.pod_ip != "127.0.0.1"
    node = await client.get(NodeObj, "n1")
    assert node.is_ready() and node.status.daemon_endpoints.kubelet_endpoint.port == kubelet.log_port
    async with httpx.AsyncClient(base_url=apiserver.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        r = await http.get("/api/v1/namespaces/default/pods/hello/log")
    assert r.status_code == 200, r.text
    lines = r.text.splitlines()
    assert lines[0] == "hello-from-kray" and lines[1] == "hello"
    assert set(lines[2].split()) <= {"sh", "ps", "tail", "tr", "exe"}, lines[
        2
    ]  # only its own (exe: a pipe child mid-exec)
    env = {**os.environ, "KRAY_SERVER": apiserver.url, "KRAY_TOKEN": TOKEN}
    cli = [sys.executable, "-c", "from kray.cli.main import main; main()", "logs", "hello", "--tail", "2"]
    out = await asyncio.to_thread(subprocess.run, cli, env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == lines[1:3]

    async def kubelet_events() -> dict[str, Event] | None:  # written off the pod's critical path
        evs = {e.reason or "": e for e in (await client.list(Event, "default")).items
               if e.involved_object.name == "hello" and e.source and e.source.component == "kubelet"}  # fmt: skip
        return evs if {"Created", "Started"} <= set(evs) else None

    evs = await wait_for(kubelet_events, 10, "Created and Started events")
    assert evs["Created"].message == "Created container main" and evs["Started"].message == "Started container main"
    assert evs["Started"].type == "Normal" and evs["Started"].source.host == "n1"
    assert evs["Started"].involved_object.uid == pod.metadata.uid
    describe = [*cli[:3], "describe", "pod", "hello"]
    out = await asyncio.to_thread(subprocess.run, describe, env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    shown = [line.split() for line in out.stdout.split("Events:", 1)[1].splitlines()]
    assert ["Normal", "Started"] in [row[:2] for row in shown] and any("kubelet" in row for row in shown), out.stdout


async def _when(client: AsyncClient, name: str, want: str) -> Pod | None:
    pod = await get(client, name)
    return pod if pod.status and pod.status.phase == want else None


async def test_two_containers_share_localhost_and_emptydir(client: AsyncClient, kubelet: RunningKubelet):
    mounts = [{"name": "shared", "mountPath": "/shared"}]
    over_lo = f"hi-over-lo-{secrets.token_hex(4)}"
    # srv's /www/f is only in srv's rootfs, so cli can get it only over the pod's localhost; srv
    # then waits for cli's answer in the emptyDir (the shared volume, both directions).
    srv_cmd = (
        f"echo from-srv > /shared/f; {httpd_serving(over_lo, 8080)} & "
        "until [ -e /shared/done ]; do sleep 0.05; done; kill $!; cat /shared/done"
    )
    srv = {"name": "srv", "image": "busybox", "volumeMounts": mounts, "command": ["sh", "-c", srv_cmd]}
    answer = "echo from-cli > /shared/t && mv /shared/t /shared/done"  # mv: srv never reads it half-written
    cli_cmd = f"{fetch_loop('http://127.0.0.1:8080/f')} && cat /shared/f && {answer}"
    cli = {"name": "cli", "image": "busybox", "volumeMounts": mounts, "command": ["sh", "-c", cli_cmd]}
    body = pod_body("duo", [srv, cli], restartPolicy="Never", volumes=[{"name": "shared", "emptyDir": {}}])
    await client.create(body)
    pod = await wait_for(lambda: _when(client, "duo", "Succeeded"), 40, "duo Succeeded")
    assert all(s["state"]["terminated"]["exitCode"] == 0 for s in pod.status.to_dict()["containerStatuses"])
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{kubelet.log_port}") as http:
        assert (await http.get("/containerLogs/default/duo/cli")).text == f"{over_lo}\nfrom-srv\n"
        srv_log = (await http.get("/containerLogs/default/duo/srv")).text  # stdout and httpd's stderr
    assert "from-cli" in srv_log.splitlines()
    assert ("127.0.0.1", "/f") in httpd_requests(srv_log), srv_log


async def test_pods_talk_over_pod_ips(client: AsyncClient, kubelet: RunningKubelet):
    payload = f"by-pod-ip-{secrets.token_hex(4)}"
    server = {"name": "s", "image": "busybox", "command": ["sh", "-c", httpd_serving(payload, 9000)]}
    await client.create(pod_body("server", [server], restartPolicy="Never", terminationGracePeriodSeconds=1))
    srv = await wait_for(lambda: _when(client, "server", "Running"), 30, "server Running")
    ip = srv.status.pod_ip
    caller = {"name": "c", "image": "busybox", "command": ["sh", "-c", fetch_loop(f"http://{ip}:9000/f")]}
    await client.create(pod_body("caller", [caller], restartPolicy="Never"))
    called = await wait_for(lambda: _when(client, "caller", "Succeeded"), 30, "caller Succeeded")
    assert called.status.pod_ip != ip
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{kubelet.log_port}") as http:
        assert (await http.get("/containerLogs/default/caller/c")).text == f"{payload}\n"

        async def served_caller() -> bool:  # the server saw the caller's own pod IP: no NAT between pods
            log = (await http.get("/containerLogs/default/server/s")).text
            return (called.status.pod_ip, "/f") in httpd_requests(log)

        await wait_for(served_caller, 10, "the server to log the caller's request")
    await client.delete(Pod, "server", "default")
    await wait_for(lambda: _gone(client, "server"), 30, "server deleted")


async def test_oomkilled_and_never_failed(client: AsyncClient, kubelet: RunningKubelet):
    hog = {"name": "hog", "image": "busybox", "command": ["sh", "-c", "x=aaaaaaaa; while true; do x=$x$x; done"],
           "resources": {"limits": {"memory": "16Mi"}}}  # fmt: skip
    await client.create(pod_body("oom", [hog], restartPolicy="Never"))
    await client.create(
        pod_body("fail", [{"name": "f", "image": "busybox", "command": ["sh", "-c", "exit 3"]}], restartPolicy="Never")
    )
    pod = await wait_for(lambda: _when(client, "oom", "Failed"), 60, "oom Failed")
    t = cstatus(pod)["state"]["terminated"]
    assert t["reason"] == "OOMKilled" and t["exitCode"] == 137
    pod = await wait_for(lambda: _when(client, "fail", "Failed"), 30, "fail Failed")
    assert cstatus(pod)["state"]["terminated"]["exitCode"] == 3 and cstatus(pod)["restartCount"] == 0


async def test_liveness_failure_restarts_container(client: AsyncClient, kubelet: RunningKubelet):
    probe = {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 1, "failureThreshold": 1}
    c = {"name": "app", "image": "busybox", "command": ["sh", "-c", "echo started; sleep 1000"], "livenessProbe": probe}
    await client.create(pod_body("unhealthy", [c], terminationGracePeriodSeconds=1))

    async def restarted() -> Pod | None:
        pod = await get(client, "unhealthy")
        sts = pod.status.to_dict().get("containerStatuses") if pod.status else None
        return pod if sts and sts[0]["restartCount"] >= 1 else None

    pod = await wait_for(restarted, 40, "a liveness restart")
    assert cstatus(pod)["lastState"]["terminated"]["exitCode"] in (137, 143)
    await client.delete(Pod, "unhealthy", "default")
    await wait_for(lambda: _gone(client, "unhealthy"), 30, "unhealthy deleted")


async def _gone(client: AsyncClient, name: str) -> bool:
    return not [p for p in (await client.list(Pod, "default")).items if p.metadata.name == name]


async def test_kubelet_restart_adopts_and_cleans_up(client: AsyncClient, node, kubelet: RunningKubelet):
    sleeper = [{"name": "s", "image": "busybox", "command": ["sleep", "1000"]}]
    await client.create(pod_body("stay", sleeper))
    await client.create(pod_body("leave", sleeper))
    for name in ("stay", "leave"):
        await wait_for(lambda n=name: _when(client, n, "Running"), 30, f"{name} Running")
    before = {c.id for c in await kubelet.cri.list_containers()}
    leave_uid = (await get(client, "leave")).metadata.uid
    await kubelet.stop()
    await client.delete(Pod, "leave", "default", grace_period_seconds=0)  # while no kubelet runs
    second = await RunningKubelet(node, client).start()
    try:
        await wait_for(lambda: _runtime_gone(second, leave_uid), 30, "cleanup of 'leave'")
        await asyncio.sleep(1.0)  # a few relists: nothing must be restarted or duplicated
        stay = await get(client, "stay")
        assert stay.status.phase == "Running" and cstatus(stay)["restartCount"] == 0
        now = {c.id for c in await second.cri.list_containers()}
        assert now <= before and len(now) == len([c for c in now if c in before])
        assert cstatus(stay)["containerID"].removeprefix("kray://") in now
    finally:
        await second.stop()


async def _runtime_gone(k: RunningKubelet, uid: str) -> bool:
    sel = {POD_UID: uid}
    return not await k.cri.list_pod_sandbox(
        pb.PodSandboxFilter(label_selector=sel)
    ) and not await k.cri.list_containers(pb.ContainerFilter(label_selector=sel))


async def test_zz_everything_removed(client: AsyncClient, node, kubelet: RunningKubelet):
    for p in (await client.list(Pod, "default")).items:
        await client.delete(Pod, p.metadata.name, "default")
    await wait_for(lambda: _none_left(client), 60, "every pod deleted")
    # A terminal pod's object may go before the kubelet's housekeeping has removed its sandbox.
    await wait_for(lambda: _runtime_empty(kubelet), 30, "every sandbox and container removed")
    await kubelet.stop()
    node.stop()
    left = [x for x in node.leftovers() if "br" not in x.split()[-1]]  # the bridge is the node's, kept
    assert left == [], left


async def _runtime_empty(k: RunningKubelet) -> bool:
    return not await k.cri.list_pod_sandbox() and not await k.cri.list_containers()


async def _none_left(client: AsyncClient) -> bool:
    return not (await client.list(Pod, "default")).items
