"""The kubelet's Pod Events (Pulled, Created, Started, Killing, BackOff, Unhealthy, hook and
create failures), written off the critical path.

``emit()`` only appends to a bounded in-memory queue and never awaits the API server, so a slow
or unreachable API server cannot slow a pod's start; a full queue drops the newest event and
counts it (``dropped``), like client-go's broadcaster. One drain task writes the queue through
the framework's ``EventRecorder``, whose correlator turns repeats of one event (same pod, type,
reason, message) into a bumped ``count``/``lastTimestamp`` instead of new objects.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Literal

from kray.actors.framework.ports import Clock, Writer
from kray.actors.framework.reconciler import EventRecorder
from kray.crds import Pod

log = logging.getLogger(__name__)

COMPONENT = "kubelet"
DEFAULT_QUEUE_SIZE = 1000
EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class PendingEvent:
    pod: Pod
    type: EventType
    reason: str
    message: str


class PodEvents:
    def __init__(self, writer: Writer, node_name: str, clock: Clock, max_queued: int = DEFAULT_QUEUE_SIZE) -> None:
        self.recorder = EventRecorder(writer, COMPONENT, clock=clock, host=node_name)
        self.max_queued = max_queued
        self.queue: deque[PendingEvent] = deque()
        self.dropped = 0  # events lost to a full queue (the API server could not keep up)
        self.written = 0
        self._wake = asyncio.Event()

    def emit(self, pod: Pod, type_: EventType, reason: str, message: str) -> None:
        """Queue one event; never blocks, never raises."""
        if len(self.queue) >= self.max_queued:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("kubelet event queue full (%d): dropped %d events so far", self.max_queued, self.dropped)
            return
        self.queue.append(PendingEvent(pod, type_, reason, message))
        self._wake.set()

    def normal(self, pod: Pod, reason: str, message: str) -> None:
        self.emit(pod, "Normal", reason, message)

    def warning(self, pod: Pod, reason: str, message: str) -> None:
        self.emit(pod, "Warning", reason, message)

    async def flush(self) -> int:
        """Write everything queued now, in order; how many were written."""
        n = 0
        while self.queue:
            ev = self.queue.popleft()
            # EventRecorder.event logs and swallows API errors: one lost event, never a dead loop.
            if await self.recorder.event(ev.pod, ev.type, ev.reason, ev.message) is not None:
                n += 1
        self.written += n
        return n

    async def run(self) -> None:
        """Drain forever (until cancelled)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # the drain loop must outlive any one bad event
                log.exception("kubelet event drain failed")
