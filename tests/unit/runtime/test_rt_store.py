"""Image store, IPAM, CRI log writer and cgroup removal without root."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from kray.runtime.cgroups import CgroupV1
from kray.runtime.imagebuild import write_layout, write_layout_tar
from kray.runtime.images import ImageError, ImageStore, normalize
from kray.runtime.network import HostLocalIpam, NetworkConfig, NetworkError
from kray.runtime.shim import CriLogWriter, rfc3339_nano


def _layers(tmp: Path) -> list[Path]:
    base = tmp / "l1"
    (base / "etc").mkdir(parents=True)
    (base / "etc" / "keep").write_text("keep")
    (base / "etc" / "gone").write_text("gone")
    (base / "opq").mkdir()
    (base / "opq" / "old").write_text("old")
    (base / "tmp").mkdir()
    os.chmod(base / "tmp", 0o1777)
    top = tmp / "l2"
    (top / "etc").mkdir(parents=True)
    (top / "etc" / ".wh.gone").write_text("")
    (top / "opq").mkdir()
    (top / "opq" / ".wh..wh..opq").write_text("")
    (top / "opq" / "new").write_text("new")
    (top / "added").write_text("added")
    return [base, top]


def test_import_whiteouts_and_remove(tmp_path):
    out = tmp_path / "img.tar"
    write_layout_tar(out, _layers(tmp_path), {"Cmd": ["sh"]})
    store = ImageStore(tmp_path / "store", use_overlay=False)
    info = store.import_image(out, "demo")
    assert info.name == "demo:latest" and len(info.layers) == 2 and info.config["Cmd"] == ["sh"]
    assert [i.name for i in store.list_images()] == ["demo:latest"]
    assert store.image_status("demo:latest").digest == info.digest

    root = store.unpack("demo")
    assert (root / "etc" / "keep").read_text() == "keep"
    assert not (root / "etc" / "gone").exists()
    assert not (root / "etc" / ".wh.gone").exists()
    assert sorted(p.name for p in (root / "opq").iterdir()) == ["new"]
    assert (root / "added").exists()
    assert (root / "tmp").stat().st_mode & 0o7777 == 0o1777  # sticky bit kept
    assert store.unpack("demo") == root  # cached

    # Each container gets its own copy (overlay disabled here): writes do not reach the cache.
    mode = store.mount_rootfs("demo", tmp_path / "c1" / "rootfs", tmp_path / "c1" / "scratch")
    assert mode == "copy"
    (tmp_path / "c1" / "rootfs" / "etc" / "keep").write_text("changed")
    assert (root / "etc" / "keep").read_text() == "keep"

    assert store.remove_image("demo") is True
    assert store.image_status("demo") is None
    assert not root.exists() and list(store.blobs.iterdir()) == []
    assert store.remove_image("demo") is False
    with pytest.raises(ImageError):
        store.unpack("demo")


def test_import_layout_dir_and_bad_digest(tmp_path):
    layout = tmp_path / "layout"
    write_layout(layout, _layers(tmp_path)[:1], ref="v1")
    store = ImageStore(tmp_path / "store")
    assert store.import_image(layout, "x:v1").name == "x:v1"
    blob = next(
        p
        for p in (layout / "blobs" / "sha256").iterdir()
        if p.stat().st_size > 100 and p.read_bytes()[:2] == b"\x1f\x8b"
    )
    blob.write_bytes(b"tampered")
    with pytest.raises(ImageError):
        ImageStore(tmp_path / "store2").import_image(layout, "y")
    assert normalize("a/b") == "a/b:latest" and normalize("h:5000/a") == "h:5000/a:latest"


def test_ipam_persists_across_allocators(tmp_path):
    state = tmp_path / "ipam.json"
    a = HostLocalIpam("10.77.0.0/29", state)
    assert a.gateway == "10.77.0.1"
    ip1 = a.allocate("pod1")
    ip2 = a.allocate("pod2")
    assert ip1 == "10.77.0.2" and ip2 == "10.77.0.3"
    assert a.allocate("pod1") == ip1  # idempotent
    b = HostLocalIpam("10.77.0.0/29", state)  # "after a restart"
    assert b.allocations() == {"pod1": ip1, "pod2": ip2}
    assert b.allocate("pod3") == "10.77.0.4"
    assert b.release("pod1") == ip1
    assert b.allocate("pod4") == ip1  # freed address is reused
    b.allocate("pod5"), b.allocate("pod6")
    with pytest.raises(NetworkError):
        b.allocate("pod7")
    assert json.loads(state.read_text())["subnet"] == "10.77.0.0/29"
    with pytest.raises(NetworkError):
        NetworkConfig(subnet="10.0.0.0/24", state_dir=tmp_path, bridge="x" * 16)


def test_cri_log_format(tmp_path):
    log = tmp_path / "c.log"
    w = CriLogWriter(log)
    r, wr = os.pipe()
    os.write(wr, b"one\ntwo\n" + b"x" * 20000 + b"\nlast-no-newline")
    os.close(wr)
    w.pump("stdout", r)
    w.close()
    lines = log.read_bytes().split(b"\n")[:-1]
    pat = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) (F|P) ")
    assert all(pat.match(line) for line in lines)
    assert lines[0].endswith(b"stdout F one") and lines[1].endswith(b"stdout F two")
    assert b" P " in lines[2] and lines[3].endswith(b"x" * (20000 - 16384))
    assert lines[4].endswith(b"F last-no-newline")
    assert rfc3339_nano(0) == "1970-01-01T00:00:00.000000000Z"
    assert time.time_ns()  # keep import


def test_cgroup_remove_leaf_then_empty_parents(tmp_path):
    for c in ("memory", "pids"):
        (tmp_path / c / "kray" / "pod" / "ctr" / "sub").mkdir(parents=True)
        (tmp_path / c / "kray" / "pod" / "other").mkdir(parents=True)
    assert CgroupV1("/kray/pod/ctr", root=tmp_path).remove(parents_up_to="/kray")
    assert not (tmp_path / "memory" / "kray" / "pod" / "ctr").exists()
    assert (tmp_path / "memory" / "kray" / "pod" / "other").exists()  # a sibling keeps the parent
    assert CgroupV1("/kray/pod/other", root=tmp_path).remove(parents_up_to="/kray")
    assert not (tmp_path / "pids" / "kray" / "pod").exists()
    assert (tmp_path / "pids" / "kray").exists()
