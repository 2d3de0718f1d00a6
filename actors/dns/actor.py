"""The Ray wrapper: one named, detached DNS actor per node (``kray-dns-<node>``).

Plumbing only; the logic is ``DnsCore``. It is pinned to its node and listens on an address
the node's pods reach (the pod bridge's gateway address, port 53), which the kubelet writes
into each pod's resolv.conf; one server per node keeps lookups local, like NodeLocal DNSCache.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

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
        self.error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=actor_name(node_name), daemon=True)
        self._thread.start()
        self._started.wait(30)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._main = loop.create_task(self._serve())
            loop.call_soon(self._started.set)
            loop.run_until_complete(self._main)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self.error = repr(exc)
                log.exception("dns on %s failed", self.node_name)
        finally:
            self._started.set()
            loop.close()

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

    def address(self) -> tuple[str, int] | None:
        return self.core.address if self.core is not None and self.core._transport is not None else None

    def status(self) -> dict[str, Any]:
        core = self.core
        return {"node": self.node_name, "queries": core.server.queries if core else 0, "error": self.error}

    def stop(self) -> None:
        loop, main = self._loop, self._main
        if loop is not None and main is not None and not main.done():
            loop.call_soon_threadsafe(main.cancel)
        self._thread.join(10)


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
