"""The manager: hosts controllers over shared informers (one per kind + namespace).

It holds the ports (list-watcher, writer, clock) and hands them out; controllers read
through ``manager.reader`` (the informer caches) and write through ``manager.writer``.
Informers can run while controllers wait for leadership (warm standby): ``start_informers``
and ``start_controllers`` are separate so the hosting layer can gate only the latter.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from typing import TypeVar

from kray.crds.meta import Resource
from kray.crds.registry import REGISTRY, KindInfo, Registry

from .controller import Controller
from .informer import Informer
from .ports import Clock, ListWatcher, SystemClock, Writer
from .reconciler import EventRecorder

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Resource)


class Manager:
    def __init__(
        self,
        list_watcher: ListWatcher,
        writer: Writer,
        *,
        clock: Clock | None = None,
        namespace: str | None = None,
        resync_period: float | None = None,
        registry: Registry = REGISTRY,
        name: str = "kray-controller-manager",
    ) -> None:
        self.list_watcher = list_watcher
        self.writer = writer
        self.clock: Clock = clock or SystemClock()
        self.namespace = namespace  # restricts every informer (a namespaced operator)
        self.resync_period = resync_period
        self.registry = registry
        self.name = name
        self.controllers: dict[str, Controller] = {}
        self.informers: dict[tuple[str, str, str | None], Informer] = {}
        self.reader = CacheReader(self)
        self._informers_started = False
        self._controllers_started = False

    # ---- wiring ----

    def info_for(self, kind: type[Resource] | KindInfo) -> KindInfo:
        return kind if isinstance(kind, KindInfo) else self.registry.for_model(kind)

    def informer_for(self, kind: type[Resource] | KindInfo) -> Informer:
        """The shared informer for a kind (created on first use; started if the manager is)."""
        info = self.info_for(kind)
        ns = self.namespace if info.namespaced else None
        key = (info.api_version, info.kind, ns)
        informer = self.informers.get(key)
        if informer is None:
            informer = Informer(self.list_watcher, info, ns, clock=self.clock, resync_period=self.resync_period)
            self.informers[key] = informer
            if self._informers_started:
                informer.start()
        return informer

    def add_controller(self, controller: Controller) -> None:
        if controller.name in self.controllers:
            raise ValueError(f"a controller named {controller.name!r} is already registered")
        self.controllers[controller.name] = controller
        if self._controllers_started:
            controller.start()

    def event_recorder(self, component: str) -> EventRecorder:
        return EventRecorder(self.writer, component, clock=self.clock)

    # ---- lifecycle ----

    async def start_informers(self, sync_timeout: float | None = 60.0) -> bool:
        """Start every informer and wait until all have listed; False on timeout."""
        self._informers_started = True
        for informer in list(self.informers.values()):
            informer.start()
        return await self.wait_for_sync(sync_timeout)

    async def wait_for_sync(self, timeout: float | None = 60.0) -> bool:
        results = await asyncio.gather(*(i.wait_for_sync(timeout) for i in list(self.informers.values())))
        return all(results)

    def has_synced(self) -> bool:
        return all(i.has_synced() for i in self.informers.values())

    def start_controllers(self) -> None:
        self._controllers_started = True
        for c in self.controllers.values():
            c.start()

    async def stop_controllers(self) -> None:
        self._controllers_started = False
        for c in list(self.controllers.values()):
            await c.stop()

    async def stop(self) -> None:
        await self.stop_controllers()
        self._informers_started = False
        for informer in list(self.informers.values()):
            await informer.stop()

    async def step(self) -> int:
        """One pass: every controller reconciles what is queued now. Returns the total."""
        total = 0
        for c in list(self.controllers.values()):
            try:
                total += await c.step()
            except Exception:  # one controller's failure must not starve the others
                log.exception("%s: step failed", c.name)
        return total

    async def run(self) -> None:
        """Start everything and run until cancelled."""
        try:
            await self.start_informers(sync_timeout=None)
            self.start_controllers()
            await asyncio.Event().wait()
        finally:
            with contextlib.suppress(Exception):
                await self.stop()


class CacheReader:
    """Reads from the manager's informer caches; a kind not watched yet gets an informer."""

    def __init__(self, manager: Manager) -> None:
        self.manager = manager

    async def _informer(self, kind: type[Resource]) -> Informer:
        informer = self.manager.informer_for(kind)
        if not informer.has_synced():
            informer.start()  # idempotent; a lazily added kind starts on first read
            await informer.wait_for_sync()
        return informer

    async def get(self, kind: type[R], name: str, namespace: str | None = None) -> R:
        from kray.client.errors import NotFound

        informer = await self._informer(kind)
        obj = informer.cache.get_by_name(namespace if informer.info.namespaced else None, name)
        if obj is None:
            raise NotFound(404, "NotFound", f'{informer.info.resource} "{name}" not found')
        return obj  # type: ignore[return-value]

    async def list(
        self, kind: type[R], namespace: str | None = None, *, label_selector: str | None = None
    ) -> builtins.list[R]:
        informer = await self._informer(kind)
        return informer.cache.list(namespace, label_selector)  # type: ignore[return-value]

    async def by_index(self, kind: type[R], index: str, value: str) -> builtins.list[R]:
        informer = await self._informer(kind)
        return informer.cache.by_index(index, value)  # type: ignore[return-value]
