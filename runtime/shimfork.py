"""A warm process that forks container shims, so starting one costs a fork, not a Python.

`python -m kray.runtime.shim` costs ~50 ms of CPU per container (interpreter start, site,
imports) - most of a pod start on a small node, and a burst of pod starts on two cores waits
for 50 of them. The runtime service instead starts this helper once: single-threaded, with the
shim's modules imported, listening on a unix socket. Per request (one connection: the shim's
argv as one JSON line) it forks a child that runs `shim.main(argv)` with its stdout on the
connection, exactly what the exec'd shim would print; the shim daemonizes from there as usual
(setsid + double fork), so it outlives this helper and the service like before.

The helper exits when the service goes (EOF on its stdin). `ShimLauncher.run` falls back to
exec'ing the shim when the helper cannot be reached, so a launch never depends on it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import socket
import subprocess
import sys
import threading
from pathlib import Path

from kray.runtime import shim

PR_SET_NAME = 15


def serve(socket_path: Path) -> int:
    """The helper: accept, fork, reap; until stdin closes."""
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(socket_path))
    os.chmod(socket_path, 0o600)
    listener.listen(128)
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select([listener, sys.stdin], [], [], 1.0)
        _reap()
        if sys.stdin in readable and not os.read(sys.stdin.fileno(), 4096):
            return 0  # the service is gone
        if listener in readable:
            conn, _ = listener.accept()
            try:
                _fork_shim(listener, conn)
            except Exception as exc:  # a bad request must not end the helper
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps({"error": f"shim launcher: {exc}"}).encode())
            finally:
                conn.close()


def _fork_shim(listener: socket.socket, conn: socket.socket) -> None:
    conn.settimeout(10.0)
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    argv = [str(a) for a in json.loads(data)]
    if os.fork() == 0:  # the child: it becomes what `python -m kray.runtime.shim argv` would be
        code = 1
        try:
            listener.close()
            _set_name(b"kray-shim")  # in ps/top; the cmdline stays the launcher's
            os.dup2(conn.fileno(), 1)
            conn.close()
            sys.stdin.close()
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            code = shim.main(argv)
            sys.stdout.flush()
        finally:
            os._exit(code)


def _set_name(name: bytes) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class ShimLauncher:
    """Runs `kray.runtime.shim` argv through the warm helper (started on first use)."""

    def __init__(self, socket_path: Path, python: str = sys.executable) -> None:
        self.socket_path = socket_path
        self.python = python
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def _ensure_helper(self) -> None:
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                return
            self.socket_path.parent.mkdir(parents=True, exist_ok=True)
            argv = [self.python, "-m", "kray.runtime.shimfork", str(self.socket_path)]
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert self.proc.stdout is not None
            if self.proc.stdout.readline().strip() != b"ready":
                self.close()
                raise OSError("shim launcher did not start")

    def run(self, argv: list[str], timeout: float) -> tuple[int, str, str]:
        """(returncode, stdout, stderr) of the shim argv, like subprocess.run would give."""
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._ensure_helper()
            conn.settimeout(timeout)
            conn.connect(str(self.socket_path))
        except OSError:
            conn.close()
            # No helper: the way that needs none.
            proc = subprocess.run(
                [self.python, "-m", "kray.runtime.shim", *argv], capture_output=True, text=True, timeout=timeout
            )
            return proc.returncode, proc.stdout, proc.stderr
        out = b""
        try:
            with conn:
                conn.sendall(json.dumps(argv).encode() + b"\n")
                while chunk := conn.recv(65536):
                    out += chunk
        except OSError as exc:
            return 1, "", f"shim launcher: {exc}"
        text = out.decode(errors="replace")
        ok = text.strip().startswith("{") and '"error"' not in text
        return (0 if ok else 1), text, ""

    def close(self) -> None:
        with self._lock:
            if self.proc is not None:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()  # EOF: the helper exits on its own
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                if self.proc.stdout is not None:
                    self.proc.stdout.close()
                self.proc = None
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1])))
