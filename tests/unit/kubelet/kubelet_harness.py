"""Shared by the kubelet unit tests: the in-memory cluster, FakeClock and FakeCri."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.framework import FakeClock
from kray.actors.kubelet import Kubelet, KubeletConfig
from kray.actors.kubelet.fakes import FakeCri
from kray.client import AsyncClient
from kray.crds import Pod
from kray.runtime.volumes import EmptyDirPlugin, HostPathPlugin, ProjectedFilesPlugin, VolumeManager

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)


@dataclass
class Env:
    api: ApiServer
    client: AsyncClient
    clock: FakeClock
    cri: FakeCri
    kubelet: Kubelet
    volumes: VolumeManager
    tmp: Path

    async def step(self, advance: float = 0.0, rounds: int = 2) -> None:
        if advance:
            self.clock.advance(advance)
        for _ in range(rounds):
            await self.kubelet.step()

    async def pod(self, name: str, namespace: str = "default") -> Pod:
        return await self.client.get(Pod, name, namespace)

    async def create(self, name: str, spec: dict[str, Any], namespace: str = "default", **meta: Any) -> Pod:
        spec = {"nodeName": "n1", **spec}
        body = {"metadata": {"name": name, "namespace": namespace, **meta}, "spec": spec}
        return await self.client.create(Pod.model_validate(body))

    def new_kubelet(self, devices: Any = None) -> Kubelet:
        cfg = KubeletConfig(cpu="4", memory="8Gi", node_ip="192.168.0.10", hostname="n1", pod_cidr="10.88.0.0/24")
        return Kubelet("n1", self.client, self.cri, self.volumes, devices, self.clock, cfg)


def volume_manager(root: Path) -> VolumeManager:
    # Secrets on disk instead of tmpfs: unit tests do not run as root.
    plugins = [
        EmptyDirPlugin(),
        HostPathPlugin(),
        ProjectedFilesPlugin("configMap", False),
        ProjectedFilesPlugin("secret", False),
    ]
    return VolumeManager(root, {p.kind: p for p in plugins})


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """``app`` on a real loopback port (WebSockets need one) with uvicorn, in this event loop."""
    import uvicorn

    from kray.etcd_server import free_port

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="websockets-sansio"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
