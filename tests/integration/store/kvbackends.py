"""Backend handle shared by the contract tests and their conftest (no package here)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from kray.actors.store.kv import KV
from kray.actors.store.memory import MemoryKV


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    name: str
    kv: KV
    prefix: str
    clock: FakeClock | None = None

    async def elapse(self, seconds: float) -> None:
        """Let lease time pass: instantly on the fake clock, really on etcd."""
        if self.clock is not None and isinstance(self.kv, MemoryKV):
            self.clock.now += seconds
            self.kv.expire_leases()
        else:
            await asyncio.sleep(seconds)
