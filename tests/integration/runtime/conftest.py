"""Fixtures for real containers: everything is named after a random prefix and removed in
`finally` blocks (containers, rootfs mounts, cgroups, netns, veths, bridge, temp dirs)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from cri_harness import Service

from kray.runtime.cgroups import CgroupV1
from kray.runtime.containers import ContainerManager
from kray.runtime.cri.client import RuntimeClient
from kray.runtime.images import ImageStore
from kray.runtime.network import NETNS_DIR, BridgeNetwork, NetworkConfig
from kray.runtime.oci import ContainerConfig
from kray.runtime.ocirt import CliRuntime, make_runtime
from tests.leftovers import session_prefix

REPO = Path(__file__).resolve().parents[3]


def _root_ok() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not shutil.which("busybox"):
        return "busybox-static not installed (scripts/install_system.sh)"
    return None


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = _root_ok()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("img") / "busybox.tar"
    subprocess.run(["bash", str(REPO / "scripts" / "build_test_image.sh"), str(out)], check=True, cwd=REPO)
    return out


@dataclass
class Node:
    """One test's slice of a node: its own runtime root, image store, containers and cgroups."""

    prefix: str
    base: Path
    runtime: CliRuntime
    images: ImageStore
    containers: ContainerManager
    made: list[str] = field(default_factory=list)

    @property
    def cgroup_root(self) -> str:
        return f"/{self.prefix}"

    def config(self, cid: str, args: list[str], image: str = "busybox", **kw: object) -> ContainerConfig:
        """A container config with a fresh rootfs from `image`, in this node's cgroup tree."""
        d = self.containers.dir(cid)
        mode = self.images.mount_rootfs(image, d / "rootfs", self.base / "scratch" / cid)
        kw.setdefault("cgroups_path", f"{self.cgroup_root}/pod/{cid}")
        kw.setdefault("hostname", cid)
        return ContainerConfig(args=args, rootfs=str(d / "rootfs"), host_image=(mode == "host"), **kw)  # type: ignore[arg-type]

    def run(self, cid: str, cfg: ContainerConfig, timeout: float = 30.0):
        self.made.append(cid)
        log = self.base / "logs" / f"{cid}.log"
        self.containers.create(cid, cfg, log)
        self.containers.start(cid)
        return self.containers.wait(cid, timeout)

    def log(self, cid: str) -> str:
        p = self.base / "logs" / f"{cid}.log"
        return p.read_text() if p.exists() else ""

    def cleanup(self) -> None:
        for st in self.containers.list():
            with contextlib.suppress(Exception):
                self.containers.remove(st.id)
        with contextlib.suppress(Exception):
            for c in self.runtime.list():
                self.runtime.delete(c["id"], force=True)
        for d in (self.base / "containers").glob("*/rootfs"):
            ImageStore.unmount_rootfs(d)
        CgroupV1(self.cgroup_root).remove(timeout=5.0)


def make_node(tmp_path: Path, runtime_name: str) -> Node:
    prefix = session_prefix("kt")
    base = tmp_path / prefix
    rt = make_runtime(runtime_name, base / "oci")
    return Node(
        prefix=prefix,
        base=base,
        runtime=rt,
        images=ImageStore(base / "images"),
        containers=ContainerManager(rt, base / "containers"),
    )


@pytest.fixture(params=["crun", "runc"])
def node(request: pytest.FixtureRequest, tmp_path: Path, busybox_tar: Path) -> Iterator[Node]:
    if not shutil.which(request.param) and not os.path.exists(f"/usr/sbin/{request.param}"):
        pytest.skip(f"{request.param} not installed")
    n = make_node(tmp_path, request.param)
    try:
        n.images.import_image(busybox_tar, "busybox:latest")
        yield n
    finally:
        n.cleanup()


@pytest.fixture
def crun_node(tmp_path: Path, busybox_tar: Path) -> Iterator[Node]:
    n = make_node(tmp_path, "crun")
    try:
        n.images.import_image(busybox_tar, "busybox:latest")
        yield n
    finally:
        n.cleanup()


@pytest.fixture
def bridge(crun_node: Node) -> Iterator[BridgeNetwork]:
    # A /24 unlikely to be in use on a test machine, different per test.
    subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}.0/24"
    net = BridgeNetwork(
        NetworkConfig(
            subnet=subnet,
            state_dir=crun_node.base / "net",
            prefix=crun_node.prefix,
            bridge=f"{crun_node.prefix}br",
        )
    )
    try:
        yield net
    finally:
        crun_node.cleanup()  # containers first: they hold the namespaces
        for pod in net.sandboxes():
            net.teardown(pod)
        net.delete_bridge()


# --- the CRI service (cri_harness.py), one per test module that uses it ---


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> Iterator[Service]:
    if not shutil.which("crun"):
        pytest.skip("crun not installed")
    prefix = session_prefix("kc")
    base = tmp_path_factory.mktemp(prefix)
    subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}.0/24"
    svc = Service(prefix, base, base / "run" / "cri.sock", subnet)
    try:
        svc.start()
        yield svc
    finally:
        svc.hard_cleanup()
        assert not (NETNS_DIR / f"{prefix}").exists()
        assert not CgroupV1(f"/{prefix}").exists()


@pytest.fixture
async def cri(service: Service, busybox_tar: Path) -> AsyncIterator[RuntimeClient]:
    client = RuntimeClient(service.socket, timeout=60)
    await client.wait_ready(30)
    if not await client.list_images("busybox"):
        await client.pull_image(f"oci-archive:{busybox_tar}:busybox:latest")
    try:
        yield client
    finally:
        with contextlib.suppress(grpc.aio.AioRpcError):
            for sb in await client.list_pod_sandbox():
                await client.remove_pod_sandbox(sb.id)
        await client.close()
