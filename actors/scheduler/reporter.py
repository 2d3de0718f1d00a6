"""The production StatusReporter: PodScheduled=False on the pod (status subresource) plus an Event,
and kube-scheduler's Normal "Scheduled" Event for every pod bound.

The port is synchronous (it is called from inside a scheduling cycle), so writes go out in the
background. A pod that fails again with the same message is not re-reported: kube-scheduler's
FailedScheduling events are de-duplicated too, and every write here competes with bindings.

"Scheduled" events come once per bound pod, so at full binding speed they would double the API
writes: they go through ``EventQueue``, a bounded buffer drained by one task a few writes at a
time. When the API server cannot keep up the buffer fills and further events are dropped and
counted; binding never waits for an event.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kray.crds import Pod

from .binder import BIND_CONFLICT
from .pod_info import pod_key

log = logging.getLogger(__name__)

COMPONENT = "default-scheduler"
EVENT_QUEUE_CAPACITY = 2000  # events waiting to be written before new ones are dropped
EVENT_BATCH = 8  # event writes in flight at once: enough to keep up, few enough not to crowd binds


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _timestamp(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class PendingEvent:
    pod: Pod
    type: str
    reason: str
    message: str
    at: datetime


class EventQueue:
    """Events written off the caller's path: ``put`` only appends (or drops when full); one task
    writes what is buffered, ``batch`` at a time, and ends when the buffer is empty."""

    def __init__(
        self,
        write: Callable[[PendingEvent], Awaitable[None]],
        *,
        capacity: int = EVENT_QUEUE_CAPACITY,
        batch: int = EVENT_BATCH,
    ) -> None:
        if capacity < 1 or batch < 1:
            raise ValueError("capacity and batch must be >= 1")
        self.write = write
        self.capacity = capacity
        self.batch = batch
        self._buffer: deque[PendingEvent] = deque()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0  # the buffer was full
        self.failed = 0  # the API server refused or could not be reached

    def __len__(self) -> int:
        return len(self._buffer)

    @property
    def busy(self) -> bool:
        """Events buffered or being written."""
        return self._task is not None and not self._task.done()

    def put(self, event: PendingEvent) -> bool:
        """Buffer ``event``; False (and counted) when the buffer is full. Needs a running loop."""
        if len(self._buffer) >= self.capacity:
            self.dropped += 1
            return False
        self._buffer.append(event)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._drain_buffer())
        return True

    async def _drain_buffer(self) -> None:
        while self._buffer:
            take = min(self.batch, len(self._buffer))
            batch = [self._buffer.popleft() for _ in range(take)]
            results = await asyncio.gather(*(self.write(e) for e in batch), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    self.failed += 1
                    log.debug("scheduler event not written: %s", result)
                else:
                    self.written += 1

    async def drain(self) -> None:
        """Wait until everything buffered has been written (tests, shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.gather(self._task, return_exceptions=True)

    async def close(self) -> None:
        """Stop writing; what is still buffered is dropped (and counted)."""
        self.dropped += len(self._buffer)
        self._buffer.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def stats(self) -> dict[str, int]:
        return {"written": self.written, "dropped": self.dropped, "failed": self.failed, "queued": len(self)}


class ApiStatusReporter:
    def __init__(
        self,
        client: Any,
        *,
        scheduled_events: bool = True,
        max_concurrent: int = 16,
        clock: Callable[[], datetime] = _now,
        instance: str = "",
        event_capacity: int = EVENT_QUEUE_CAPACITY,
        event_batch: int = EVENT_BATCH,
    ) -> None:
        self.client = client
        # kube-scheduler records a "Scheduled" Event per bound pod; kray does too, through the
        # bounded queue (see the module docstring). False: none at all (benchmarks compare).
        self.scheduled_events = scheduled_events
        self.clock = clock
        self.instance = instance
        self._last: dict[str, str] = {}
        self._sem = asyncio.Semaphore(max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()
        self.events = EventQueue(self._write_queued, capacity=event_capacity, batch=event_batch)

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
        key = pod_key(pod)
        self._last.pop(key, None)
        if self.scheduled_events:
            message = f"Successfully assigned {key} to {node_name}"
            self.events.put(PendingEvent(pod, "Normal", "Scheduled", message, self.clock()))

    async def _write_queued(self, e: PendingEvent) -> None:
        await self.event(e.pod, e.type, e.reason, e.message, at=e.at)

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

    async def event(self, pod: Pod, type_: str, reason: str, message: str, *, at: datetime | None = None) -> None:
        from kray.crds.core.event import Event

        # Raw JSON out, raw JSON back: no model round trip on the scheduler's loop for an event.
        now = _timestamp(at or self.clock())
        ns = pod.metadata.namespace or "default"
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
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
            "action": "Scheduling",
        }
        if self.instance:
            body["reportingInstance"] = self.instance
        await self.client.create_raw(body, Event)

    async def drain(self) -> None:
        """Wait for the writes in flight and the events buffered (tests, shutdown)."""
        while self._tasks or self.events.busy:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            await self.events.drain()

    def stats(self) -> dict[str, Any]:
        return {"scheduled_events": self.scheduled_events, **self.events.stats()}
