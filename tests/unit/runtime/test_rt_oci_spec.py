"""Bundle generation: the config.json kray hands to crun/runc (no root needed)."""

from __future__ import annotations

import json

from kray.runtime.oci import (
    ALL_CAPS,
    DEFAULT_CAPS,
    MASKED_PATHS,
    ContainerConfig,
    Device,
    Mount,
    Resources,
    build_spec,
    host_rootfs_mounts,
    write_bundle,
)


def _cfg(**kw):
    base = dict(args=["sh", "-c", "echo hi"], rootfs="/r", hostname="pod-a")
    base.update(kw)
    return ContainerConfig(**base)


def test_defaults_follow_containerd():
    spec = build_spec(_cfg())
    assert spec["ociVersion"].startswith("1.")
    assert spec["process"]["args"] == ["sh", "-c", "echo hi"]
    assert spec["process"]["capabilities"]["bounding"] == list(DEFAULT_CAPS)
    assert "CAP_SYS_ADMIN" not in spec["process"]["capabilities"]["effective"]
    assert spec["linux"]["maskedPaths"] == list(MASKED_PATHS)
    assert "/proc/sys" in spec["linux"]["readonlyPaths"]
    dests = [m["destination"] for m in spec["mounts"]]
    for d in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"):
        assert d in dests
    types = {n["type"] for n in spec["linux"]["namespaces"]}
    assert types == {"pid", "mount", "network", "ipc", "uts"}
    assert spec["hostname"] == "pod-a"
    assert "HOSTNAME=pod-a" in spec["process"]["env"]
    assert any(e.startswith("PATH=") for e in spec["process"]["env"])
    assert spec["linux"]["resources"]["devices"] == [{"allow": False, "type": "a", "access": "rwm"}]
    assert spec["root"] == {"path": "/r", "readonly": False}


def test_resources_and_user():
    cfg = _cfg(
        resources=Resources(memory_limit_bytes=64 << 20, cpu_millicores=500, cpu_request_millicores=250, pids_limit=99),
        uid=1000,
        gid=100,
        additional_gids=[5],
        cwd="/work",
        env={"A": "1"},
        readonly_rootfs=True,
        cgroups_path="/kray/pod/ctr",
    )
    spec = build_spec(cfg)
    res = spec["linux"]["resources"]
    assert res["memory"] == {"limit": 64 << 20}
    assert res["cpu"] == {"period": 100_000, "quota": 50_000, "shares": 256}
    assert res["pids"] == {"limit": 99}
    assert spec["process"]["user"] == {"uid": 1000, "gid": 100, "additionalGids": [5]}
    assert spec["process"]["cwd"] == "/work"
    assert "A=1" in spec["process"]["env"]
    assert spec["root"]["readonly"] is True
    assert spec["linux"]["cgroupsPath"] == "/kray/pod/ctr"


def test_tiny_cpu_limit_gets_minimum_quota():
    assert build_spec(_cfg(resources=Resources(cpu_millicores=1)))["linux"]["resources"]["cpu"]["quota"] == 1000


def test_join_sandbox_namespaces_and_host_network():
    spec = build_spec(_cfg(join_namespaces={"network": "/var/run/netns/p", "ipc": "/x/ipc"}))
    ns = {n["type"]: n.get("path") for n in spec["linux"]["namespaces"]}
    assert ns["network"] == "/var/run/netns/p"
    assert ns["ipc"] == "/x/ipc"
    assert ns["pid"] is None and ns["mount"] is None  # always private

    host = build_spec(_cfg(host_namespaces={"network", "uts", "pid"}))
    types = {n["type"] for n in host["linux"]["namespaces"]}
    assert "network" not in types and "uts" not in types
    assert "pid" in types  # a container always gets its own pid namespace
    assert "hostname" not in host  # cannot set the node's hostname
    sysfs = [m for m in host["mounts"] if m["destination"] == "/sys"]
    assert sysfs and sysfs[0]["type"] == "bind"


def test_privileged_and_devices():
    dev = Device(path="/dev/nvidia0", type="c", major=195, minor=0)
    spec = build_spec(_cfg(privileged=True, devices=[dev]))
    assert spec["process"]["capabilities"]["bounding"] == list(ALL_CAPS)
    assert "maskedPaths" not in spec["linux"]
    assert spec["linux"]["devices"][0]["path"] == "/dev/nvidia0"
    rules = spec["linux"]["resources"]["devices"]
    assert rules[0] == {"allow": True, "type": "a", "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 195, "minor": 0, "access": "rwm"} in rules

    plain = build_spec(_cfg(devices=[dev]))
    assert plain["linux"]["resources"]["devices"][0]["allow"] is False
    assert plain["linux"]["resources"]["devices"][1]["major"] == 195


def test_user_mounts_and_host_image(tmp_path):
    spec = build_spec(_cfg(mounts=[Mount.bind("/data", "/mnt/data", readonly=True)], host_image=True))
    by_dest = {m["destination"]: m for m in spec["mounts"]}
    assert "ro" in by_dest["/mnt/data"]["options"]
    assert by_dest["/tmp"]["type"] == "tmpfs"
    assert by_dest["/usr"]["source"] == "/usr" and "ro" in by_dest["/usr"]["options"]
    assert all(m.destination not in ("/proc", "/run", "/sys") for m in host_rootfs_mounts())

    bundle = write_bundle(tmp_path / "b", _cfg())
    assert json.loads((bundle / "config.json").read_text())["process"]["args"][0] == "sh"
