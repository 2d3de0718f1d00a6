"""The CRI runtime service end to end: `python -m kray.runtime` on a temp unix socket, driven
through the async RuntimeClient, with real crun containers, netns, veths and cgroups (root only).

One service per module (its start costs ~1s); every test removes its sandboxes afterwards, and the
module teardown removes whatever is left (sandboxes, netns, veths, bridge, cgroups, mounts)."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import statistics
import time
from pathlib import Path

import grpc
import pytest
from cri_harness import (
    Service,
    ctr_config,
    log_lines,
    pod_config,
    run_pod,
    wait_exited,
)

from kray.etcd_server import free_port
from kray.runtime.cgroups import CgroupV1
from kray.runtime.cri import api_pb2 as pb
from kray.runtime.cri.client import RuntimeClient
from kray.runtime.ocirt import make_runtime
from kray.runtime.volumes import KeyToPath, Volume

pytestmark = [pytest.mark.root]


async def test_pod_lifecycle_logs_hostname_exit(cri: RuntimeClient):
    v = await cri.version()
    assert v.runtime_name == "kray" and v.runtime_api_version == "v1"
    conds = {c.type: c.status for c in (await cri.status()).status.conditions}
    assert conds == {"RuntimeReady": True, "NetworkReady": True}
    sid, [cid] = await run_pod(cri, "web-0", ctr_config("main", ["sh", "-c", "echo hello; hostname; echo oops >&2"]))
    st = await wait_exited(cri, cid)
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 0 and st.reason == "Completed", st
    assert 0 < st.created_at <= st.started_at <= st.finished_at
    assert st.log_path.endswith("main/0.log") and st.image_ref.startswith("sha256:")
    assert log_lines(st.log_path) == ["hello", "web-0"]
    assert log_lines(st.log_path, b"stderr") == ["oops"]
    sb = (await cri.pod_sandbox_status(sid)).status
    assert sb.state == pb.SANDBOX_READY and sb.network.ip and sb.metadata.name == "web-0"
    # Filters: by state, by label, by sandbox id prefix.
    exited = pb.ContainerFilter(state=pb.ContainerStateValue(state=pb.CONTAINER_EXITED))
    assert [c.id for c in await cri.list_containers(exited)] == [cid]
    running = pb.ContainerFilter(state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING))
    assert await cri.list_containers(running) == []
    assert [c.id for c in await cri.list_containers(pb.ContainerFilter(label_selector={"ctr": "main"}))] == [cid]
    assert await cri.list_containers(pb.ContainerFilter(label_selector={"ctr": "nope"})) == []
    assert [s.id for s in await cri.list_pod_sandbox(pb.PodSandboxFilter(id=sid[:8]))] == [sid]
    assert [s.id for s in await cri.list_pod_sandbox(pb.PodSandboxFilter(label_selector={"app": "web-0"}))] == [sid]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cri.run_pod_sandbox(pod_config("web-0", uid=sb.metadata.uid))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    await cri.stop_pod_sandbox(sid)
    await cri.stop_pod_sandbox(sid)  # idempotent
    assert (await cri.pod_sandbox_status(sid)).status.state == pb.SANDBOX_NOTREADY
    await cri.remove_pod_sandbox(sid)
    await cri.remove_pod_sandbox(sid)  # idempotent
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cri.container_status(cid)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


# Why httpd + a retrying `wget` and not `nc -l`: a busybox `nc -l` whose stdin is /dev/null
# sometimes exits on stdin EOF before it has read the connection, printing nothing (~1 in 30).
# httpd answers every connection; the client retries until it is up; `-vv` logs each request
# (peer address and url) on stderr, so the server side still proves who reached it.
# It listens dual-stack, so an IPv4 peer reads `[::ffff:10.1.2.3]:port`.
HTTPD_REQUEST = re.compile(r"^\[?(?:::ffff:)?([^\]\s]+?)\]?:\d+: url:(\S+)$")


def fetch_loop(url: str, out: str = "/tmp/got") -> str:
    """Shell that fetches `url` into `out` (retrying while the server starts), prints it, or exits 1."""
    return (
        f"ok=; for i in $(seq 100); do if timeout 3 wget -q -O {out} {url}; then ok=1; break; fi; sleep 0.1; done; "
        f'[ -n "$ok" ] || exit 1; cat {out}'
    )


def httpd_serving(payload: str, port: int) -> str:
    """Shell that serves `payload` at /f from the container's own (unshared) /www on `port`."""
    return f"mkdir -p /www && echo {payload} > /www/f && httpd -f -vv -p {port} -h /www"


async def httpd_requests(path: str, timeout: float = 10) -> list[tuple[str, str]]:
    """(peer ip, url) of the requests a `httpd -vv` logged on stderr, once it logged any."""
    deadline = time.monotonic() + timeout
    while True:
        reqs = [(m[1], m[2]) for line in log_lines(path, b"stderr") if (m := HTTPD_REQUEST.match(line))]
        if reqs or time.monotonic() > deadline:
            return reqs
        await asyncio.sleep(0.05)


async def test_containers_share_localhost_and_emptydir(cri: RuntimeClient, service: Service):
    uid = secrets.token_hex(8)
    cfg = pod_config("duo", uid=uid)
    sid = await cri.run_pod_sandbox(cfg)
    shared = service.volumes().node_publish(Volume("shared", "emptyDir"), uid)
    mount = pb.Mount(container_path="/shared", host_path=str(shared))
    over_lo = f"hi-over-lo-{secrets.token_hex(4)}"
    # srv: /www/f is only in srv's rootfs, so cli can get it only over the pod's localhost; srv then
    # waits for cli's answer in the emptyDir (both directions through the shared volume).
    srv_cmd = (
        f"echo from-srv > /shared/f; {httpd_serving(over_lo, 8080)} & "
        "until [ -e /shared/done ]; do sleep 0.05; done; kill $!; cat /shared/done"
    )
    srv = ctr_config("srv", ["sh", "-c", srv_cmd], mounts=[mount])
    answer = "echo from-cli > /shared/t && mv /shared/t /shared/done"  # mv: srv never reads it half-written
    cli_cmd = f"{fetch_loop('http://127.0.0.1:8080/f')} && cat /shared/f && {answer}"
    cli = ctr_config("cli", ["sh", "-c", cli_cmd], mounts=[mount])
    ids = []
    for c in (srv, cli):
        ids.append(await cri.create_container(sid, c, cfg))
        await cri.start_container(ids[-1])
    st_cli = await wait_exited(cri, ids[1])
    st_srv = await wait_exited(cri, ids[0])
    assert st_cli.exit_code == 0 and st_srv.exit_code == 0, (st_cli, st_srv)
    assert log_lines(st_cli.log_path) == [over_lo, "from-srv"]
    assert log_lines(st_srv.log_path) == ["from-cli"]
    assert ("127.0.0.1", "/f") in await httpd_requests(st_srv.log_path)
    await cri.remove_pod_sandbox(sid)
    assert not shared.exists()  # the emptyDir went with the pod


async def test_sandboxes_reach_each_other_by_pod_ip(cri: RuntimeClient):
    payload = f"by-pod-ip-{secrets.token_hex(4)}"
    sa, [srv] = await run_pod(cri, "pa", ctr_config("srv", ["sh", "-c", httpd_serving(payload, 9000)]))
    ip = (await cri.pod_sandbox_status(sa)).status.network.ip
    sb, [cli] = await run_pod(cri, "pb", ctr_config("cli", ["sh", "-c", fetch_loop(f"http://{ip}:9000/f")]))
    st_cli = await wait_exited(cri, cli)
    assert st_cli.exit_code == 0 and log_lines(st_cli.log_path) == [payload], st_cli
    cli_ip = (await cri.pod_sandbox_status(sb)).status.network.ip
    assert cli_ip != ip
    # The server saw the request come from the client's pod IP (no NAT between pods).
    srv_log = (await cri.container_status(srv)).log_path
    assert (cli_ip, "/f") in await httpd_requests(srv_log)


async def test_exec_sync(cri: RuntimeClient):
    _, [cid] = await run_pod(
        cri, "ex", ctr_config("sleeper", ["sleep", "1000"], envs=[pb.KeyValue(key="K", value="v1")])
    )
    r = await cri.exec_sync(cid, ["sh", "-c", "echo out $K $(hostname); echo err >&2; exit 3"], timeout=10)
    assert (r.stdout, r.stderr, r.exit_code) == (b"out v1 ex\n", b"err\n", 3)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cri.exec_sync(cid, ["sleep", "10"], timeout=1)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cri.exec_sync("nope", ["true"])
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_memory_limit_oomkilled(cri: RuntimeClient):
    res = pb.LinuxContainerResources(memory_limit_in_bytes=16 << 20, cpu_period=100_000, cpu_quota=50_000)
    c = ctr_config(
        "hog", ["sh", "-c", "x=aaaaaaaa; while true; do x=$x$x; done"], linux=pb.LinuxContainerConfig(resources=res)
    )
    _, [cid] = await run_pod(cri, "oom", c)
    st = await wait_exited(cri, cid, 60)
    assert st.state == pb.CONTAINER_EXITED and st.reason == "OOMKilled" and st.exit_code == 137, st
    assert st.resources.linux.memory_limit_in_bytes == 16 << 20


async def test_stop_container_with_timeout(cri: RuntimeClient):
    _, [cid] = await run_pod(cri, "stopper", ctr_config("sleeper", ["sleep", "1000"]))
    assert (await cri.container_status(cid)).state == pb.CONTAINER_RUNNING
    t = time.monotonic()
    await cri.stop_container(cid, timeout=1)
    took = time.monotonic() - t
    st = await cri.container_status(cid)
    assert st.state == pb.CONTAINER_EXITED and st.exit_code in (137, 143), st
    assert took < 1 + 5, took
    await cri.stop_container(cid, timeout=1)  # idempotent


async def test_restart_readopts_running_pod(cri: RuntimeClient, service: Service):
    sid, [cid] = await run_pod(cri, "survivor", ctr_config("sleeper", ["sleep", "1000"]))
    service.stop()
    service.start()
    client = RuntimeClient(service.socket, timeout=60)
    try:
        await client.wait_ready(30)
        assert [s.id for s in await client.list_pod_sandbox()] == [sid]
        assert [c.id for c in await client.list_containers()] == [cid]
        assert (await client.container_status(cid)).state == pb.CONTAINER_RUNNING
        assert (await client.exec_sync(cid, ["echo", "still-here"], 10)).stdout == b"still-here\n"
    finally:
        await client.close()


async def test_configmap_secret_hostpath_volumes(cri: RuntimeClient, service: Service, tmp_path: Path):
    uid = secrets.token_hex(8)
    vm = service.volumes()
    cm = Volume(
        "cfg", "configMap", data={"a.conf": "alpha\n", "b": "beta\n"},
        items=[KeyToPath("a.conf", "a.conf"), KeyToPath("b", "sub/b", mode=0o600)], default_mode=0o640,
    )  # fmt: skip
    sec = Volume("sec", "secret", data={"token": b"s3cr3t"}, default_mode=0o400)
    host_dir = tmp_path / "hostdata"
    hp = Volume("hp", "hostPath", path=str(host_dir), type="DirectoryOrCreate")
    mounts = [
        pb.Mount(container_path="/cfg", host_path=str(vm.node_publish(cm, uid)), readonly=True),
        pb.Mount(container_path="/sec", host_path=str(vm.node_publish(sec, uid)), readonly=True),
        pb.Mount(container_path="/host", host_path=str(vm.node_publish(hp, uid))),
    ]
    script = (
        "cat /cfg/a.conf /cfg/sub/b /sec/token; echo; stat -L -c %a /cfg/a.conf /cfg/sub/b /sec/token;"
        " echo from-container > /host/out; touch /cfg/x 2>/dev/null || echo ro"
    )
    cfg = pod_config("vols", uid=uid)
    sid = await cri.run_pod_sandbox(cfg)
    cid = await cri.create_container(sid, ctr_config("reader", ["sh", "-c", script], mounts=mounts), cfg)
    await cri.start_container(cid)
    st = await wait_exited(cri, cid)
    assert st.exit_code == 0, Path(st.log_path).read_text()
    assert log_lines(st.log_path) == ["alpha", "beta", "s3cr3t", "640", "600", "400", "ro"]
    assert (host_dir / "out").read_text() == "from-container\n"
    await cri.remove_pod_sandbox(sid)
    assert host_dir.is_dir()  # hostPath is the node's: never removed
    assert not vm.pod_dir(uid).exists()


async def test_image_service(cri: RuntimeClient):
    [img] = await cri.list_images("busybox")
    assert img.repo_tags == ["busybox:latest"] and img.id.startswith("sha256:")
    assert (await cri.image_status(img.id)).image.id == img.id
    assert not (await cri.image_status("nothere:1")).HasField("image")
    with pytest.raises(grpc.aio.AioRpcError) as err:  # a registry nobody serves (a closed port)
        await cri.pull_image(f"127.0.0.1:{free_port()}/nothere:1")
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "cannot reach registry" in err.value.details()
    assert await cri.pull_image("busybox") == img.id  # known name: no import needed
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cri.create_container("nope", ctr_config("x", ["true"]))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_start_latency_vs_raw_crun(cri: RuntimeClient, service: Service, capsys):
    """RunPodSandbox+CreateContainer+StartContainer -> running, against `crun run` of the bundle."""
    cri_times = []
    last = ("", "")
    for i in range(10):
        t = time.monotonic()
        sid, [cid] = await run_pod(cri, f"bench-{i}", ctr_config("s", ["sleep", "1000"]))
        assert (await cri.container_status(cid)).state == pb.CONTAINER_RUNNING
        cri_times.append(time.monotonic() - t)
        if i < 9:
            await cri.remove_pod_sandbox(sid)
        last = (sid, cid)
    # The same bundle (rootfs, namespaces of the last pod), run directly with `true`.
    bundle_src = service.state / "containers" / last[1] / "config.json"
    spec = json.loads(bundle_src.read_text())
    spec["process"]["args"] = ["true"]
    spec["linux"]["cgroupsPath"] = f"/{service.prefix}/raw"
    rt = make_runtime("crun", service.base / "rawoci")
    bundle = service.base / "rawbundle"
    bundle.mkdir(exist_ok=True)
    (bundle / "config.json").write_text(json.dumps(spec))
    raw = []
    for i in range(10):
        t = time.monotonic()
        assert rt.run(f"raw{i}", bundle) == 0, rt.last_log_lines()
        raw.append(time.monotonic() - t)
    CgroupV1(f"/{service.prefix}/raw").remove()
    med_cri, med_raw = statistics.median(cri_times) * 1000, statistics.median(raw) * 1000
    with capsys.disabled():
        print(
            f"\n[cri] RunPodSandbox+CreateContainer+StartContainer->running: median {med_cri:.0f} ms"
            f" (min {min(cri_times) * 1000:.0f} ms); raw `crun run` (create+start+exit) median {med_raw:.0f} ms"
        )
