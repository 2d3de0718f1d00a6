"""TEST STAND-IN for the kubelet (and for the scheduler's bind). Not a kubelet; tests only.

Until kray's real kubelet lands, workload-controller tests need *something* to move pods on:
``KubeletStandIn`` is a small loop over a pod informer that, for its fake nodes,

1. binds unscheduled pods to one of the fake nodes (round-robin; ``bind=False`` leaves that to a
   real scheduler),
2. marks a bound pod Running + Ready once it has been seen for ``ready_delay`` seconds,
3. finishes graceful deletions: a pod with a ``deletionTimestamp`` on a fake node gets the final
   ``DELETE`` with ``gracePeriodSeconds=0`` that a kubelet sends once containers have stopped.

It runs no containers and knows nothing about resources. Drive it with ``step()`` in unit tests
or ``run()`` as a task.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from kray.actors.framework.informer import Informer
from kray.actors.framework.ports import Clock, ListWatcher, SystemClock
from kray.client.errors import Conflict, NotFound
from kray.crds.core import Pod
from kray.crds.core.pod import ContainerState, ContainerStateRunning, ContainerStatus, PodStatus
from kray.crds.meta import Condition
from kray.crds.registry import REGISTRY

log = logging.getLogger(__name__)


class StandInWriter(Protocol):
    async def patch(self, kind: Any, name: str, patch: Any, namespace: str | None = None) -> Any: ...

    async def update_status(self, obj: Any) -> Any: ...

    async def delete(
        self, kind: Any, name: str, namespace: str | None = None, *, grace_period_seconds: int | None = None
    ) -> Any: ...


def fake_nodes(count: int, prefix: str = "fake-node") -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


class KubeletStandIn:
    """TEST STAND-IN: marks pods bound to fake nodes Running+Ready after ``ready_delay`` seconds."""

    def __init__(
        self,
        list_watcher: ListWatcher,
        writer: StandInWriter,
        *,
        nodes: Sequence[str] = ("fake-node-0",),
        ready_delay: float = 0.0,
        bind: bool = True,
        namespace: str | None = None,
        clock: Clock | None = None,
        concurrency: int = 32,
    ) -> None:
        self.writer = writer
        self.nodes = list(nodes)
        self.ready_delay = ready_delay
        self.bind = bind
        self.clock: Clock = clock or SystemClock()
        self.informer = Informer(list_watcher, REGISTRY.for_model(Pod), namespace, clock=self.clock)
        self._next_node = itertools.cycle(self.nodes)
        self._first_seen: dict[str, float] = {}  # pod uid -> when the stand-in first saw it bound
        self._limit = asyncio.Semaphore(concurrency)
        self.marked_ready = 0
        self.finalized = 0

    async def start(self, timeout: float = 30.0) -> bool:
        self.informer.start()
        return await self.informer.wait_for_sync(timeout)

    async def stop(self) -> None:
        await self.informer.stop()

    async def step(self) -> int:
        """One pass over the cached pods; returns how many writes it made."""
        now = self.clock.monotonic()
        live: set[str] = set()
        work = []
        for pod in self.informer.cache.list():
            if not isinstance(pod, Pod):
                continue
            uid = pod.metadata.uid or pod.name
            live.add(uid)
            node = pod.spec.node_name
            if pod.metadata.deletion_timestamp is not None:
                if node in self.nodes:
                    work.append(self._finalize(pod))
                continue
            if not node:
                if self.bind and self.nodes:
                    work.append(self._bind(pod, next(self._next_node)))
                continue
            if node not in self.nodes or _is_ready(pod):
                continue
            seen = self._first_seen.setdefault(uid, now)
            if now - seen >= self.ready_delay:
                work.append(self._mark_ready(pod))
        for uid in [u for u in self._first_seen if u not in live]:
            del self._first_seen[uid]
        results = await asyncio.gather(*work, return_exceptions=True)
        return sum(1 for r in results if r is True)

    async def run(self, interval: float = 0.05) -> None:
        await self.start()
        try:
            while True:
                try:
                    await self.step()
                except Exception:  # a test helper: keep going
                    log.exception("kubelet stand-in step failed")
                await self.clock.sleep(interval)
        finally:
            await self.stop()

    # ---- writes (conflicts and vanished pods are fine: the next pass sees the new state) ----

    async def _bind(self, pod: Pod, node: str) -> bool:
        patch = {"metadata": {"resourceVersion": pod.metadata.resource_version}, "spec": {"nodeName": node}}
        return await self._try(self.writer.patch(Pod, pod.name, patch, pod.metadata.namespace))

    async def _mark_ready(self, pod: Pod) -> bool:
        now = self.clock.now()
        updated = pod.model_copy(deep=True)
        updated.status = PodStatus(
            phase="Running",
            conditions=[
                Condition(type="PodScheduled", status="True", last_transition_time=now),
                Condition(type="Initialized", status="True", last_transition_time=now),
                Condition(type="ContainersReady", status="True", last_transition_time=now),
                Condition(type="Ready", status="True", last_transition_time=now),
            ],
            host_ip="127.0.0.1",
            pod_ip="10.0.0.1",
            start_time=now,
            container_statuses=[
                ContainerStatus(
                    name=c.name,
                    image=c.image or "",
                    ready=True,
                    started=True,
                    state=ContainerState(running=ContainerStateRunning(started_at=now)),
                )
                for c in pod.spec.containers
            ],
        )
        ok = await self._try(self.writer.update_status(updated))
        self.marked_ready += ok
        return ok

    async def _finalize(self, pod: Pod) -> bool:
        ok = await self._try(self.writer.delete(Pod, pod.name, pod.metadata.namespace, grace_period_seconds=0))
        self.finalized += ok
        return ok

    async def _try(self, write: Any) -> bool:
        async with self._limit:
            try:
                await write
                return True
            except (Conflict, NotFound):
                return False


def _is_ready(pod: Pod) -> bool:
    cond = pod.status.condition("Ready") if pod.status else None
    return cond is not None and cond.status == "True"
