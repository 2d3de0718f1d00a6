"""`python -m kray.runtime --runtime process`: containers as plain host processes (no isolation),
through the real CRI service, shim and log files. Needs no root (runs as whoever runs pytest)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kray.runtime.containers import ContainerManager
from kray.runtime.cri import api_pb2 as pb
from kray.runtime.cri.client import RuntimeClient
from kray.runtime.oci import ContainerConfig
from kray.runtime.procrt import ProcessRuntime
from kray.runtime.shimfork import ShimLauncher
from tests.leftovers import session_prefix

CRI_LINE = re.compile(r"^\S+ (stdout|stderr) [FP] (.*)$")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    base = tmp_path_factory.mktemp(session_prefix("kp"))
    socket = base / "run" / "cri.sock"
    argv = [sys.executable, "-m", "kray.runtime", "--socket", str(socket), "--state-dir", str(base / "state")]
    argv += ["--runtime", "process", "--log-level", "WARNING"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        assert proc.stdout.readline().startswith("ready")
        warning = proc.stderr.readline()
        yield socket, warning
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


@pytest.fixture
async def cri(service: tuple[Path, str]) -> AsyncIterator[RuntimeClient]:
    client = RuntimeClient(service[0], timeout=30)
    await client.wait_ready(30)
    try:
        yield client
    finally:
        for sb in await client.list_pod_sandbox():
            await client.stop_pod_sandbox(sb.id)
            await client.remove_pod_sandbox(sb.id)
        await client.close()


def sandbox_config(name: str) -> pb.PodSandboxConfig:
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, namespace="default", uid=f"uid-{name}"),
        hostname=name,
        labels={"test": "process"},
    )


def container_config(name: str, argv: list[str]) -> pb.ContainerConfig:
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name),
        image=pb.ImageSpec(image="host"),
        command=argv,
        envs=[pb.KeyValue(key="GREETING", value="hello")],
        log_path=f"{name}/0.log",
    )


async def wait_exited(cri: RuntimeClient, cid: str, timeout: float = 15.0) -> pb.ContainerStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = await cri.container_status(cid)
        if st.state == pb.CONTAINER_EXITED:
            return st
        await asyncio.sleep(0.05)
    raise AssertionError(f"container {cid} did not exit: {st}")


def log_lines(path: str) -> list[tuple[str, str]]:
    out = []
    for line in Path(path).read_text().splitlines():
        m = CRI_LINE.match(line)
        assert m, f"not a CRI log line: {line!r}"
        out.append((m.group(1), m.group(2)))
    return out


def pids_with(marker: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found if int(p) != os.getpid()]


def test_warns_loudly(service: tuple[Path, str]) -> None:
    assert "NO ISOLATION" in service[1]


async def test_runs_logs_and_records_exit_code(cri: RuntimeClient) -> None:
    status = await cri.status(verbose=True)
    assert json.loads(status.info["runtime"]) == {"oci": "process", "isolated": False}
    # Host network for every pod: the kubelet may report its Node Ready.
    assert {c.type: c.status for c in status.status.conditions} == {"RuntimeReady": True, "NetworkReady": True}
    sid = await cri.run_pod_sandbox(sandbox_config("p1"))
    assert (await cri.pod_sandbox_status(sid)).status.network.ip == ""  # the host's network
    script = 'echo "$GREETING from $$"; echo oops >&2; exit 3'
    cid = await cri.create_container(sid, container_config("c", ["sh", "-c", script]))
    assert (await cri.container_status(cid)).state == pb.CONTAINER_CREATED
    await cri.start_container(cid)
    st = await wait_exited(cri, cid)
    assert st.exit_code == 3 and st.reason == "Error"
    assert st.started_at <= st.finished_at
    lines = log_lines(st.log_path)
    assert ("stderr", "oops") in lines
    out = [text for stream, text in lines if stream == "stdout"]
    assert len(out) == 1 and out[0].startswith("hello from ")
    # A host process: the pid it printed was a real pid of this machine's namespace.
    assert int(out[0].rsplit(" ", 1)[1]) > 1


async def test_stop_exec_and_remove_leave_no_process(cri: RuntimeClient) -> None:
    marker = f"krproc{secrets.token_hex(4)}"
    sid = await cri.run_pod_sandbox(sandbox_config("p2"))
    # The child `sleep` is what a process runtime forgets most easily: it must go with the pod.
    # (`sleep 1; true` keeps each sh from exec'ing sleep, so the marker stays in a command line)
    argv = ["sh", "-c", f"sh -c 'sleep 300; true' {marker}-child & exec sh -c 'sleep 301; true' {marker}"]
    cid = await cri.create_container(sid, container_config("long", argv))
    await cri.start_container(cid)
    for _ in range(100):
        if len(pids_with(marker)) >= 2:
            break
        await asyncio.sleep(0.05)
    assert len(pids_with(marker)) >= 2
    assert (await cri.container_status(cid)).state == pb.CONTAINER_RUNNING
    res = await cri.exec_sync(cid, ["sh", "-c", "echo exec-ok"], timeout=10)
    assert res.exit_code == 0 and res.stdout == b"exec-ok\n"
    await cri.stop_container(cid, timeout=5)
    st = await wait_exited(cri, cid)
    assert st.exit_code == 143  # SIGTERM, as a container's init would report it
    await cri.stop_pod_sandbox(sid)
    await cri.remove_pod_sandbox(sid)
    for _ in range(100):
        if not pids_with(marker):
            break
        await asyncio.sleep(0.05)
    assert pids_with(marker) == []
    assert await cri.list_containers() == []


def test_shim_launcher_forks_shims_and_comes_back_after_close(tmp_path: Path) -> None:
    """The warm shim launcher (shimfork.py) behind ContainerManager: a container's shim is forked
    from it, records the exit code and log; closed, it is gone; the next create starts it again."""
    rt = ProcessRuntime(tmp_path / "oci")
    launcher = ShimLauncher(tmp_path / "shimfork.sock")
    containers = ContainerManager(rt, tmp_path / "containers", launcher=launcher)
    try:
        for i in range(2):
            cid = f"c{i}"
            cfg = ContainerConfig(args=["sh", "-c", f"echo run-{i}; exit {i + 4}"], rootfs=str(tmp_path))
            containers.create(cid, cfg, tmp_path / "logs" / f"{cid}.log")
            containers.start(cid)
            st = containers.wait(cid, 15)
            assert st.state == "exited" and st.exit_code == i + 4, st
            assert (tmp_path / "logs" / f"{cid}.log").read_text().split()[1:] == ["stdout", "F", f"run-{i}"]
            helper = launcher.proc
            assert helper is not None and helper.poll() is None
            launcher.close()
            assert helper.poll() is not None and not (tmp_path / "shimfork.sock").exists()
    finally:
        for st in containers.list():
            containers.remove(st.id)
        launcher.close()
