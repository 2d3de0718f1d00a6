"""The node's host-gw routes, kept in step with the Nodes (flannel's host-gw backend).

Hosted by the proxy actor beside the Service rules: both are the node's share of the cluster
network, both need root on the node, and one actor costs less than two. The logic is
``kray.runtime.routes.RouteSync``; this is the watch loop around it. Node events only mark the
state dirty; the loop syncs at most every ``min_sync_interval`` and re-syncs every
``resync_period`` even without events (repairing a route someone deleted). ``stop`` removes
every route it made.

Only Nodes that run kray's pod network are routed to: those the node agent registered (they
carry ``kray.io/ray-node-id``). Hand-made and hollow Nodes, whose addresses may be anything,
never get a route on a real machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from kray.actors.framework import FuncHandler, Informer, ListWatcher
from kray.crds.core import Node
from kray.crds.meta import Resource
from kray.crds.registry import REGISTRY, Registry
from kray.runtime.routes import Changes, RouteSync, RouteTable

log = logging.getLogger(__name__)

# The node agent's label on the Nodes it registers (kray.actors.nodeagent.core.RAY_NODE_ID_LABEL).
NETWORK_NODE_LABEL = "kray.io/ray-node-id"


def routed_nodes(nodes: list[Any], own_node: str) -> list[Any]:
    return [n for n in nodes if n.name == own_node or NETWORK_NODE_LABEL in (n.metadata.labels or {})]


class RouteLoop:
    def __init__(
        self,
        list_watcher: ListWatcher,
        table: RouteTable,
        node_name: str,
        *,
        min_sync_interval: float = 0.2,
        resync_period: float = 30.0,
        registry: Registry = REGISTRY,
    ) -> None:
        self.node_name = node_name
        self.route_sync = RouteSync(table, node_name)
        self.min_sync_interval = min_sync_interval
        self.resync_period = resync_period
        self.nodes = Informer(list_watcher, registry.for_model(Node))
        self.syncs = 0
        self.errors = 0
        self.last: Changes | None = None
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.nodes.add_handler(FuncHandler(add=self._mark, update=lambda _o, _n: self._dirty.set(), delete=self._mark))

    def _mark(self, _obj: Resource) -> None:
        self._dirty.set()

    async def sync(self) -> Changes:
        nodes = routed_nodes([n for n in self.nodes.cache.list() if isinstance(n, Node)], self.node_name)
        # pyroute2 runs an event loop of its own, which cannot start on a thread that has one.
        changes = await asyncio.to_thread(self.route_sync.sync, nodes)
        self.syncs += 1
        self.last = changes
        return changes

    async def start(self, sync_timeout: float | None = 30.0) -> bool:
        self.nodes.start()
        ok = await self.nodes.wait_for_sync(sync_timeout)
        self._task = asyncio.ensure_future(self._loop())
        return ok

    async def _loop(self) -> None:
        self._dirty.set()  # the first pass
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), self.resync_period)
            await asyncio.sleep(self.min_sync_interval)  # coalesce a burst of Node updates
            self._dirty.clear()
            try:
                if self.nodes.has_synced():
                    await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a loop that never dies: retry on the next event or resync
                self.errors += 1
                log.warning("routes on %s: sync failed: %s", self.node_name, exc)

    async def stop(self, clear: bool = True) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.nodes.stop()
        if clear:
            await asyncio.to_thread(self.route_sync.clear)
