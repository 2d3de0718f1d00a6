"""The production Evictor: a graceful delete of the preemption victim through the API server,
plus a "Preempted" Event on it (the port is synchronous, so both go out as a background task)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kray.crds import Pod

log = logging.getLogger(__name__)


class ApiEvictor:
    def __init__(self, client: Any, reporter: Any = None) -> None:
        self.client = client
        self.reporter = reporter  # an ApiStatusReporter, for the Event (optional)
        self.evicted: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def evict(self, pod: Pod, reason: str) -> None:
        task = asyncio.ensure_future(self._evict(pod, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _evict(self, pod: Pod, reason: str) -> None:
        from kray.client.errors import NotFound

        try:
            # The victim's UID as precondition: never delete a newer pod of the same name.
            pre = {"uid": pod.metadata.uid} if pod.metadata.uid else None
            await self.client.delete(Pod, pod.metadata.name, pod.metadata.namespace, preconditions=pre)
            self.evicted.append(f"{pod.metadata.namespace}/{pod.metadata.name}")
            if self.reporter is not None:
                await self.reporter.event(pod, "Normal", "Preempted", reason)
        except NotFound:
            pass
        except Exception as exc:
            log.warning("evicting %s/%s failed: %s", pod.metadata.namespace, pod.metadata.name, exc)
