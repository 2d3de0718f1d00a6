"""What the scheduler core needs from the outside world, as small ports with in-memory fakes.

Production wires etcd-backed adapters (optimistic-transaction Binder, an API-server status
reporter); tests and benchmarks use the fakes in ``fakes.py``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol

from kray.crds import Pod

from .status import Status


class Clock(Protocol):
    def now(self) -> float: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()


class FakeClock:
    """Time that only moves when a test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Binder(Protocol):
    """Writes ``pod.spec.nodeName``. Must be atomic against the node's current load: two scheduler
    shards binding onto one node concurrently must never overcommit it (etcd transaction).
    ``annotations`` (e.g. the GPUs Reserve picked) are set on the pod in the same write."""

    async def bind(self, pod: Pod, node_name: str, annotations: Mapping[str, str] | None = None) -> Status: ...


class StatusReporter(Protocol):
    """Tells the world a pod could not be scheduled (PodScheduled=False condition plus an Event)."""

    def unschedulable(self, pod: Pod, reason: str, message: str) -> None: ...

    def scheduled(self, pod: Pod, node_name: str) -> None: ...


class Evictor(Protocol):
    """Deletes a preemption victim (production: a graceful delete through the API server)."""

    def evict(self, pod: Pod, reason: str) -> None: ...
