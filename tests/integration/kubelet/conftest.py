"""A real node for kubelet tests: `python -m kray.runtime` (crun) on a temp socket, an API server
thread (MemoryKV), and helpers that start a kubelet core (with its log endpoint) in the test's
loop. Everything is named after a random prefix and removed at module teardown."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubelet_node import RunningKubelet

import kray.crds  # noqa: F401
from kray.actors.apiserver import ApiServer
from kray.actors.apiserver.server import ServerThread
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient
from kray.crds.registry import REGISTRY
from kray.runtime.cgroups import CgroupV1
from kray.runtime.images import ImageStore
from kray.runtime.network import NETNS_DIR, BridgeNetwork, NetworkConfig
from kray.runtime.ocirt import make_runtime
from kray.runtime.service import NodeRuntime
from tests.leftovers import session_prefix

REPO = Path(__file__).resolve().parents[3]
TOKEN = "kubelet-test"


@dataclass
class Node:
    prefix: str
    base: Path
    subnet: str
    image_tar: Path
    proc: subprocess.Popen[str] | None = None

    @property
    def socket(self) -> Path:
        return self.base / "run" / "cri.sock"

    @property
    def state(self) -> Path:
        return self.base / "state"

    def start(self) -> None:
        argv = [sys.executable, "-m", "kray.runtime", "--socket", str(self.socket), "--state-dir", str(self.state)]
        argv += ["--subnet", self.subnet, "--runtime", "crun", "--bridge", f"{self.prefix}br"]
        argv += ["--prefix", self.prefix, "--cgroup-root", self.prefix, "--log-level", "WARNING"]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, text=True, env={**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "0"}
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("ready"), line

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def leftovers(self) -> list[str]:
        """What of this node is still on the machine (should be nothing after cleanup)."""
        out = []
        if NETNS_DIR.is_dir():
            out += [f"netns {p.name}" for p in NETNS_DIR.glob(f"{self.prefix}*")]
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        out += [f"link {ln.split(':')[1].strip()}" for ln in links.splitlines() if self.prefix in ln]
        if CgroupV1(f"/{self.prefix}").exists():
            for d in Path("/sys/fs/cgroup").glob(f"**/{self.prefix}/*"):
                if d.is_dir():
                    out.append(f"cgroup {d}")
        mounts = Path("/proc/self/mountinfo").read_text()
        out += [f"mount {ln.split()[4]}" for ln in mounts.splitlines() if str(self.base) in ln.split()[4]]
        shims = subprocess.run(["pgrep", "-f", str(self.state)], capture_output=True, text=True).stdout.split()
        me = str(self.proc.pid) if self.proc else ""
        out += [f"process {p}" for p in shims if p != me]
        return out

    def hard_cleanup(self) -> None:
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
        with contextlib.suppress(Exception):
            for c in rt.list():
                rt.delete(c["id"], force=True)
        for pod in net.sandboxes():
            net.teardown(pod)
        net.delete_bridge()
        CgroupV1(f"/{self.prefix}").remove(timeout=5.0)
        mounts = [ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()]
        for m in sorted((m for m in mounts if m.startswith(str(self.base))), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def image_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not shutil.which("busybox") or not shutil.which("crun"):
        pytest.skip("busybox-static and crun needed")
    out = tmp_path_factory.mktemp("img") / "busybox.tar"
    subprocess.run(
        ["bash", str(REPO / "scripts" / "build_test_image.sh"), str(out)], check=True, cwd=REPO, capture_output=True
    )
    return out


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, image_tar: Path) -> Iterator[Node]:
    prefix = session_prefix("kk")
    subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}.0/24"
    n = Node(prefix, tmp_path_factory.mktemp(prefix), subnet, image_tar)
    try:
        n.start()
        yield n
    finally:
        n.hard_cleanup()


@pytest.fixture(scope="module")
def apiserver() -> Iterator[ServerThread]:
    kv = MemoryKV()
    thread = ServerThread(ApiServer(ObjectStore(kv, REGISTRY), REGISTRY, token=TOKEN))
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture
async def client(apiserver: ServerThread) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server=apiserver.url, token=TOKEN) as c:
        yield c


@pytest.fixture
async def kubelet(node: Node, client: AsyncClient) -> AsyncIterator[RunningKubelet]:
    """A kubelet core on the module's node, in the test's loop."""
    k = await RunningKubelet(node, client).start()
    try:
        yield k
    finally:
        await k.stop()
