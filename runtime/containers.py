"""Container lifecycle on one node: bundle + shim + runtime, with state kept on disk.

Layout under `state_root/<id>/`: `config.json` (the bundle; its rootfs is prepared by the caller,
usually with ImageStore.mount_rootfs), `state.json` (written by the shim: created/exited, exit
code, OOM), `started.json` (written here when started), `shim.log`, `runtime.log`.
Everything is in files, so a restarted caller finds its containers again with `list()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kray.runtime.oci import ContainerConfig, write_bundle
from kray.runtime.ocirt import CliRuntime, OciError
from kray.runtime.shim import STATE_FILE, read_json, rfc3339_nano, write_json_atomic
from kray.runtime.shimfork import ShimLauncher

STARTED_FILE = "started.json"


@dataclass
class ContainerStatus:
    id: str
    state: str  # created | running | exited | unknown
    pid: int = 0
    shim_pid: int = 0
    exit_code: int | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    oom_killed: bool = False
    reason: str = ""
    message: str = ""


class ContainerManager:
    def __init__(
        self,
        runtime: CliRuntime,
        state_root: Path | str,
        python: str = sys.executable,
        launcher: ShimLauncher | None = None,
    ) -> None:
        self.runtime = runtime
        self.state_root = Path(state_root)
        self.state_root.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.launcher = launcher  # None: exec a fresh Python per shim

    def dir(self, cid: str) -> Path:
        return self.state_root / cid

    def create(self, cid: str, cfg: ContainerConfig, log_path: Path | str, start: bool = False) -> ContainerStatus:
        """Write the bundle and spawn the detached shim, which creates the container; returns once
        it exists (`created`, or `running` with start=True)."""
        d = self.dir(cid)
        if (d / STATE_FILE).exists():
            raise OciError(f"container {cid} already exists")
        write_bundle(d, cfg)
        argv = [
            "--runtime", self.runtime.name,
            "--runtime-root", str(self.runtime.root.parent),
            "--id", cid,
            "--bundle", str(d),
            "--log-path", str(log_path),
            "--state-dir", str(d),
            "--daemonize",
        ]  # fmt: skip
        if start:
            argv.append("--start")
        if self.launcher is not None:
            rc, out, err = self.launcher.run(argv, timeout=120)
        else:
            # Safe to capture: the daemonized shim puts /dev/null on these before doing anything.
            proc = subprocess.run(
                [self.python, "-m", "kray.runtime.shim", *argv], capture_output=True, text=True, timeout=120
            )
            rc, out, err = proc.returncode, proc.stdout, proc.stderr
        report = json.loads(out or "{}") if out.strip().startswith("{") else {}
        if rc != 0 or "error" in report:
            msg = report.get("error") or err.strip() or "shim failed"
            raise OciError(f"create {cid}: {msg}")
        if start:
            write_json_atomic(d / STARTED_FILE, {"started_at": report.get("started_at") or rfc3339_nano()})
        return self.status(cid)

    def start(self, cid: str) -> ContainerStatus:
        # Stamped before the start call: a short container can exit (and its shim record
        # finished_at) before `start` returns, and startedAt must never follow finishedAt.
        started_at = rfc3339_nano()
        self.runtime.start(cid)
        write_json_atomic(self.dir(cid) / STARTED_FILE, {"started_at": started_at})
        return self.status(cid)

    def status(self, cid: str) -> ContainerStatus:
        d = self.dir(cid)
        st = read_json(d / STATE_FILE)
        if st is None:
            return ContainerStatus(id=cid, state="unknown", reason="NotFound")
        started = read_json(d / STARTED_FILE) or {}
        phase = str(st.get("status", "unknown"))
        if phase == "created" and started:
            phase = "running"
        if phase in ("created", "running") and not process_alive(int(st.get("shim_pid", 0))):
            # The shim died without recording an exit (node reboot, kill -9): nothing to wait for.
            phase, st["reason"] = "exited", "ShimLost"
        if phase == "failed":
            phase = "exited"
        return ContainerStatus(
            id=cid,
            state=phase,
            pid=int(st.get("pid", 0)),
            shim_pid=int(st.get("shim_pid", 0)),
            exit_code=st.get("exit_code", None if phase != "exited" else 255),
            created_at=st.get("created_at"),
            started_at=started.get("started_at") or st.get("started_at"),
            finished_at=st.get("finished_at"),
            oom_killed=bool(st.get("oom_killed", False)),
            reason=str(st.get("reason", "")),
            message=str(st.get("message", "")),
        )

    def list(self) -> list[ContainerStatus]:
        if not self.state_root.is_dir():
            return []
        return [self.status(p.name) for p in sorted(self.state_root.iterdir()) if (p / STATE_FILE).exists()]

    def wait(self, cid: str, timeout: float = 30.0, interval: float = 0.02) -> ContainerStatus:
        deadline = time.monotonic() + timeout
        while True:
            st = self.status(cid)
            if st.state in ("exited", "unknown") or time.monotonic() > deadline:
                return st
            time.sleep(interval)

    def stop(self, cid: str, timeout: float = 10.0) -> ContainerStatus:
        """SIGTERM, then SIGKILL after `timeout` seconds (the pod's grace period)."""
        st = self.status(cid)
        if st.state == "exited" or st.state == "unknown":
            return st
        with contextlib.suppress(OciError):
            self.runtime.kill(cid, signal.SIGTERM)
        st = self.wait(cid, timeout)
        if st.state != "exited":
            with contextlib.suppress(OciError):
                self.runtime.kill(cid, signal.SIGKILL, all_procs=True)
            st = self.wait(cid, 10.0)
        return st

    def remove(self, cid: str) -> None:
        """Stop if needed, make sure the runtime forgot it, and delete its state directory."""
        st = self.status(cid)
        if st.state in ("created", "running"):
            self.stop(cid, timeout=0.5)
        with contextlib.suppress(OciError, subprocess.SubprocessError):
            if self.runtime.state(cid) is not None:
                self.runtime.delete(cid, force=True)
        d = self.dir(cid)
        rootfs = d / "rootfs"
        if os.path.ismount(rootfs):
            subprocess.run(["umount", "-l", str(rootfs)], check=False)
        shutil.rmtree(d, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, finished but not reaped, does not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie shim (its parent never reaped it) counts as gone.
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
        if f.read().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True
