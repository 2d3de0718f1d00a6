"""Real busybox containers through crun and runc, supervised by the shim (root only)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from kray.runtime.cgroups import CgroupV1
from kray.runtime.oci import Resources, write_bundle
from kray.runtime.shim import STATE_FILE

pytestmark = pytest.mark.root

CRI_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) [FP] (.*)$")


def _lines(log: str, stream: str = "stdout") -> list[str]:
    out = []
    for line in log.splitlines():
        m = CRI_LINE.match(line)
        assert m, f"not CRI format: {line!r}"
        if m.group(1) == stream:
            out.append(m.group(2))
    return out


def test_busybox_container(node):
    cfg = node.config("c1", ["sh", "-c", "echo hello; hostname; ps -o pid,comm; echo oops >&2"], hostname="boxy")
    st = node.run("c1", cfg)
    assert st.state == "exited" and st.exit_code == 0 and st.reason == "Completed", st
    assert not st.oom_killed and st.started_at and st.finished_at
    log = node.log("c1")
    out = _lines(log)
    assert out[0] == "hello"
    assert out[1] == "boxy"
    procs = [line.split() for line in out[2:] if line.strip() and not line.lstrip().startswith("PID")]
    # Own pid namespace: only the shell (pid 1) and ps itself.
    assert [p[0] for p in procs] == ["1", procs[1][0]] and len(procs) == 2, out
    assert _lines(log, "stderr") == ["oops"]
    # The shim wrote the outcome to disk, deleted the container and its cgroup leaf.
    state = json.loads((node.containers.dir("c1") / STATE_FILE).read_text())
    assert state["exit_code"] == 0 and state["runtime"] == node.runtime.name
    deadline = time.monotonic() + 5
    while (node.runtime.state("c1") is not None or CgroupV1(cfg.cgroups_path).exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert node.runtime.state("c1") is None
    assert not CgroupV1(cfg.cgroups_path).exists()


def test_exit_code_and_shim_detached(node):
    st = node.run("c2", node.config("c2", ["sh", "-c", "exit 3"]))
    assert st.exit_code == 3 and st.reason == "Error"
    # The shim is not our child: it was re-parented away from the caller by the double fork.
    assert st.shim_pid != os.getpid()
    with pytest.raises(ChildProcessError):
        os.waitpid(st.shim_pid, os.WNOHANG)


def test_stop_long_running(node):
    cfg = node.config("c3", ["sleep", "1000"])
    node.containers.create("c3", cfg, node.base / "logs" / "c3.log")
    node.made.append("c3")
    assert node.containers.status("c3").state == "created"
    node.containers.start("c3")
    assert node.containers.status("c3").state == "running"
    t = time.monotonic()
    # sleep as pid 1 ignores SIGTERM (no handler), so this needs the SIGKILL after the grace.
    st = node.containers.stop("c3", timeout=0.5)
    assert st.state == "exited" and st.exit_code == 137 and not st.oom_killed
    assert time.monotonic() - t < 10
    node.containers.remove("c3")
    assert node.containers.status("c3").state == "unknown"


def test_oom_killed(crun_node):
    # Doubling a shell string grows memory fast; 16 MiB cannot hold it.
    cfg = crun_node.config(
        "oom",
        ["sh", "-c", "x=aaaaaaaa; while true; do x=$x$x; done"],
        resources=Resources(memory_limit_bytes=16 << 20),
    )
    st = crun_node.run("oom", cfg, timeout=60)
    assert st.state == "exited", st
    assert st.oom_killed and st.reason == "OOMKilled" and st.exit_code == 137, st


def test_host_image(crun_node):
    cfg = crun_node.config(
        "host",
        [
            "/bin/sh",
            "-c",
            "test -x /usr/bin/env && touch /tmp/ok && ! touch /usr/kray-should-fail 2>/dev/null && echo fine",
        ],
        image="host",
    )
    st = crun_node.run("host", cfg)
    assert st.exit_code == 0, crun_node.log("host")
    assert _lines(crun_node.log("host")) == ["fine"]
    assert not os.path.exists("/usr/kray-should-fail") and not os.path.exists("/tmp/ok")


def test_start_time_raw_crun_vs_shim(crun_node, capsys):
    """Time a raw `crun run` of the busybox bundle against create+start+exit through the shim."""
    node = crun_node
    bundle_cfg = node.config("raw", ["true"])
    bundle = write_bundle(node.base / "rawbundle", bundle_cfg)
    raw = []
    for i in range(3):
        t = time.monotonic()
        rc = node.runtime.run(f"raw{i}", bundle)
        raw.append(time.monotonic() - t)
        assert rc == 0, node.runtime.last_log_lines()
    shimmed, to_running = [], []
    for i in range(3):
        cid = f"s{i}"
        cfg = node.config(cid, ["true"])
        t = time.monotonic()
        node.containers.create(cid, cfg, node.base / "logs" / f"{cid}.log")
        node.containers.start(cid)
        to_running.append(time.monotonic() - t)
        st = node.containers.wait(cid, 10, interval=0.002)
        shimmed.append(time.monotonic() - t)
        assert st.exit_code == 0
    subprocess.run(["umount", str(node.containers.dir("raw") / "rootfs")], check=False)
    with capsys.disabled():
        print(
            f"\n[runtime timing] raw crun run: {min(raw) * 1000:.1f} ms (best of 3); "
            f"shim create+start: {min(to_running) * 1000:.1f} ms; "
            f"shim create+start+exit recorded: {min(shimmed) * 1000:.1f} ms"
        )


def test_missing_executable_is_reported(node):
    from kray.runtime.ocirt import OciError

    cfg = node.config("bad", ["/no/such/binary"])
    node.made.append("bad")
    try:
        node.containers.create("bad", cfg, node.base / "logs" / "bad.log")
        node.containers.start("bad")
        st = node.containers.wait("bad", 10)
        assert st.state == "exited" and st.exit_code != 0
    except OciError as exc:
        assert "bad" in str(exc)
        assert node.containers.status("bad").state == "exited"  # the failure is on disk too
