"""Unit tests for CRI log reading, pod volumes and the CRI -> OCI container translation."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from kray.runtime import logs
from kray.runtime.cri import api_pb2 as pb
from kray.runtime.cri.ocispec import PodContext, SpecError, container_config
from kray.runtime.oci import DEFAULT_CAPS, build_spec
from kray.runtime.volumes import KeyToPath, Volume, VolumeError, VolumeManager


def _rec(ts: str, stream: str, tag: str, text: str) -> bytes:
    return f"{ts} {stream} {tag} {text}\n".encode()


def test_read_log_tail_since_streams_partial(tmp_path: Path):
    p = tmp_path / "c" / "0.log"
    p.parent.mkdir()
    p.write_bytes(
        _rec("2024-01-01T00:00:00.000000001Z", "stdout", "F", "one")
        + _rec("2024-01-01T00:00:01.000000000Z", "stderr", "F", "err")
        + _rec("2024-01-01T00:00:02.000000000Z", "stdout", "P", "long-")
        + _rec("2024-01-01T00:00:02.500000000Z", "stdout", "P", "line-")
        + _rec("2024-01-01T00:00:03.000000000Z", "stdout", "F", "end")
        + b"2024-01-01T00:00:04.000000000Z stdout F being-writ"  # no newline yet
    )
    assert [x.text() for x in logs.read_log(p)] == ["one", "err", "long-line-end"]
    assert [x.text() for x in logs.read_log(p, tail=1)] == ["long-line-end"]
    assert logs.read_log(p, tail=0) == []
    assert [x.text() for x in logs.read_log(p, streams=("stderr",))] == ["err"]
    since = logs.parse_time("2024-01-01T00:00:01Z")
    lines = logs.read_log(p, since_ns=since)
    assert [x.text() for x in lines] == ["err", "long-line-end"]
    assert lines[1].time_ns == logs.parse_time("2024-01-01T00:00:02Z")  # a joined line keeps its first time
    assert logs.parse_time("2024-01-01T01:00:00+01:00") == logs.parse_time("2024-01-01T00:00:00Z")


def test_follow_sees_new_lines_and_stops(tmp_path: Path):
    p = tmp_path / "0.log"
    p.write_bytes(
        _rec("2024-01-01T00:00:00Z", "stdout", "F", "old1") + _rec("2024-01-01T00:00:00Z", "stdout", "F", "old2")
    )
    done = threading.Event()

    def writer() -> None:
        with open(p, "ab") as f:
            for i in range(3):
                time.sleep(0.05)
                f.write(_rec("2024-01-01T00:00:01Z", "stdout", "F", f"new{i}"))
                f.flush()
        done.set()

    threading.Thread(target=writer).start()
    got = [x.text() for x in logs.follow(p, tail=1, stop=done.is_set, poll=0.01)]
    assert got == ["old2", "new0", "new1", "new2"]


def test_log_paths_keep_previous(tmp_path: Path):
    assert logs.log_path(tmp_path, "main", 2) == tmp_path / "main" / "2.log"
    assert logs.previous_log_path(tmp_path, "main") is None
    for n in (0, 1, 10):
        logs.log_path(tmp_path, "main", n).parent.mkdir(exist_ok=True)
        logs.log_path(tmp_path, "main", n).write_text("")
    assert logs.previous_log_path(tmp_path, "main") == tmp_path / "main" / "1.log"


def test_configmap_projection_modes_and_atomic_update(tmp_path: Path):
    vm = VolumeManager(tmp_path / "pods")
    vol = Volume(
        "cfg", "configMap", data={"a": "1", "b": b"2"}, items=[KeyToPath("a", "x/a", 0o600), KeyToPath("b", "b")]
    )
    vol.default_mode = 0o640
    target = vm.node_publish(vol, "uid1")
    assert target == tmp_path / "pods" / "uid1" / "volumes" / "configMap" / "cfg"
    assert (target / "x" / "a").read_text() == "1" and (target / "b").read_text() == "2"
    assert stat.S_IMODE(os.stat(target / "x" / "a").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(target / "b").st_mode) == 0o640
    assert os.readlink(target / "b") == "..data/b"
    first = os.readlink(target / "..data")
    vol.data = {"a": "changed"}
    vol.items = None
    vm.node_publish(vol, "uid1")
    assert (target / "a").read_text() == "changed"
    assert not (target / "b").exists() and not (target / first).exists()
    with pytest.raises(VolumeError, match="inside"):
        vm.node_publish(Volume("bad", "configMap", data={"k": "v"}, items=[KeyToPath("k", "../escape")]), "uid1")
    with pytest.raises(VolumeError, match="not in the data"):
        vm.node_publish(Volume("miss", "configMap", data={}, items=[KeyToPath("k", "k")]), "uid1")
    vm.cleanup_pod("uid1")
    assert not (tmp_path / "pods" / "uid1").exists()


def test_hostpath_types_and_emptydir(tmp_path: Path):
    vm = VolumeManager(tmp_path / "pods")
    d = tmp_path / "made"
    assert vm.node_publish(Volume("h", "hostPath", path=str(d), type="DirectoryOrCreate"), "u") == d and d.is_dir()
    f = tmp_path / "f.txt"
    vm.node_publish(Volume("h", "hostPath", path=str(f), type="FileOrCreate"), "u")
    assert f.is_file()
    with pytest.raises(VolumeError, match="not a Directory"):
        vm.node_publish(Volume("h", "hostPath", path=str(f), type="Directory"), "u")
    with pytest.raises(VolumeError, match="does not exist"):
        vm.node_publish(Volume("h", "hostPath", path=str(tmp_path / "nope"), type="File"), "u")
    with pytest.raises(VolumeError, match="unknown type"):
        vm.node_publish(Volume("h", "hostPath", path=str(d), type="Bogus"), "u")
    e = vm.node_publish(Volume("scratch", "emptyDir"), "u")
    assert e.is_dir() and stat.S_IMODE(os.stat(e).st_mode) == 0o777
    vm.cleanup_pod("u")
    assert not e.exists() and d.is_dir() and f.is_file()  # hostPath content is the node's


def _pod(**kw: object) -> PodContext:
    base: dict[str, object] = {
        "hostname": "pod-a",
        "cgroup_parent": "/kray/podx",
        "netns_path": "/var/run/netns/x",
        "ipc_path": "/s/ns/ipc",
        "uts_path": "/s/ns/uts",
    }
    base.update(kw)
    return PodContext(**base)  # type: ignore[arg-type]


def _rootfs(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")
    return tmp_path


def test_container_config_image_defaults_env_user(tmp_path: Path):
    image = {
        "Entrypoint": ["/entry"],
        "Cmd": ["--flag"],
        "Env": ["PATH=/bin", "A=img"],
        "WorkingDir": "/w",
        "User": "app",
    }
    cfg = pb.ContainerConfig(envs=[pb.KeyValue(key="A", value="ctr")])
    c = container_config(cfg, image, _rootfs(tmp_path), False, _pod(), "cid1")
    assert c.args == ["/entry", "--flag"] and c.cwd == "/w" and c.env == {"PATH": "/bin", "A": "ctr"}
    assert (c.uid, c.gid) == (1000, 1001)
    assert c.join_namespaces == {"network": "/var/run/netns/x", "ipc": "/s/ns/ipc", "uts": "/s/ns/uts"}
    assert c.cgroups_path == "/kray/podx/cid1" and c.hostname == "pod-a"
    # A command given replaces Entrypoint and drops the image's Cmd (Kubernetes semantics).
    cfg = pb.ContainerConfig(command=["sh"])
    cfg.linux.security_context.run_as_user.value = 7
    cfg.linux.security_context.run_as_username = "ignored"
    c = container_config(cfg, image, tmp_path, False, _pod(), "c")
    assert c.args == ["sh"] and (c.uid, c.gid) == (7, 0)
    cfg = pb.ContainerConfig(command=["sh"])
    cfg.linux.security_context.run_as_username = "app:staff"
    assert container_config(cfg, {}, tmp_path, False, _pod(), "c").gid == 50
    cfg.linux.security_context.run_as_username = "ghost"
    with pytest.raises(SpecError, match="ghost"):
        container_config(cfg, {}, tmp_path, False, _pod(), "c")
    with pytest.raises(SpecError, match="no command"):
        container_config(pb.ContainerConfig(), {}, tmp_path, False, _pod(), "c")


def test_container_config_resources_caps_mounts_hostnet(tmp_path: Path):
    src = tmp_path / "data"
    src.mkdir()
    cfg = pb.ContainerConfig(
        command=["sh"],
        mounts=[
            pb.Mount(
                container_path="/data", host_path=str(src), readonly=True, propagation=pb.PROPAGATION_HOST_TO_CONTAINER
            )
        ],
    )
    r = cfg.linux.resources
    r.cpu_period, r.cpu_quota, r.cpu_shares, r.memory_limit_in_bytes, r.pids_limit = 50_000, 25_000, 102, 1 << 30, 64
    cfg.linux.security_context.capabilities.add_capabilities.append("NET_ADMIN")
    cfg.linux.security_context.capabilities.drop_capabilities.append("CAP_KILL")
    pod = _pod(etc_files={"/etc/hosts": "/s/etc/hosts"}, shm_path="/s/shm")
    spec = build_spec(container_config(cfg, {}, tmp_path, False, pod, "c"))
    res = spec["linux"]["resources"]
    assert res["cpu"] == {"period": 50_000, "quota": 25_000, "shares": 102}  # passed through exactly
    assert res["memory"] == {"limit": 1 << 30} and res["pids"] == {"limit": 64}
    caps = spec["process"]["capabilities"]["bounding"]
    assert "CAP_NET_ADMIN" in caps and "CAP_KILL" not in caps and len(caps) == len(DEFAULT_CAPS)
    binds = {m["destination"]: m for m in spec["mounts"] if m["type"] == "bind"}
    assert binds["/data"]["options"] == ["rbind", "rslave", "ro"]
    assert binds["/etc/hosts"]["source"] == "/s/etc/hosts" and binds["/dev/shm"]["source"] == "/s/shm"
    with pytest.raises(SpecError, match="does not exist"):
        container_config(
            pb.ContainerConfig(command=["sh"], mounts=[pb.Mount(container_path="/x", host_path="/nope/x")]),
            {}, tmp_path, False, _pod(), "c",
        )  # fmt: skip
    hostnet = container_config(
        pb.ContainerConfig(command=["sh"]), {}, tmp_path, False, _pod(netns_path=None, ipc_path=None), "c"
    )
    assert hostnet.host_namespaces == {"network", "uts", "ipc"} and hostnet.join_namespaces == {}
