"""The Ray wrapper: one named, detached proxy actor per node (``kray-proxy-<node>``).

Plumbing only; the logic is ``ProxyCore``. The actor is pinned to its node (it programs that
node's nftables), runs the core on a thread with its own event loop so it starts with the actor
(and after a restart, when it re-lists and replaces the table whole), and removes its table on
``stop``. It needs root on the node, like kube-proxy.
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
    return f"kray-proxy-{node_name}"


class ProxyActor:
    def __init__(self, config: KrayConfig, node_name: str, options: dict[str, Any] | None = None) -> None:
        import kray.crds  # noqa: F401  (registers the built-in kinds)

        self.config, self.node_name, self.options = config, node_name, dict(options or {})
        self.core: Any = None
        self.routes: Any = None
        self._runner = LoopThread(self._serve, actor_name(node_name))

    async def _serve(self) -> None:
        from kray.actors.framework.ports import ClientListWatcher
        from kray.client.aio import AsyncClient

        from .core import ProxyCore
        from .nftables import NftCli

        async with AsyncClient(self.config) as client:
            opts = dict(self.options)
            netns = opts.pop("netns", None)
            with_routes = bool(opts.pop("routes", False))
            nft = NftCli(netns=netns)
            self.core = ProxyCore(ClientListWatcher(client), nft, self.node_name, **opts)
            if with_routes:
                from kray.runtime.routes import NetlinkRouteTable

                from .routeloop import RouteLoop

                self.routes = RouteLoop(ClientListWatcher(client), NetlinkRouteTable(netns=netns), self.node_name)
            try:
                if self.routes is not None:
                    await self.routes.start(sync_timeout=None)
                await self.core.start(sync_timeout=None)
                await asyncio.Event().wait()
            finally:
                # Cancellation lands here: the table and the routes go with the actor.
                await self.core.stop()
                if self.routes is not None:
                    await self.routes.stop()

    def ready(self) -> bool:
        return self.core is not None and self.core.applied is not None

    def status(self) -> dict[str, Any]:
        core = self.core
        return {
            "node": self.node_name,
            "table": core.table if core else None,
            "syncs": core.syncs if core else 0,
            "errors": core.errors if core else 0,
            "services": len(core.applied.services) if core and core.applied else 0,
            "route_syncs": self.routes.syncs if self.routes is not None else None,
            "route_errors": self.routes.errors if self.routes is not None else None,
            "error": self._runner.error,
        }

    def stop(self) -> None:
        self._runner.stop()


def deploy_proxy(config: KrayConfig, node_id: str, node_name: str, **options: Any) -> Any:
    """Create (or find) the detached proxy actor for one node, pinned to that Ray node.

    ``options`` go to ``ProxyCore`` (table, masquerade_all, mark, min_sync_interval,
    resync_period) plus ``netns`` (program a named network namespace instead of the node's) and
    ``routes`` (also keep the node's host-gw routes to other nodes' podCIDRs, ``RouteLoop``).
    """
    remote_cls = ray.remote(ProxyActor)
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
    ).remote(config, node_name, options)
