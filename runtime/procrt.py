"""The `process` runtime: a container is a plain host process. NO ISOLATION.

For machines where kray cannot be root (a laptop, a shared login node): no namespaces, no
cgroups (no limits, no OOM accounting), the host network, the host filesystem. It speaks the same
verbs as the crun/runc drivers, so everything above is unchanged: the shim starts it, copies its
output into the CRI log file and records its exit code; the CRI service and kubelet see ordinary
containers.

What a container runs: the command of the spec (the pod's command/args, else the image's
Entrypoint/Cmd), found on the host's PATH, with the spec's environment, in its working directory
when the host has that folder (else the container's state folder). An image's own files are
never used: mounting them needs root, unpacking layers as another user loses owners and device
nodes, and a process that is not isolated anyway would only pretend to run "in" the image. So
`image: host` is the honest way to write such pods; other images lend only their config.

create/start keep the runtime-spec split with a FIFO, like runc's exec.fifo: `create` forks
`sh -c 'read _ < FIFO; exec "$@"'` (its pid is the container's, `exec` keeps it), and `start`
writes a line into the FIFO. Each container leads its own process group, so `kill --all` and
`delete --force` reach everything it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal as _signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from kray.runtime.containers import process_alive
from kray.runtime.ocirt import DEFAULT_STATE_ROOT, CliRuntime, OciError, Stdio

NO_ISOLATION_WARNING = (
    "runtime 'process': containers run as plain host processes with NO ISOLATION - no namespaces, "
    "no cgroups or resource limits, the host network and filesystem, the runtime's own user"
)
_WAIT_FOR_START = 'read _ < "$0"; exec "$@"'

# `exec --process FILE --console-socket SOCKET` on the host, as crun does it in a container: a
# new pty sized by consoleSize, its master sent to the socket (SCM_RIGHTS), the slave the
# command's stdio and controlling terminal (login_tty: setsid + TIOCSCTTY), then the command
# with the process's env and cwd, as `create` runs a container's. A fresh interpreter does this
# because the CRI service is threaded: no pty set-up between its fork and exec.
_TERMINAL_EXEC = r"""
import fcntl, json, os, socket, struct, sys, termios
with open(sys.argv[1]) as f:
    process = json.load(f)
master, slave = os.openpty()
size = process.get("consoleSize") or {}
fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size.get("height", 0), size.get("width", 0), 0, 0))
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
    s.connect(sys.argv[2])
    socket.send_fds(s, [os.ttyname(slave).encode()], [master])
os.close(master)
os.login_tty(slave)
cwd = process.get("cwd") or ""
if os.path.isdir(cwd):
    os.chdir(cwd)
env = dict(e.partition("=")[::2] for e in process.get("env") or [])
args = process["args"]
try:
    os.execvpe(args[0], args, env)
except OSError as exc:
    print(f"exec {args[0]}: {exc.strerror}", file=sys.stderr)
    sys.exit(127)
"""


class ProcessRuntime(CliRuntime):
    name = "process"
    isolated = False

    def __init__(self, root: Path | str = DEFAULT_STATE_ROOT) -> None:
        super().__init__("sh", root)
        self._children: dict[str, subprocess.Popen[bytes]] = {}  # kept so GC never reaps them

    def _dir(self, cid: str) -> Path:
        return self.root / cid

    def _pid(self, cid: str) -> int:
        try:
            return int((self._dir(cid) / "pid").read_text())
        except (OSError, ValueError):
            raise OciError(f"process container {cid} does not exist") from None

    def argv(self, *args: str) -> list[str]:
        """`exec <id> cmd...` is the command itself, on the host (there is nothing to enter);
        `exec --process FILE --console-socket SOCKET <id>` (a terminal) runs `_TERMINAL_EXEC`."""
        if args[:2] == ("exec", "--process") and len(args) == 6 and args[3] == "--console-socket":
            return [sys.executable, "-c", _TERMINAL_EXEC, args[2], args[4]]
        if args and args[0] == "exec":
            return list(args[2:])
        raise OciError(f"process runtime has no command line for {args[:1]}")

    def create(self, cid: str, bundle: Path, pid_file: Path, stdout: Stdio = None, stderr: Stdio = None) -> None:
        d = self._dir(cid)
        try:
            d.mkdir(parents=True)
        except FileExistsError:
            raise OciError(f"process container {cid} already exists") from None
        try:
            spec = json.loads((Path(bundle) / "config.json").read_text())
            proc_spec = spec.get("process") or {}
            args = [str(a) for a in proc_spec.get("args") or []]
            if not args:
                raise OciError("process.args is empty")
            env = dict(e.partition("=")[::2] for e in proc_spec.get("env") or [])
            cwd = str(proc_spec.get("cwd") or "")
            fifo = d / "start.fifo"
            os.mkfifo(fifo, 0o600)
            child = subprocess.Popen(
                ["sh", "-c", _WAIT_FOR_START, str(fifo), *args],
                env=env,
                cwd=cwd if cwd and os.path.isdir(cwd) else str(bundle),
                stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else subprocess.DEVNULL,
                stderr=stderr if stderr is not None else subprocess.DEVNULL,
                start_new_session=True,  # its own process group: kill --all reaches its children
            )
        except (OSError, ValueError) as exc:
            shutil.rmtree(d, ignore_errors=True)
            raise OciError(f"process create {cid}: {exc}") from exc
        except OciError:
            shutil.rmtree(d, ignore_errors=True)
            raise
        self._children[cid] = child
        (d / "pid").write_text(str(child.pid))
        Path(pid_file).write_text(str(child.pid))

    def start(self, cid: str) -> None:
        fifo = self._dir(cid) / "start.fifo"
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO: nobody waits on it any more
        except OSError as exc:
            raise OciError(f"process start {cid}: not created, or already started ({exc.strerror})") from None
        try:
            os.write(fd, b"start\n")
        finally:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            fifo.unlink()

    def state(self, cid: str) -> dict[str, Any] | None:
        d = self._dir(cid)
        if not d.is_dir():
            return None
        try:
            pid = self._pid(cid)
        except OciError:
            return {"id": cid, "pid": 0, "status": "stopped", "bundle": ""}
        status = "created" if (d / "start.fifo").exists() else "running"
        return {"id": cid, "pid": pid, "status": status if process_alive(pid) else "stopped", "bundle": ""}

    def kill(self, cid: str, sig: int = _signal.SIGTERM, all_procs: bool = False) -> None:
        pid = self._pid(cid)
        try:
            if all_procs:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            raise OciError(f"process container {cid} is not running") from None

    def delete(self, cid: str, force: bool = False) -> None:
        d = self._dir(cid)
        if not d.is_dir():
            raise OciError(f"process container {cid} does not exist")
        pid = 0
        with contextlib.suppress(OciError):
            pid = self._pid(cid)
        if pid and process_alive(pid) and not force:
            raise OciError(f"process container {cid} is running")
        if pid and force:
            # The whole group, also when its leader is gone: what it started must not outlive it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, _signal.SIGKILL)
        child = self._children.pop(cid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
                child.wait(5)
        shutil.rmtree(d, ignore_errors=True)

    def run(self, cid: str, bundle: Path, stdout: Stdio = None, stderr: Stdio = None) -> int:
        pid_file = self._dir(cid).with_suffix(".pid")
        self.create(cid, bundle, pid_file, stdout, stderr)
        pid_file.unlink()
        self.start(cid)
        code = self._children[cid].wait()
        self.delete(cid, force=True)
        return 128 - code if code < 0 else code  # -N: killed by signal N

    def list(self) -> list[dict[str, Any]]:
        if not self.root.is_dir():
            return []
        return [st for d in sorted(self.root.iterdir()) if d.is_dir() and (st := self.state(d.name))]
