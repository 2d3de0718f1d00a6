"""Drivers for the OCI runtime CLIs (crun, runc) behind one port.

Every driver uses a kray-owned `--root` state directory, so kray only ever sees (and kills, and
deletes) its own containers.

crun 1.8 refuses a "hybrid" cgroup layout (v1 controllers plus a cgroup2 mount at
/sys/fs/cgroup/unified). We run each crun command inside a private mount namespace
(`unshare -m`) where that cgroup2 mount is unmounted, which makes the node look pure-v1 to crun
without changing anything on the node. The container gets its own mount namespace anyway.
"""

from __future__ import annotations

import json
import os
import shutil
import signal as _signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol, Union

DEFAULT_STATE_ROOT = Path("/run/kray/oci")

Stdio = Union[int, IO[Any], None]


class OciError(RuntimeError):
    pass


class OciRuntime(Protocol):
    """The OCI runtime operations kray uses (runtime-spec "Operations")."""

    name: str
    root: Path

    def argv(self, *args: str) -> list[str]: ...

    def create(self, cid: str, bundle: Path, pid_file: Path, stdout: Stdio = None, stderr: Stdio = None) -> None: ...

    def start(self, cid: str) -> None: ...

    def state(self, cid: str) -> dict[str, Any] | None: ...

    def kill(self, cid: str, sig: int = _signal.SIGTERM, all_procs: bool = False) -> None: ...

    def delete(self, cid: str, force: bool = False) -> None: ...

    def run(self, cid: str, bundle: Path, stdout: Stdio = None, stderr: Stdio = None) -> int: ...

    def list(self) -> list[dict[str, Any]]: ...


def _hybrid_cgroups() -> bool:
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 4 and parts[4] == "/sys/fs/cgroup/unified":
                    return True
    except OSError:
        pass
    return False


class CliRuntime:
    """runc-compatible command line driver; crun and runc share the verbs we use."""

    name = "oci"
    isolated = True  # namespaces + cgroups; the `process` runtime (procrt.py) is not

    def __init__(self, binary: str, root: Path | str = DEFAULT_STATE_ROOT) -> None:
        self.binary = binary
        self.root = Path(root) / self.name
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_path = self.root / "runtime.log"

    def _prefix(self) -> list[str]:
        return []

    def _log_args(self) -> list[str]:
        return ["--log", str(self.log_path)]

    def argv(self, *args: str) -> list[str]:
        return [*self._prefix(), self.binary, "--root", str(self.root), *self._log_args(), *args]

    def _check(self, *args: str, timeout: float = 30.0) -> str:
        # Safe to capture: none of these verbs hands our pipes to a container process.
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise OciError(f"{self.name} {args[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def create(self, cid: str, bundle: Path, pid_file: Path, stdout: Stdio = None, stderr: Stdio = None) -> None:
        # stdout/stderr become the container's; they must be files or pipes someone drains, never
        # our own captured pipes (the container would hold them open and we'd wait forever).
        out = stdout if stdout is not None else subprocess.DEVNULL
        err = stderr if stderr is not None else subprocess.DEVNULL
        rc = subprocess.call(
            self.argv("create", "--bundle", str(bundle), "--pid-file", str(pid_file), cid),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            timeout=60,
        )
        if rc != 0:
            raise OciError(f"{self.name} create {cid} failed ({rc}): {self.last_log_lines()}")

    def start(self, cid: str) -> None:
        self._check("start", cid)

    def state(self, cid: str) -> dict[str, Any] | None:
        proc = subprocess.run(self.argv("state", cid), capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            return None
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def kill(self, cid: str, sig: int = _signal.SIGTERM, all_procs: bool = False) -> None:
        args = ["kill", *(["--all"] if all_procs else []), cid, str(int(sig))]
        self._check(*args)

    def delete(self, cid: str, force: bool = False) -> None:
        self._check("delete", *(["--force"] if force else []), cid)

    def run(self, cid: str, bundle: Path, stdout: Stdio = None, stderr: Stdio = None) -> int:
        """Create, start and wait in the foreground; returns the container's exit status."""
        return subprocess.call(
            self.argv("run", "--bundle", str(bundle), cid),
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else subprocess.DEVNULL,
            stderr=stderr if stderr is not None else subprocess.DEVNULL,
        )

    def list(self) -> list[dict[str, Any]]:
        out = self._check("list", "--format", "json")
        items = json.loads(out or "[]")
        return list(items or [])

    def last_log_lines(self, n: int = 5) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:])


class RuncRuntime(CliRuntime):
    name = "runc"

    def __init__(self, root: Path | str = DEFAULT_STATE_ROOT, binary: str = "runc") -> None:
        super().__init__(binary, root)


class CrunRuntime(CliRuntime):
    name = "crun"

    def __init__(self, root: Path | str = DEFAULT_STATE_ROOT, binary: str = "crun") -> None:
        super().__init__(binary, root)
        self.hybrid = _hybrid_cgroups()

    def _prefix(self) -> list[str]:
        if not self.hybrid:
            return []
        # `sh -c '...; exec "$0" "$@"'` keeps the crun argv intact without any quoting.
        script = 'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec "$0" "$@"'
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script]

    def _log_args(self) -> list[str]:
        return [f"--log=file:{self.log_path}"]


RUNTIMES: dict[str, Callable[[Path | str], CliRuntime]] = {"crun": CrunRuntime, "runc": RuncRuntime}


def make_runtime(name: str, root: Path | str = DEFAULT_STATE_ROOT) -> CliRuntime:
    if name == "process":  # imported here: procrt builds on this module
        from kray.runtime.procrt import ProcessRuntime

        return ProcessRuntime(root)
    try:
        cls = RUNTIMES[name]
    except KeyError:
        raise OciError(f"unknown OCI runtime {name!r} (known: {', '.join(RUNTIMES)}, process)") from None
    return cls(root)


def detect_runtime(root: Path | str = DEFAULT_STATE_ROOT, prefer: tuple[str, ...] = ("crun", "runc")) -> CliRuntime:
    """The first runtime of `prefer` installed on the node: crun (faster start), else runc."""
    for name in prefer:
        if shutil.which(name) or os.path.exists(f"/usr/sbin/{name}"):
            return make_runtime(name, root)
    raise OciError(f"no OCI runtime found (tried {', '.join(prefer)})")
