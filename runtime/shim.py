"""The per-container shim: `python -m kray.runtime.shim ...`.

One small process per container, detached from whoever asked for the container (double fork +
setsid), so the kubelet can restart without losing its containers. It

* becomes a child subreaper and runs `<runtime> create`, so the container's init process becomes
  its child and it can collect the real exit status;
* copies the container's stdout/stderr into the container log file in the CRI format
  (`2024-01-01T00:00:00.000000000Z stdout F line`);
* when init exits, records exit code, finish time and whether the memory cgroup OOM-killed it,
  atomically, in `<state-dir>/state.json`;
* then deletes the container from the runtime and removes its cgroup folders.

Starting is the caller's: `<runtime> start <id>` (see containers.py), or `--start` here.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kray.runtime.cgroups import CgroupV1
from kray.runtime.ocirt import CliRuntime, OciError, make_runtime

STATE_FILE = "state.json"
PR_SET_CHILD_SUBREAPER = 36
MAX_LINE = 16 * 1024  # like containerd: longer lines are split into partial ("P") records


def rfc3339_nano(ns: int | None = None) -> str:
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return None


class CriLogWriter:
    """Serialises lines from both streams into one CRI-format log file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "ab", buffering=0)  # noqa: SIM115 - lives as long as the shim
        self._lock = threading.Lock()

    def write(self, stream: str, data: bytes, partial: bool) -> None:
        tag = b"P" if partial else b"F"
        rec = rfc3339_nano().encode() + b" " + stream.encode() + b" " + tag + b" " + data + b"\n"
        with self._lock:
            self._f.write(rec)

    def pump(self, stream: str, fd: int) -> None:
        """Read `fd` until EOF, writing one record per line."""
        buf = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    break
                line, buf = buf[:nl], buf[nl + 1 :]
                while len(line) > MAX_LINE:
                    self.write(stream, line[:MAX_LINE], True)
                    line = line[MAX_LINE:]
                self.write(stream, line, False)
            while len(buf) > MAX_LINE:
                self.write(stream, buf[:MAX_LINE], True)
                buf = buf[MAX_LINE:]
        if buf:
            self.write(stream, buf, False)
        os.close(fd)

    def close(self) -> None:
        self._f.close()


def _set_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _wait_init(init_pid: int, reaper: bool) -> int:
    """Reap children until the container's init is collected; returns its exit code."""
    while reaper:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break  # init was not reparented to us (no subreaper): fall back to polling
        except InterruptedError:
            continue
        if pid == init_pid:
            return _exit_code(status)
    while os.path.exists(f"/proc/{init_pid}"):
        time.sleep(0.05)
    return -1  # unknown: not our child


def _cgroups_path(bundle: Path) -> str | None:
    spec = read_json(bundle / "config.json") or {}
    path = spec.get("linux", {}).get("cgroupsPath")
    return str(path) if path else None


class Shim:
    def __init__(self, runtime: CliRuntime, cid: str, bundle: Path, log_path: Path, state_dir: Path) -> None:
        self.runtime = runtime
        self.cid = cid
        self.bundle = bundle
        self.log_path = log_path
        self.state_dir = state_dir
        self.state_path = state_dir / STATE_FILE
        self.state: dict[str, Any] = {"id": cid, "runtime": runtime.name, "shim_pid": os.getpid()}

    def _save(self, **changes: Any) -> None:
        self.state.update(changes)
        write_json_atomic(self.state_path, self.state)

    def create(self) -> int:
        """Create the container with its stdio on our pipes; returns init's pid."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.reaper = _set_subreaper()
        self.logs = CriLogWriter(self.log_path)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.pumps = [
            threading.Thread(target=self.logs.pump, args=("stdout", out_r), daemon=True),
            threading.Thread(target=self.logs.pump, args=("stderr", err_r), daemon=True),
        ]
        for t in self.pumps:
            t.start()
        pid_file = self.state_dir / "init.pid"
        try:
            self.runtime.create(self.cid, self.bundle, pid_file, stdout=out_w, stderr=err_w)
        finally:
            # Only the container holds the write ends now: EOF on them means it is gone.
            os.close(out_w)
            os.close(err_w)
        pid = int(pid_file.read_text().strip())
        self._save(status="created", pid=pid, created_at=rfc3339_nano())
        return pid

    def wait_and_record(self, pid: int) -> dict[str, Any]:
        code = _wait_init(pid, self.reaper)
        finished = rfc3339_nano()
        cg_path = _cgroups_path(self.bundle)
        oom = False
        if cg_path:
            mem = CgroupV1(cg_path).memory()
            # oom_kill counts kills in this cgroup; failcnt + SIGKILL covers kernels without it.
            oom = mem.oom_kills > 0 or (code == 137 and mem.failcnt > 0 and mem.limit_bytes < 1 << 60)
        if code == -1:
            st = self.runtime.state(self.cid) or {}
            code = int(st.get("exitCode", 255) or 255)
        for t in self.pumps:
            t.join(timeout=2.0)  # init is gone, so its pid namespace is: the pipes hit EOF soon
        reason = "OOMKilled" if oom else ("Completed" if code == 0 else "Error")
        self._save(status="exited", exit_code=code, finished_at=finished, oom_killed=oom, reason=reason)
        self.cleanup(cg_path)
        return self.state

    def cleanup(self, cg_path: str | None) -> None:
        try:
            self.runtime.delete(self.cid, force=True)
        except (OciError, subprocess.SubprocessError) as exc:
            print(f"shim: delete {self.cid}: {exc}", file=sys.stderr)
        if cg_path:
            CgroupV1(cg_path).remove()
        self.logs.close()


def _daemonize(ready_w: int) -> None:
    """Classic double fork: the caller's child returns at once, the shim is re-parented away from
    the caller and leads no terminal session."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kray.runtime.shim")
    ap.add_argument("--runtime", default="crun")
    ap.add_argument("--runtime-root", required=True)
    ap.add_argument("--id", required=True)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--log-path", required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--start", action="store_true", help="start the container right after create")
    ap.add_argument("--daemonize", action="store_true", help="detach; print the state once created")
    args = ap.parse_args(argv)
    state_dir = Path(args.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)

    ready_r, ready_w = os.pipe()
    if args.daemonize:
        first = os.fork()
        if first > 0:
            # The caller's process: relay the shim's one-line report, then go away.
            os.close(ready_w)
            with os.fdopen(ready_r, "rb") as r:
                report = r.read()
            os.waitpid(first, 0)
            sys.stdout.write(report.decode() or '{"error": "shim died before reporting"}')
            sys.stdout.flush()
            return 0 if report and b'"error"' not in report else 1
        os.close(ready_r)
        _daemonize(ready_w)
        err = os.open(state_dir / "shim.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(err, 2)
        os.close(err)
    else:
        # Foreground (tests, debugging): the report goes to our own stdout.
        os.close(ready_r)
        os.close(ready_w)
        ready_w = os.dup(1)

    runtime = make_runtime(args.runtime, Path(args.runtime_root))
    runtime.log_path = state_dir / "runtime.log"  # errors of this container only
    shim = Shim(runtime, args.id, Path(args.bundle), Path(args.log_path), state_dir)
    # A SIGTERM to the shim must not orphan the container: forward it to the container instead.
    signal.signal(signal.SIGTERM, lambda *_: _forward(runtime, args.id))
    with os.fdopen(ready_w, "wb") as ready:
        try:
            pid = shim.create()
            if args.start:
                runtime.start(args.id)
                shim._save(status="running", started_at=rfc3339_nano())
        except Exception as exc:
            shim._save(status="failed", reason="CreateError", message=str(exc), finished_at=rfc3339_nano())
            with contextlib.suppress(Exception):
                runtime.delete(args.id, force=True)
            ready.write(json.dumps({"error": str(exc)}).encode())
            return 1
        ready.write(json.dumps(shim.state).encode())
    state = shim.wait_and_record(pid)
    return 0 if state.get("exit_code") == 0 else 1


def _forward(runtime: CliRuntime, cid: str) -> None:
    with contextlib.suppress(Exception):
        runtime.kill(cid, signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main())
