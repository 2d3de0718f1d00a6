"""An in-memory cluster for controller unit tests: the API server over MemoryKV, an in-process
client, and a Manager on store informers that `wire` fills with controllers. A restart is a
fresh Manager (it lists, then watches); time is a FakeClock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timezone

import httpx

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.framework import FakeClock, Manager, StoreListWatcher
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient
from kray.crds import REGISTRY

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
TOKEN = "t"


class MemoryCluster:
    def __init__(self, wire: Callable[[Manager], object]) -> None:
        self.clock = FakeClock(NOW)
        self.kv = MemoryKV()
        self.store = ObjectStore(self.kv, REGISTRY)
        self.api = ApiServer(self.store, REGISTRY, token=TOKEN, clock=self.clock.now)
        self.client = AsyncClient(
            server="http://kray.test", token=TOKEN, transport=httpx.ASGITransport(app=self.api.app)
        )
        self._wire = wire
        self.manager = self._manager()

    def _manager(self) -> Manager:
        manager = Manager(StoreListWatcher(self.store), self.client, clock=self.clock)
        self._wire(manager)
        return manager

    async def start_control_plane(self) -> None:
        await self.api.start()
        assert await self.manager.start_informers(5)

    async def restart_controller(self) -> None:
        """A fresh manager: it lists what is in the store, then watches."""
        await self.manager.stop()
        self.manager = self._manager()
        assert await self.manager.start_informers(5)

    async def stop(self) -> None:
        await self.manager.stop()
        await self.client.aclose()
        await self.kv.close()

    @staticmethod
    async def settle(turns: int = 5) -> None:
        """Let the watches deliver what was written."""
        for _ in range(turns):
            await asyncio.sleep(0.002)
