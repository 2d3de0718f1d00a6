"""Image GC against the real runtime service: the image store's disk usage (CRI ImageFsInfo),
pruning what no image names, and the kubelet's ImageGC core removing the least recently used
image pulled from a real registry through a real CRI socket (process runtime: no root needed)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kray.actors.framework import FakeClock
from kray.actors.kubelet.imagegc import GCPolicy, ImageGC
from kray.runtime.cri.client import RuntimeClient
from kray.runtime.cri.server import serve
from kray.runtime.imagebuild import write_layout
from kray.runtime.images import ImageStore
from kray.runtime.procrt import ProcessRuntime
from kray.runtime.service import NodeRuntime
from tests.registryserver import Registry, start_registry


def layout(tmp: Path, name: str, size: int) -> Path:
    src = tmp / f"{name}-src"
    src.mkdir()
    (src / "payload").write_bytes(os.urandom(size))
    write_layout(tmp / name, [src], config={"Cmd": ["true"]})
    return tmp / name


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    base = tmp_path_factory.mktemp("gc-registry")
    reg = start_registry(base / "server")
    try:
        reg.push_layout(layout(base, "small", 64 << 10), "gc/small", "1")
        reg.push_layout(layout(base, "big", 1 << 20), "gc/big", "1")
        yield reg
    finally:
        reg.stop()


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[tuple[NodeRuntime, RuntimeClient]]:
    node = NodeRuntime(ProcessRuntime(tmp_path / "oci"), ImageStore(tmp_path / "images"), None, tmp_path / "state")
    server = serve(node, tmp_path / "cri.sock")
    client = RuntimeClient(tmp_path / "cri.sock")
    try:
        yield node, client
    finally:
        await client.close()
        server.stop(grace=1).wait()
        node.close()


def test_store_usage_and_prune(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images", use_overlay=False)
    before, _ = store.usage()
    info = store.import_image(layout(tmp_path, "app", 256 << 10), "app:1")
    used, inodes = store.usage()
    assert used - before >= 256 << 10 and inodes >= 3 + len(info.layers)
    orphan = store.write_blob("sha256:" + hashlib.sha256(b"orphan").hexdigest(), [b"orphan"])
    partial = store.blobs / ".deadbeef.1.2"  # what a pull that died mid-blob leaves
    partial.write_bytes(b"half")
    rootfs = store.unpack("app:1")
    assert store.prune() == []  # young: might belong to a pull in progress
    old = time.time() - 7200
    for path in (orphan, partial, *store.blobs.iterdir(), rootfs):
        os.utime(path, (old, old))
    assert sorted(store.prune()) == sorted([orphan.name, partial.name])
    assert all(store.has_blob(d) for d in (info.digest, info.config_digest, *info.layers)) and rootfs.is_dir()
    assert store.remove_image("app:1") and not rootfs.exists()
    assert list(store.blobs.iterdir()) == []


async def test_image_fs_info_and_gc_through_the_cri(
    registry: Registry, runtime: tuple[NodeRuntime, RuntimeClient]
) -> None:
    node, cri = runtime
    for repo in ("gc/small", "gc/big"):
        await cri.pull_image(f"{registry.host}/{repo}:1")
    [fs] = (await cri.image_fs_info()).image_filesystems
    assert fs.fs_id.mountpoint == str(node.images.root)
    used, inodes = node.images.usage()
    assert fs.used_bytes.value == used and fs.inodes_used.value == inodes and used > 1 << 20

    clock, warnings = FakeClock(), []

    async def warn(reason: str, message: str) -> None:
        warnings.append((reason, message))

    big, small = f"{registry.host}/gc/big:1", f"{registry.host}/gc/small:1"

    # A 10 MiB disk, 90% full while "big" is there: down to 80% means 1 MiB must go.
    def statfs(mountpoint: str) -> tuple[int, int]:
        assert mountpoint == str(node.images.root)
        held = 9 << 20 if node.images.image_status(big) else 7 << 20
        return 10 << 20, (10 << 20) - held

    gc = ImageGC(cri, clock, GCPolicy(), warn, statfs=statfs)
    await gc.detect()
    clock.advance(60)
    # "small" is used by a container later: "big" is the least recently used and goes first.
    gc.records[node.images.image_status(small).config_digest].last_used = clock.monotonic()  # type: ignore[union-attr]
    clock.advance(120)
    freed = await gc.step()
    assert [i.repo_tags[0] for i in await cri.list_images()] == [small] and freed >= 1 << 20
    assert warnings == []
    kept = {node.images.blob_path(d).name for d in blobs_of(node, small)}
    assert {p.name for p in node.images.blobs.iterdir()} == kept  # big's blobs left the disk
    assert await gc.step() == 0  # 80% now: below the high threshold


def blobs_of(node: NodeRuntime, name: str) -> list[str]:
    info = node.images.image_status(name)
    assert info is not None
    return [info.digest, info.config_digest, *info.layers]
