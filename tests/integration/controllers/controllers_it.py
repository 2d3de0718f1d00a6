"""Shared by the controller integration tests: controllers running over the real API server, and
polling for a condition."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from kray.actors.framework import ClientListWatcher, Manager
from kray.client import AsyncClient
from kray.config import KrayConfig


@contextlib.asynccontextmanager
async def running(config: KrayConfig, *setups: Callable[..., Any], **options: Any) -> AsyncIterator[AsyncClient]:
    """A client, with a Manager running the controllers each ``setup`` registers (HTTP list/watch).

    ``options``: per setup function name, its keyword options (``namespace={"recheck_seconds": 0.2}``).
    """
    async with AsyncClient(config) as c:
        manager = Manager(ClientListWatcher(c, timeout_seconds=30), c)
        for setup in setups:
            setup(manager, **options.get(setup.__module__.rsplit(".", 1)[-1], {}))
        task = asyncio.ensure_future(manager.run())
        try:
            yield c
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def wait_for(cond: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
