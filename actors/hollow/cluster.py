"""A throwaway control plane for scale tests and benchmarks: etcd plus an API server subprocess.

The API server runs as its own process (``python -m kray.actors.apiserver``), as in production,
so its CPU is not shared under one GIL with the schedulers and hollow nodes driving it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from kray.etcd_server import EtcdServer, exit_with_parent, free_port


class LocalControlPlane:
    def __init__(self, token: str = "hollow-token", data_dir: Path | None = None) -> None:
        self.token = token
        self._tmp = tempfile.TemporaryDirectory(prefix="kray-hollow-") if data_dir is None else None
        self.data_dir = data_dir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.etcd: EtcdServer | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def etcd_endpoint(self) -> str:
        assert self.etcd is not None
        return self.etcd.endpoint

    def start(self, timeout: float = 30.0) -> LocalControlPlane:
        self.etcd = EtcdServer(data_dir=self.data_dir / "etcd", die_with_parent=True).start()
        self.port = free_port()
        env = {**os.environ, "KRAY_TOKEN": self.token}
        cmd = [sys.executable, "-m", "kray.actors.apiserver", "--etcd", self.etcd.endpoint, "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, env=env, preexec_fn=exit_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"API server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("API server did not become ready")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None
        if self.etcd is not None:
            self.etcd.stop()
            self.etcd = None
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> LocalControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
