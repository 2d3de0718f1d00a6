"""A pod's shared PID namespace (shareProcessNamespace) without a pause container.

A PID namespace lives only while a process lives in it, so it cannot be pinned to a file like
the network, IPC and UTS ones: `unshare --pid --fork --kill-child sh -c 'exec sleep infinity'`
holds it (its child is the namespace's PID 1, as the pause container is in Kubernetes), and the
pod's containers join /proc/<holder>/ns/pid_for_children.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def start_holder(sandbox_dir: Path) -> int:
    """Start a holder; its pid. Its own session, so it outlives a restart of the service."""
    proc = subprocess.Popen(
        # (the sandbox folder as $0 names the holder's pod in `ps`)
        ["unshare", "--pid", "--fork", "--kill-child", "sh", "-c", "exec sleep infinity", str(sandbox_dir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _holders[proc.pid] = proc  # reaped when stopped (a restarted service leaves that to init)
    deadline = time.monotonic() + 5.0
    own = os.readlink("/proc/self/ns/pid")
    while not _unshared(proc.pid, own):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_holder(proc.pid)
            raise OSError("could not make the pod's PID namespace")
        time.sleep(0.002)
    return proc.pid


def _unshared(pid: int, own: str) -> bool:
    """Whether `unshare --pid --fork` has made the namespace and forked its PID 1."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid_for_children") != own
    except FileNotFoundError:
        # Between unshare(2) and the fork the new namespace has no init yet, and the kernel
        # answers ENOENT for pid_for_children: not done (seen on a loaded node), not an error.
        return False


def stop_holder(pid: int) -> None:
    try:  # a pid from an old record may be anyone's by now: only ever kill our holder
        if pid <= 0 or not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"unshare\0--pid\0"):
            return
    except OSError:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)  # --kill-child takes the namespace's PID 1 with it
    proc = _holders.pop(pid, None)
    if proc is not None:
        proc.wait(5)


_holders: dict[int, subprocess.Popen[bytes]] = {}
