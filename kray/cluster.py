"""Cluster bootstrap behind `kray up`, `kray down` and `kray status`.

`kray up` is idempotent. It starts (or reuses) a local etcd unless ``--etcd`` names one,
starts (or joins) a Ray cluster, deploys the control-plane actors, waits until the API
server answers, and writes the client config. What it started itself is recorded with PIDs
in ``<state dir>/state.json`` so that `kray down` stops exactly that and nothing else (never
``ray stop``, which kills every Ray process on the machine by name).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from kray.config import KrayConfig, default_config_path, load_config, save_config
from kray.controlplane import RAY_NAMESPACE, NodeOptions
from kray.etcd_server import EtcdServer, free_port, is_healthy

# Loopback-only local clusters: Ray would otherwise advertise the VM's own address, and it
# turns on token auth whenever ~/.ray/auth_token exists (left by any earlier ray.init); say so.
# RAY_USE_UVLOOP=0: with uvloop installed (GPU images ship it), Ray installs it as every worker's
# event loop policy, and pyroute2's netlink sockets then fail in threads ("invalid family 16").
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USE_UVLOOP": "0"}


class ClusterError(RuntimeError):
    """`kray up`/`down` could not do what was asked; the message says why."""


@dataclass
class LocalState:
    """What this machine's `kray up` started, so `kray down` can stop exactly that."""

    etcd_endpoint: str = ""
    etcd_pid: int = 0  # 0: not started by kray (user-supplied --etcd)
    ray_address: str = ""
    ray_pid: int = 0  # 0: joined a Ray cluster kray did not start
    apiserver_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def path(state_dir: Path) -> Path:
        return state_dir / "state.json"

    @classmethod
    def load(cls, state_dir: Path) -> LocalState:
        try:
            return cls(**json.loads(cls.path(state_dir).read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return cls()

    def save(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path(state_dir).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(self.path(state_dir))


@dataclass(frozen=True)
class UpOptions:
    state_dir: Path
    etcd: str | None = None
    ray_address: str | None = None
    host: str = "127.0.0.1"
    port: int = 6443
    num_cpus: int | None = None
    config_path: Path | None = None
    timeout: float = 120.0
    scheduler_shards: int = 1
    # A KubeSchedulerConfiguration (parsed, validated by the CLI): the scheduler's profiles.
    scheduler_config: dict[str, Any] | None = None
    node: NodeOptions = field(default_factory=NodeOptions)
    cluster_cidr: str = "10.244.0.0/16"  # every node's podCIDR is a /24 of it (node IPAM)
    service_cidr: str = "10.96.0.0/16"  # Services' ClusterIPs (the API server allocates them)


def default_state_dir() -> Path:
    return Path(os.environ.get("KRAY_STATE_DIR", Path.home() / ".kray" / "local"))


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive; /proc tells us.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return True


def _port_open(address: str, timeout: float = 0.5) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def ensure_etcd(opts: UpOptions, state: LocalState, log: Any) -> None:
    if opts.etcd:
        endpoint = opts.etcd.split(",")[0].rstrip("/")
        if not is_healthy(endpoint, timeout=3.0):
            raise ClusterError(f"etcd at {endpoint} is not healthy (GET {endpoint}/health failed)")
        state.etcd_endpoint, state.etcd_pid = opts.etcd, 0
        return
    if state.etcd_pid and pid_alive(state.etcd_pid) and is_healthy(state.etcd_endpoint):
        log(f"etcd already running at {state.etcd_endpoint} (pid {state.etcd_pid})")
        return
    port = 2379 if not _port_open("127.0.0.1:2379") else free_port()
    server = EtcdServer(data_dir=opts.state_dir / "etcd", client_port=port, log_path=opts.state_dir / "etcd.log")
    server.start()
    assert server.process is not None
    state.etcd_endpoint, state.etcd_pid = server.endpoint, server.process.pid
    log(f"started etcd at {server.endpoint} (pid {state.etcd_pid}, data in {server.data_dir})")


def ensure_ray(opts: UpOptions, state: LocalState, log: Any) -> None:
    address = opts.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        state.ray_address, state.ray_pid = address, 0
        return
    if state.ray_pid and pid_alive(state.ray_pid) and _port_open(state.ray_address):
        log(f"Ray already running at {state.ray_address} (pid {state.ray_pid})")
        return
    port = 6379 if not _port_open("127.0.0.1:6379") else free_port()
    ray_bin = str(Path(sys.executable).with_name("ray"))
    args = [ray_bin, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
            "--disable-usage-stats", "--include-dashboard=false"]  # fmt: skip
    if opts.num_cpus is not None:
        args.append(f"--num-cpus={opts.num_cpus}")
    log_path = opts.state_dir / "ray.log"
    with open(log_path, "ab") as out:
        # --block keeps `ray start` in the foreground as the parent of every Ray process it
        # starts; SIGTERM to it drains and stops them all, which is how `kray down` stops Ray.
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, **LOOPBACK_ENV},
        )  # fmt: skip
    state.ray_address, state.ray_pid = f"127.0.0.1:{port}", proc.pid
    deadline = time.monotonic() + opts.timeout
    while not _port_open(state.ray_address):
        if proc.poll() is not None:
            raise ClusterError(f"`ray start` exited with code {proc.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            raise ClusterError(f"Ray did not start within {opts.timeout}s; see {log_path}")
        time.sleep(0.2)
    log(f"started Ray head at {state.ray_address} (pid {proc.pid})")


def deploy_control_plane(opts: UpOptions, state: LocalState, token: str, log: Any) -> str:
    from kray import controlplane as cp

    with ray_driver(state.ray_address):
        url = cp.deploy_apiserver_actor(
            state.etcd_endpoint, opts.host, opts.port, token, opts.timeout, log, service_cidr=opts.service_cidr
        )
        config = KrayConfig(server=url, token=token)
        cp.deploy_controllers(config, opts.timeout, log, {"node-ipam": {"cluster_cidr": opts.cluster_cidr}})
        if cp.ensure_default_storage_class(config):
            log("created the default StorageClass local-path (node-local volumes)")
        cp.deploy_schedulers(
            config, opts.scheduler_shards, state.etcd_endpoint, opts.timeout, log, opts.scheduler_config
        )
        node = cp.deploy_local_node(config, opts.node, opts.timeout, log)
        # After the local node's own kubelet: the agent finds it and adds what the node lacks.
        cp.deploy_node_agent(config, cp.node_agent_options(opts.node), opts.timeout, log)
    if node:  # `kray image` finds the node's CRI socket through this
        state.extra["nodes"] = {node: str(Path(opts.node.root) / node)}
    return url


@contextlib.contextmanager
def ray_driver(address: str) -> Iterator[None]:
    os.environ.update(LOOPBACK_ENV)  # before importing ray: it reads some of these at import
    import ray

    ray.init(address=address, namespace=RAY_NAMESPACE, logging_level=logging.WARNING,
             log_to_driver=False, _node_ip_address="127.0.0.1")  # fmt: skip
    try:
        yield
    finally:
        ray.shutdown()


def up(opts: UpOptions, log: Any = print) -> KrayConfig:
    opts.state_dir.mkdir(parents=True, exist_ok=True)
    state = LocalState.load(opts.state_dir)
    ensure_etcd(opts, state, log)
    state.save(opts.state_dir)
    ensure_ray(opts, state, log)
    state.save(opts.state_dir)
    token = _existing_token(opts.config_path) or secrets.token_urlsafe(32)
    state.apiserver_url = deploy_control_plane(opts, state, token, log)
    state.save(opts.state_dir)
    config = KrayConfig(server=state.apiserver_url, token=token)
    path = save_config(config, opts.config_path)
    log(f"wrote client config to {path}")
    return config


def _existing_token(config_path: Path | None) -> str | None:
    try:
        return load_config(config_path or default_config_path()).token or None
    except Exception:
        return None


def _terminate(pid: int, what: str, log: Any, timeout: float = 40.0) -> None:
    if not pid_alive(pid):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        os.killpg(pid, signal.SIGKILL)
    log(f"stopped {what} (pid {pid})")


def down(state_dir: Path, log: Any = print, purge: bool = False) -> None:
    """Stop what `kray up` started here; remove the control-plane actors from a joined cluster."""
    state = LocalState.load(state_dir)
    if state.ray_address and _port_open(state.ray_address):
        from kray import controlplane as cp

        with ray_driver(state.ray_address):
            cp.remove_all(log)
    if state.ray_pid:
        _terminate(state.ray_pid, "Ray head", log)
    if state.etcd_pid:
        _terminate(state.etcd_pid, "etcd", log)
    if purge:
        import shutil

        shutil.rmtree(state_dir / "etcd", ignore_errors=True)
    LocalState.path(state_dir).unlink(missing_ok=True)


def status(state_dir: Path) -> dict[str, Any]:
    state = LocalState.load(state_dir)
    report: dict[str, Any] = {
        "etcd": {
            "endpoint": state.etcd_endpoint or None,
            "owned": bool(state.etcd_pid),
            "healthy": bool(state.etcd_endpoint) and is_healthy(state.etcd_endpoint.split(",")[0]),
        },
        "ray": {
            "address": state.ray_address or None,
            "owned": bool(state.ray_pid),
            "reachable": bool(state.ray_address) and _port_open(state.ray_address),
        },
        "apiserver": {"url": state.apiserver_url or None, "ready": False},
    }
    if state.apiserver_url:
        try:
            report["apiserver"]["ready"] = httpx.get(f"{state.apiserver_url}/readyz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            pass
    return report
