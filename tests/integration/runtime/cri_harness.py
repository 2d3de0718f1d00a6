"""The CRI runtime service as the tests run it: `python -m kray.runtime` on a temp unix socket with
real crun, named after a random prefix, and the helpers that drive it through RuntimeClient.
The ``service`` (one per test module) and ``cri`` fixtures live in conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kray.runtime.cgroups import CgroupV1
from kray.runtime.cri import api_pb2 as pb
from kray.runtime.cri.client import RuntimeClient
from kray.runtime.images import ImageStore
from kray.runtime.network import NETNS_DIR, BridgeNetwork, NetworkConfig
from kray.runtime.ocirt import make_runtime
from kray.runtime.service import NodeRuntime
from kray.runtime.volumes import VolumeManager

CRI_LINE = re.compile(rb"^\S+ (stdout|stderr) [FP] (.*)$")


@dataclass
class Service:
    prefix: str
    base: Path
    socket: Path
    subnet: str
    proc: subprocess.Popen[str] | None = None

    @property
    def state(self) -> Path:
        return self.base / "state"

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "kray.runtime",
            "--socket", str(self.socket),
            "--state-dir", str(self.state),
            "--subnet", self.subnet,
            "--runtime", "crun",
            "--bridge", f"{self.prefix}br",
            "--prefix", self.prefix,
            "--cgroup-root", self.prefix,
            "--log-level", "WARNING",
        ]  # fmt: skip

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "ready <socket>" once it listens
        assert line.startswith("ready"), f"service did not start: {line!r}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def volumes(self) -> VolumeManager:
        return VolumeManager(self.state / "pods")

    def hard_cleanup(self) -> None:
        """Whatever the tests left: through a NodeRuntime on the same state, then by name."""
        self.stop()
        net = BridgeNetwork(
            NetworkConfig(
                subnet=self.subnet, state_dir=self.state / "net", prefix=self.prefix, bridge=f"{self.prefix}br"
            )
        )
        rt = make_runtime("crun", self.state / "oci")
        node = NodeRuntime(rt, ImageStore(self.state / "images"), net, self.state, cgroup_root=self.prefix)
        for sb in node.sandboxes():
            with contextlib.suppress(Exception):
                node.remove_sandbox(sb.id)
        for d in (self.state / "sandboxes").glob("*"):
            with contextlib.suppress(Exception):
                node.remove_sandbox(d.name)
        with contextlib.suppress(Exception):
            for c in rt.list():
                rt.delete(c["id"], force=True)
        for pod in net.sandboxes():
            net.teardown(pod)
        for ns in NETNS_DIR.glob(f"{self.prefix}*") if NETNS_DIR.is_dir() else []:
            subprocess.run(["ip", "netns", "del", ns.name], capture_output=True)
        net.delete_bridge()
        CgroupV1(f"/{self.prefix}").remove(timeout=5.0)
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        for m in sorted((m for m in mounts if m.startswith(str(self.base))), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


def pod_config(name: str, uid: str | None = None, **kw: object) -> pb.PodSandboxConfig:
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, namespace="default", uid=uid or secrets.token_hex(8)),
        labels={"app": name},
        **kw,  # type: ignore[arg-type]
    )


def ctr_config(name: str, args: list[str], **kw: object) -> pb.ContainerConfig:
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name),
        image=pb.ImageSpec(image="busybox"),
        command=args[:1],
        args=args[1:],
        labels={"ctr": name},
        **kw,  # type: ignore[arg-type]
    )


async def run_pod(cri: RuntimeClient, name: str, *containers: pb.ContainerConfig) -> tuple[str, list[str]]:
    cfg = pod_config(name)
    sid = await cri.run_pod_sandbox(cfg)
    cids = []
    for c in containers:
        cid = await cri.create_container(sid, c, cfg)
        await cri.start_container(cid)
        cids.append(cid)
    return sid, cids


async def wait_exited(cri: RuntimeClient, cid: str, timeout: float = 30) -> pb.ContainerStatus:
    deadline = time.monotonic() + timeout
    while True:
        st = await cri.container_status(cid)
        if st.state == pb.CONTAINER_EXITED or time.monotonic() > deadline:
            return st
        await asyncio.sleep(0.05)


def log_lines(path: str, stream: bytes = b"stdout") -> list[str]:
    out = []
    for raw in Path(path).read_bytes().splitlines():
        m = CRI_LINE.match(raw)
        assert m, raw
        if m.group(1) == stream:
            out.append(m.group(2).decode())
    return out
