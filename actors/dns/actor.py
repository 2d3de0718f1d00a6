"""The Ray wrapper: one named, detached DNS actor per node (``kray-dns-<node>``).

Plumbing only; the logic is ``DnsCore``. It is pinned to its node and listens on an address
the node's pods reach (the pod bridge's gateway address, port 53), which the kubelet writes
into each pod's resolv.conf; one server per node keeps lookups local, like NodeLocal DNSCache.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from kray.actors.framework.loopthread import LoopThread
from kray.config import KrayConfig

log = logging.getLogger(__name__)

RAY_NAMESPACE = "kray"


def actor_name(node_name: str) -> str:
    return f"kray-dns-{node_name}"


class DnsActor:
    def __init__(self, config: KrayConfig, node_name: str, host: str, port: int, domain: str) -> None:
        import kray.crds  # noqa: F401  (registers the built-in kinds)

        self.config, self.node_name = config, node_name
        self.host, self.port, self.domain = host, port, domain
        self.core: Any = None
        self._runner = LoopThread(self._serve, actor_name(node_name))

    async def _serve(self) -> None:
        from kray.actors.framework.ports import ClientListWatcher
        from kray.client.aio import AsyncClient

        from .core import DnsCore

        async with AsyncClient(self.config) as client:
            self.core = DnsCore(ClientListWatcher(client), self.host, self.port, domain=self.domain)
            try:
                await self.core.start(sync_timeout=None)
                await asyncio.Event().wait()
            finally:
                await self.core.stop()

    def ready(self) -> bool:
        return self.address() is not None

    def address(self) -> tuple[str, int] | None:
        return self.core.address if self.core is not None and self.core._transport is not None else None

    def status(self) -> dict[str, Any]:
        core = self.core
        return {"node": self.node_name, "queries": core.server.queries if core else 0, "error": self._runner.error}

    def stop(self) -> None:
        self._runner.stop()


def deploy_dns(
    config: KrayConfig, node_id: str, node_name: str, host: str, port: int = 53, domain: str = "cluster.local"
) -> Any:
    """Create (or find) the detached DNS actor of one node, listening on ``host:port``."""
    remote_cls = ray.remote(DnsActor)
    return remote_cls.options(  # type: ignore[attr-defined]
        name=actor_name(node_name),
        namespace=RAY_NAMESPACE,
        lifetime="detached",
        max_restarts=-1,
        max_task_retries=-1,
        get_if_exists=True,
        num_cpus=0,
        max_concurrency=4,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
    ).remote(config, node_name, host, port, domain)
