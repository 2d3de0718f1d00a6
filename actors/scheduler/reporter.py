"""The production StatusReporter: PodScheduled=False on the pod (status subresource) plus an Event.

The port is synchronous (it is called from inside a scheduling cycle), so writes go out as
background tasks, bounded so a burst of failures cannot flood the API server. A pod that fails
again with the same message is not re-reported: kube-scheduler's FailedScheduling events are
de-duplicated too, and every write here competes with bindings.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from kray.crds import Pod

from .binder import BIND_CONFLICT
from .pod_info import pod_key

log = logging.getLogger(__name__)

COMPONENT = "default-scheduler"


def _now() -> datetime:
    return datetime.now(timezone.utc)


class ApiStatusReporter:
    def __init__(
        self,
        client: Any,
        *,
        scheduled_events: bool = False,
        max_concurrent: int = 16,
        clock: Callable[[], datetime] = _now,
        instance: str = "",
    ) -> None:
        self.client = client
        # kube-scheduler records a "Scheduled" Event per pod; off by default here because it
        # doubles the API writes per scheduled pod.
        self.scheduled_events = scheduled_events
        self.clock = clock
        self.instance = instance
        self._last: dict[str, str] = {}
        self._sem = asyncio.Semaphore(max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(self._guarded(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, coro: Any) -> None:
        async with self._sem:
            try:
                await coro
            except Exception as exc:  # the pod went away, the server is busy: a report is best-effort
                log.debug("scheduler report failed: %s", exc)

    def unschedulable(self, pod: Pod, reason: str, message: str) -> None:
        if message.startswith(BIND_CONFLICT):
            return
        key = pod_key(pod)
        if self._last.get(key) == f"{reason}\n{message}":
            return
        self._last[key] = f"{reason}\n{message}"
        self._spawn(self._write_unschedulable(pod, reason, message))

    def scheduled(self, pod: Pod, node_name: str) -> None:
        self._last.pop(pod_key(pod), None)
        if self.scheduled_events:
            msg = f"Successfully assigned {pod_key(pod)} to {node_name}"
            self._spawn(self.event(pod, "Normal", "Scheduled", msg))

    async def _write_unschedulable(self, pod: Pod, reason: str, message: str) -> None:
        now = self.clock().isoformat().replace("+00:00", "Z")
        conds = [
            c.model_dump(by_alias=True, exclude_none=True, mode="json")
            for c in (pod.status.conditions if pod.status else None) or []
            if c.type != "PodScheduled"
        ]
        conds.append(
            {"type": "PodScheduled", "status": "False", "reason": reason, "message": message, "lastTransitionTime": now}
        )
        patch = {"status": {"conditions": conds}}
        await self.client.patch(Pod, pod.metadata.name, patch, pod.metadata.namespace, subresource="status")
        await self.event(pod, "Warning", "FailedScheduling", message)

    async def event(self, pod: Pod, type_: str, reason: str, message: str) -> None:
        from kray.crds.core.event import Event

        now = self.clock()
        ns = pod.metadata.namespace or "default"
        body = {
            "metadata": {"name": f"{pod.metadata.name}.{uuid.uuid4().hex[:16]}", "namespace": ns},
            "involvedObject": {
                "kind": "Pod",
                "apiVersion": "v1",
                "namespace": ns,
                "name": pod.metadata.name,
                "uid": pod.metadata.uid,
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance or None,
            "action": "Scheduling",
        }
        await self.client.create(Event.model_validate(body))

    async def drain(self) -> None:
        """Wait for the writes in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
