"""The proxy core: watch Services and Endpoints, keep the node's nftables table in step.

Event handlers only mark the state dirty; one sync loop turns the informer caches into a
``Ruleset`` and applies it whole. Changes that arrive while a sync is running or within
``min_sync_interval`` of the last one are coalesced into the next transaction (kube-proxy's
``minSyncPeriod``), so a burst of Endpoints updates costs one ``nft -f``, and any change is
live well within a second. A periodic resync re-applies the table even when nothing changed,
repairing it if someone flushed it. ``stop`` removes the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from kray.actors.framework import FuncHandler, Informer, ListWatcher
from kray.crds.core import Endpoints, Service
from kray.crds.meta import Resource
from kray.crds.registry import REGISTRY, Registry

from .nftables import Nftables
from .rules import MASQ_MARK, Backend, Ruleset, ServiceRule

log = logging.getLogger(__name__)


def table_name(node_name: str) -> str:
    # nft table names are identifiers: keep them short and plain.
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in node_name)
    return f"kray-{safe}"[:60]


def desired_services(services: Iterable[Service], endpoints: Iterable[Endpoints]) -> tuple[ServiceRule, ...]:
    """One rule per ClusterIP port; backends are the ready addresses of the matching port."""
    eps = {(e.metadata.namespace, e.metadata.name): e for e in endpoints}
    rules: list[ServiceRule] = []
    for svc in services:
        spec = svc.spec
        ip = spec.cluster_ip
        if not ip or ip == "None" or spec.type == "ExternalName":
            continue  # headless and ExternalName Services get no rules
        ns, name = svc.metadata.namespace or "", svc.metadata.name or ""
        ep = eps.get((ns, name))
        for sp in spec.ports or ():
            backends: set[Backend] = set()
            for subset in (ep.subsets if ep else None) or ():
                # Endpoints ports are matched to Service ports by name (kube's rule).
                for p in subset.ports or ():
                    if (p.name or "") != (sp.name or "") or p.protocol != sp.protocol:
                        continue
                    for addr in subset.addresses or ():
                        backends.add(Backend(addr.ip, p.port))
            rules.append(
                ServiceRule(ns, name, sp.name or "", ip, sp.port, sp.protocol.lower(), tuple(sorted(backends)))
            )
    rules.sort(key=lambda r: (r.namespace, r.name, r.port_name, r.protocol))
    return tuple(rules)


class ProxyCore:
    def __init__(
        self,
        list_watcher: ListWatcher,
        nft: Nftables,
        node_name: str,
        *,
        table: str | None = None,
        masquerade_all: bool = True,
        mark: int = MASQ_MARK,
        min_sync_interval: float = 0.1,
        resync_period: float = 30.0,
        registry: Registry = REGISTRY,
    ) -> None:
        self.nft = nft
        self.node_name = node_name
        self.table = table or table_name(node_name)
        self.masquerade_all = masquerade_all
        self.mark = mark
        self.min_sync_interval = min_sync_interval
        self.resync_period = resync_period
        self.services = Informer(list_watcher, registry.for_model(Service))
        self.endpoints = Informer(list_watcher, registry.for_model(Endpoints))
        self.applied: Ruleset | None = None
        self.syncs = 0  # transactions applied (tests, metrics)
        self.errors = 0
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        handler = FuncHandler(add=self._mark, update=self._mark_update, delete=self._mark)
        self.services.add_handler(handler)
        self.endpoints.add_handler(handler)

    # ---- events ----

    def _mark(self, _obj: Resource) -> None:
        self._dirty.set()

    def _mark_update(self, old: Resource, new: Resource) -> None:
        # Status-only Service updates and resync echoes change nothing here; the ruleset
        # comparison in sync() makes them free anyway, this only saves the work.
        if old is not new:
            self._dirty.set()

    # ---- the ruleset ----

    def ruleset(self) -> Ruleset:
        services = [o for o in self.services.cache.list() if isinstance(o, Service)]
        endpoints = [o for o in self.endpoints.cache.list() if isinstance(o, Endpoints)]
        return Ruleset(
            self.table,
            desired_services(services, endpoints),
            masquerade_all=self.masquerade_all,
            mark=self.mark,
        )

    async def sync(self, force: bool = False) -> bool:
        """Apply the current ruleset if it changed (or ``force``); True when a transaction ran."""
        wanted = self.ruleset()
        if not force and wanted == self.applied:
            return False
        await self.nft.apply(wanted)
        self.applied = wanted
        self.syncs += 1
        return True

    # ---- lifecycle ----

    async def start(self, sync_timeout: float | None = 30.0) -> bool:
        """Start the informers, apply the first ruleset, then keep it in step. False: not synced."""
        self.services.start()
        self.endpoints.start()
        ok = await self.services.wait_for_sync(sync_timeout) and await self.endpoints.wait_for_sync(sync_timeout)
        if ok:
            await self.sync(force=True)
        self._task = asyncio.ensure_future(self._loop())
        return ok

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), self.resync_period)
            force = not self._dirty.is_set()  # the periodic resync
            # Rate limit: gather whatever else arrives until min_sync_interval has passed.
            wait = last + self.min_sync_interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._dirty.clear()
            try:
                if self.services.has_synced() and self.endpoints.has_synced():
                    await self.sync(force=force)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors += 1
                log.warning("proxy %s: applying table %s failed: %s", self.node_name, self.table, exc)
                self.applied = None
                self._dirty.set()  # retry after the rate limit
            last = loop.time()

    async def stop(self, remove_table: bool = True) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self.services.stop()
        await self.endpoints.stop()
        if remove_table:
            await self.nft.delete_table("ip", self.table)
            self.applied = None
