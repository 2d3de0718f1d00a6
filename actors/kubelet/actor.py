"""The Ray wrapper: one ``KubeletActor`` per Ray node, pinned to it (hard node affinity).

It starts the node's CRI runtime service (``python -m kray.runtime``) as a child process with its
socket and state under ``<root>/<node>/``, or reuses one already serving on that socket, so a
restarted kubelet (Ray restarts it: ``max_restarts=-1``) never restarts containers. The runtime
process is started in its own session: it outlives the actor on purpose.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from kray.config import KrayConfig

from .ports import KubeletConfig

log = logging.getLogger(__name__)

RAY_NAMESPACE = "kray"
DEFAULT_ROOT = "/var/lib/kray"
T = TypeVar("T")


def actor_name(node_name: str) -> str:
    return f"kray-kubelet-{node_name}"


def runtime_alive(socket_path: Path, timeout: float = 3.0) -> bool:
    """Whether a CRI service answers on the socket (a kubelet restart finds it running)."""
    if not socket_path.exists():
        return False

    async def probe() -> bool:
        from kray.runtime.cri.client import RuntimeClient

        client = RuntimeClient(socket_path, timeout=timeout)
        try:
            await client.version()
            return True
        except Exception:
            return False
        finally:
            await client.close()

    return run_sync(probe())


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, on a thread of its own: this actor's
    methods may be called while an event loop is running on the calling thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _remove_all_sandboxes(socket_path: Path) -> int:
    from kray.runtime.cri.client import RuntimeClient

    async with RuntimeClient(socket_path) as cri:
        sandboxes = await cri.list_pod_sandbox()
        for sandbox in sandboxes:
            await cri.stop_pod_sandbox(sandbox.id)
            await cri.remove_pod_sandbox(sandbox.id)
        return len(sandboxes)


def _flag(argv: list[str], name: str, default: str) -> str:
    """The value of ``name VALUE`` in the runtime service's argv (the last one wins, as argparse)."""
    value = default
    for i, arg in enumerate(argv[:-1]):
        if arg == name:
            value = argv[i + 1]
    return value


def start_runtime(
    socket_path: Path, state_dir: Path, subnet: str, extra: list[str] | None = None
) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "kray.runtime", "--socket", str(socket_path), "--state-dir", str(state_dir)]
    argv += ["--subnet", subnet, *(extra or [])]
    env = {**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "0"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        raise RuntimeError(f"the CRI runtime service did not start: {line!r}")
    return proc


class KubeletActor:
    def __init__(
        self,
        config: KrayConfig,
        node_name: str,
        pod_cidr: str,
        root: str = DEFAULT_ROOT,
        kubelet_config: KubeletConfig | None = None,
        runtime_args: list[str] | None = None,
        device_plugin_dir: str | None = None,
    ) -> None:
        import kray.crds  # noqa: F401  (registers the built-in kinds)

        self.config, self.node_name = config, node_name
        self.node_dir = Path(root) / node_name
        self.socket = self.node_dir / "cri.sock"
        self.state = self.node_dir / "state"
        self.kcfg = kubelet_config or KubeletConfig()
        self.kcfg.pod_cidr = pod_cidr
        if not self.kcfg.node_ip:
            with contextlib.suppress(Exception):
                import ray

                self.kcfg.node_ip = ray.util.get_node_ip_address()
        self.kcfg.ephemeral_storage_dir = self.kcfg.ephemeral_storage_dir or str(self.node_dir)
        if not self.kcfg.log_port:  # 0: any free port (several kubelets share a host); the Node says which
            from kray.etcd_server import free_port

            self.kcfg.log_port = free_port()
        self.runtime_proc: subprocess.Popen[str] | None = None
        if not runtime_alive(self.socket):
            self.runtime_proc = start_runtime(self.socket, self.state, pod_cidr, runtime_args)
            # The service outlives this actor on purpose (a restarted kubelet re-adopts its pods);
            # its PID is kept so `teardown` can stop it even from a later incarnation.
            (self.node_dir / "runtime.pid").write_text(str(self.runtime_proc.pid))
        self.bridge = _flag(runtime_args or [], "--bridge", "kray0")
        self.device_plugin_dir = device_plugin_dir
        self.kubelet: Any = None
        self.error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"kubelet-{node_name}", daemon=True)
        self._thread.start()
        self._started.wait(30)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self.error = repr(exc)
                log.exception("kubelet %s failed", self.node_name)
        finally:
            self._started.set()
            loop.close()

    async def _serve(self) -> None:
        from kray.client.aio import AsyncClient
        from kray.runtime.cri.client import RuntimeClient
        from kray.runtime.volumes import VolumeManager

        from .kubelet import Kubelet
        from .logserver import serve_logs

        devices = None
        if self.device_plugin_dir:
            from kray.deviceplugins.manager import DeviceManager

            devices = DeviceManager(self.device_plugin_dir)
            devices.start()
        async with AsyncClient(self.config) as client, RuntimeClient(self.socket) as cri:
            await cri.wait_ready(30)
            volumes = VolumeManager(self.state / "pods")  # the runtime service's own volume root
            self.kubelet = Kubelet(self.node_name, client, cri, volumes, devices, config=self.kcfg)
            logs = asyncio.create_task(serve_logs(self.kubelet, self.kcfg.log_host, self.kcfg.log_port))
            device_sync = None
            if devices is not None:  # NodeDevices, GPU node labels, GPU health on Pods
                from kray.deviceplugins.actor import fetch_inventory
                from kray.deviceplugins.nodesync import attach

                device_sync = asyncio.create_task(
                    attach(self.kubelet, devices, lambda: fetch_inventory(self.node_name)).run()
                )
            self._started.set()
            try:
                await self.kubelet.run()
            finally:
                logs.cancel()
                if device_sync is not None:
                    device_sync.cancel()
                if devices is not None:
                    devices.stop()

    # --- actor methods ----------------------------------------------------------------------
    def ready(self) -> bool:
        return self.kubelet is not None and self.error is None

    def status(self) -> dict[str, Any]:
        k = self.kubelet
        return {
            "node": self.node_name,
            "pods": len(k.pods) if k else 0,
            "errors": dict(k.errors) if k else {},
            # Pod Events: a growing `dropped` means the API server cannot keep up with them.
            "events": {"queued": len(k.events.queue), "written": k.events.written, "dropped": k.events.dropped}
            if k
            else {},
            "error": self.error,
            "runtime_pid": self.runtime_proc.pid if self.runtime_proc else None,
        }

    def teardown(self) -> dict[str, int]:
        """`kray down` for this node: stop the kubelet, remove every pod sandbox (and so every
        container, netns, veth and cgroup of the pods), stop the runtime service, drop the bridge."""
        self.stop()
        if self.device_plugin_dir:  # the node's devices go with it: plugin and NodeDevices
            from kray.deviceplugins.actor import stop_plugin
            from kray.deviceplugins.nodesync import delete_node_devices

            with contextlib.suppress(Exception):
                stop_plugin(self.node_name)
            with contextlib.suppress(Exception):
                run_sync(delete_node_devices(self.config, self.node_name))
        removed = 0
        if runtime_alive(self.socket):
            removed = run_sync(_remove_all_sandboxes(self.socket))
        pid_file = self.node_dir / "runtime.pid"
        if self.runtime_proc is not None:  # our own child: terminate and reap it
            self.runtime_proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.runtime_proc.wait(10)
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int(pid_file.read_text())
            os.killpg(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.1)
        pid_file.unlink(missing_ok=True)
        from kray.runtime.network import BridgeNetwork, NetworkConfig

        bridge = BridgeNetwork(
            NetworkConfig(subnet=self.kcfg.pod_cidr, state_dir=self.state / "net", bridge=self.bridge)
        )
        try:
            # pyroute2 runs its own event loop, which cannot start on a thread that has one.
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(bridge.delete_bridge).result()
        except Exception as exc:
            log.warning("could not delete the bridge %s: %s", bridge.cfg.bridge, exc)
            return {"sandboxes_removed": removed, "bridge_error": repr(exc)}  # type: ignore[dict-item]
        return {"sandboxes_removed": removed}

    def stop(self, stop_runtime: bool = False) -> None:
        if self.kubelet is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self.kubelet.stop)
        self._thread.join(10)
        if stop_runtime and self.runtime_proc is not None:
            self.runtime_proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.runtime_proc.wait(10)


def deploy_kubelet(
    config: KrayConfig,
    node_id: str,
    node_name: str,
    pod_cidr: str,
    root: str = DEFAULT_ROOT,
    kubelet_config: KubeletConfig | None = None,
    runtime_args: list[str] | None = None,
    device_plugin_dir: str | None = None,
) -> Any:
    """Create (or find) the detached kubelet actor of a Ray node, pinned to it."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote_cls = ray.remote(KubeletActor)
    return remote_cls.options(  # type: ignore[attr-defined]
        name=actor_name(node_name),
        namespace=RAY_NAMESPACE,
        lifetime="detached",
        max_restarts=-1,
        max_task_retries=-1,
        get_if_exists=True,
        num_cpus=0,
        max_concurrency=4,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
    ).remote(config, node_name, pod_cidr, root, kubelet_config, runtime_args, device_plugin_dir)
