"""Hollow nodes (like KWOK): many fake kubelets in one process, for scale tests and benchmarks.

``HollowNodes`` is a node provider, not a scheduler shortcut: it registers N Node objects
through the API server (capacity, labels, taints, a Ready condition), renews their Leases in
``kube-node-lease`` in batches (the node heartbeat since Kubernetes 1.17), and plays kubelet
for the pods bound to them: a bound pod is marked Running through the status subresource
(without containers), and a pod marked for graceful deletion is deleted for good, as a kubelet
does once its containers stopped. One process hosts thousands of them; an actor each would
cost ~1 s and 46 MiB apiece.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from kray.actors.framework.informer import FuncHandler, Informer
from kray.actors.framework.ports import ListWatcher
from kray.crds import Node, Pod
from kray.crds.core.lease import Lease
from kray.crds.meta import Resource
from kray.crds.registry import REGISTRY

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@dataclass
class NodeTemplate:
    """What every hollow node of a group looks like."""

    cpu: str = "32"
    memory: str = "256Gi"
    pods: int = 110
    gpus: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)  # [{"key":..,"value":..,"effect":..}]

    def capacity(self) -> dict[str, str]:
        cap = {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods)}
        if self.gpus:
            cap["nvidia.com/gpu"] = str(self.gpus)
        return cap

    def node(self, name: str, now: datetime) -> dict[str, Any]:
        cap = self.capacity()
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "hollow kubelet is posting ready status",
            "lastHeartbeatTime": _iso(now),
            "lastTransitionTime": _iso(now),
        }
        spec: dict[str, Any] = {"taints": self.taints} if self.taints else {}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/hostname": name, "type": "hollow", **self.labels},
                "annotations": {"kray.io/hollow": "true"},
            },
            "spec": spec,
            "status": {
                "capacity": cap,
                "allocatable": cap,
                "conditions": [ready],
                "addresses": [{"type": "InternalIP", "address": "10.255.0.1"}, {"type": "Hostname", "address": name}],
                "nodeInfo": {"kubeletVersion": "kray-hollow", "operatingSystem": "linux", "architecture": "amd64"},
                "phase": "Running",
            },
        }


async def _bounded(jobs: Iterable[Awaitable[Any]], limit: int) -> list[Any]:
    """Run awaitables with at most ``limit`` in flight; exceptions are returned, not raised."""
    sem = asyncio.Semaphore(limit)

    async def one(job: Awaitable[Any]) -> Any:
        async with sem:
            return await job

    return await asyncio.gather(*(one(j) for j in jobs), return_exceptions=True)


class HollowNodes:
    """``count`` nodes named ``<prefix>-<i>``, heartbeating and running their pods, in one process.

    ``client`` is a ``kray.client.AsyncClient`` (all writes go through the API server);
    ``pods`` is where bound pods are watched from (HTTP or the direct etcd bus); None: no pods
    are run (a node-only scale test). ``heartbeat_interval`` 0 disables lease renewal.
    """

    def __init__(
        self,
        client: Any,
        pods: ListWatcher | None,
        *,
        count: int,
        prefix: str = "hollow",
        template: NodeTemplate | None = None,
        heartbeat_interval: float = 10.0,
        lease_duration: int = 40,
        concurrency: int = 64,
        run_pods: bool = True,
    ) -> None:
        self.client = client
        self.pods_lw = pods
        self.template = template or NodeTemplate()
        self.names = [f"{prefix}-{i}" for i in range(count)]
        self._mine = set(self.names)
        self.heartbeat_interval = heartbeat_interval
        self.lease_duration = lease_duration
        self.concurrency = concurrency
        self.run_pods = run_pods
        self.running: set[str] = set()  # pods this provider marked Running ("ns/name")
        self.heartbeats = 0
        self._pods: Informer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sem = asyncio.Semaphore(concurrency)

    # ---- registration and heartbeats -------------------------------------------------------

    async def register(self) -> int:
        """Create the Nodes and their Leases (existing ones are kept); returns how many failed."""
        from kray.client.errors import AlreadyExists

        now = _now()

        async def one(name: str) -> None:
            with contextlib.suppress(AlreadyExists):
                await self.client.create_raw(self.template.node(name, now), Node)
            with contextlib.suppress(AlreadyExists):
                await self.client.create_raw(self._lease(name, now), Lease)

        results = await _bounded((one(n) for n in self.names), self.concurrency)
        failed = [r for r in results if isinstance(r, BaseException)]
        for exc in failed[:3]:
            log.warning("hollow node registration failed: %s", exc)
        return len(failed)

    def _lease(self, name: str, now: datetime) -> dict[str, Any]:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
            "spec": {
                "holderIdentity": name,
                "leaseDurationSeconds": self.lease_duration,
                "renewTime": now.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            },
        }

    async def heartbeat_once(self) -> int:
        """Renew every lease once, ``concurrency`` at a time; returns how many failed."""
        stamp = _now().isoformat(timespec="microseconds").replace("+00:00", "Z")
        patch = {"spec": {"renewTime": stamp}}
        jobs = (self.client.patch(Lease, n, patch, LEASE_NAMESPACE) for n in self.names)
        results = await _bounded(jobs, self.concurrency)
        self.heartbeats += 1
        return sum(1 for r in results if isinstance(r, BaseException))

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await self.heartbeat_once()
            except Exception as exc:
                log.warning("hollow heartbeat failed: %s", exc)

    # ---- playing kubelet -------------------------------------------------------------------

    def _pod_event(self, pod: Resource) -> None:
        assert isinstance(pod, Pod)
        if pod.spec.node_name not in self._mine:
            return
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        if pod.metadata.deletion_timestamp is not None:
            self._spawn(self._finish_delete(pod))
        elif (pod.status is None or pod.status.phase != "Running") and key not in self.running:
            self.running.add(key)
            self._spawn(self._mark_running(pod))

    def _pod_gone(self, pod: Resource) -> None:
        self.running.discard(f"{pod.metadata.namespace}/{pod.metadata.name}")

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def guarded() -> None:
            async with self._sem:
                try:
                    await coro
                except Exception as exc:  # the pod was deleted meanwhile: nothing to run
                    log.debug("hollow kubelet: %s", exc)

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _mark_running(self, pod: Pod) -> None:
        now = _iso(_now())
        conds = [
            c.model_dump(by_alias=True, exclude_none=True, mode="json")
            for c in (pod.status.conditions if pod.status else None) or []
            if c.type not in ("Initialized", "Ready", "ContainersReady")
        ]
        conds += [
            {"type": t, "status": "True", "lastTransitionTime": now}
            for t in ("Initialized", "Ready", "ContainersReady")
        ]
        statuses = [
            {"name": c.name, "image": c.image, "ready": True, "started": True, "restartCount": 0,
             "state": {"running": {"startedAt": now}}}
            for c in pod.spec.containers
        ]  # fmt: skip
        status = {
            "phase": "Running",
            "conditions": conds,
            "hostIP": "10.255.0.1",
            "podIP": "10.255.0.1",
            "startTime": now,
            "containerStatuses": statuses,
        }
        await self.client.patch(
            Pod, pod.metadata.name, {"status": status}, pod.metadata.namespace, subresource="status"
        )

    async def _finish_delete(self, pod: Pod) -> None:
        from kray.client.errors import NotFound

        with contextlib.suppress(NotFound):
            pre = {"uid": pod.metadata.uid} if pod.metadata.uid else None
            await self.client.delete(
                Pod, pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0, preconditions=pre
            )

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.register()
        if self.run_pods and self.pods_lw is not None:
            self._pods = Informer(self.pods_lw, REGISTRY.get("v1", "Pod"))
            self._pods.add_handler(FuncHandler(self._pod_event, lambda _o, n: self._pod_event(n), self._pod_gone))
            self._pods.start()
        if self.heartbeat_interval > 0:
            task = asyncio.ensure_future(self._heartbeat_loop())
            self._tasks.add(task)

    async def stop(self) -> None:
        if self._pods is not None:
            await self._pods.stop()
            self._pods = None
        tasks, self._tasks = list(self._tasks), set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def drain(self) -> None:
        """Wait for pod status writes in flight (tests)."""
        while [t for t in self._tasks if not t.done() and t.get_coro().__qualname__.endswith("guarded")]:  # type: ignore[union-attr]
            await asyncio.sleep(0.01)

    async def unregister(self) -> None:
        """Delete the Nodes and Leases (tests, scale-down)."""
        from kray.client.errors import NotFound

        async def one(name: str) -> None:
            with contextlib.suppress(NotFound):
                await self.client.delete(Node, name)
            with contextlib.suppress(NotFound):
                await self.client.delete(Lease, name, LEASE_NAMESPACE)

        await _bounded((one(n) for n in self.names), self.concurrency)
