"""An in-memory cluster for the ReplicaSet/Deployment unit tests (no Ray, no etcd).

ApiServer over MemoryKV reached through ASGI for writes; informers watch the ObjectStore
directly (ASGI transport cannot stream a watch). Time is a FakeClock shared by the API server,
the controllers and the kubelet stand-in, so minReadySeconds and delays are deterministic.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import httpx

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.controllers.deployment import build_deployment_controller
from kray.actors.controllers.replicaset import build_replicaset_controller
from kray.actors.controllers.teststandin import KubeletStandIn, fake_nodes
from kray.actors.framework import FakeClock, Manager, StoreListWatcher
from kray.actors.framework.controller import Controller
from kray.actors.framework.ports import WatchEvent
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient
from kray.crds import REGISTRY, ObjectMeta, Pod
from kray.crds.apps import Deployment, ReplicaSet
from kray.crds.registry import KindInfo

TOKEN = "rsdeploy-token"
NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
NS = "default"


class GatedListWatcher(StoreListWatcher):
    """A store list-watcher whose watch of one kind can be held back: a lagging cache, on demand."""

    def __init__(self, store: ObjectStore, gated_kind: str = "Pod") -> None:
        super().__init__(store)
        self.gated_kind = gated_kind
        self.open = asyncio.Event()
        self.open.set()

    async def watch(
        self, info: KindInfo, namespace: str | None, resource_version: str
    ) -> AsyncIterator[list[WatchEvent]]:
        async for batch in super().watch(info, namespace, resource_version):
            if info.kind == self.gated_kind:
                await self.open.wait()
            yield batch


class Cluster:
    def __init__(self, *, ready_delay: float = 0.0, rs_only: bool = False, burst: int = 500) -> None:
        self.clock = FakeClock(NOW)
        self.kv = MemoryKV()
        self.store = ObjectStore(self.kv, REGISTRY)
        self.api = ApiServer(self.store, REGISTRY, token=TOKEN, clock=self.clock.now)
        self.client = AsyncClient(
            server="http://kray.test", token=TOKEN, transport=httpx.ASGITransport(app=self.api.app)
        )
        self.lw = GatedListWatcher(self.store)
        self.manager = Manager(self.lw, self.client, clock=self.clock)
        self.rs_controller: Controller = build_replicaset_controller(self.manager, burst_replicas=burst)
        self.deploy_controller: Controller | None = None if rs_only else build_deployment_controller(self.manager)
        self.kubelet = KubeletStandIn(
            StoreListWatcher(self.store), self.client, nodes=fake_nodes(3), ready_delay=ready_delay, clock=self.clock
        )

    async def start(self) -> Cluster:
        await self.api.start()
        assert await self.manager.start_informers(5)
        assert await self.kubelet.start(5)
        return self

    async def stop(self) -> None:
        await self.kubelet.stop()
        await self.manager.stop()
        await self.client.aclose()
        await self.kv.close()

    async def settle(self, turns: int = 5) -> None:
        """Let the watches deliver what was written."""
        for _ in range(turns):
            await asyncio.sleep(0.002)

    async def tick(self, seconds: float = 0.5, kubelet: bool = True) -> None:
        await self.settle()
        await self.manager.step()
        await self.settle()
        if kubelet:
            await self.kubelet.step()
        await self.clock.advance_and_settle(seconds)

    async def run_until(
        self,
        cond: Callable[[], Awaitable[bool]],
        ticks: int = 200,
        each: Callable[[], Awaitable[None]] | None = None,
        seconds: float = 0.5,
    ) -> int:
        for i in range(ticks):
            if each is not None:
                await each()
            if await cond():
                return i
            await self.tick(seconds)
        raise AssertionError("the cluster did not converge")

    # ---- reads (live, not cached) ----

    async def pods(self, active_only: bool = True) -> list[Pod]:
        pods = (await self.client.list(Pod, NS)).items
        return [p for p in pods if not active_only or p.metadata.deletion_timestamp is None]

    async def rs(self, name: str) -> ReplicaSet:
        return await self.client.get(ReplicaSet, name, NS)

    async def deploy(self, name: str) -> Deployment:
        return await self.client.get(Deployment, name, NS)


def template(labels: dict[str, str], image: str = "img:1") -> dict[str, Any]:
    return {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": image}]}}


def replicaset(name: str, replicas: int, labels: dict[str, str] | None = None, **spec: Any) -> ReplicaSet:
    labels = labels or {"app": name}
    return ReplicaSet.model_validate(
        {
            "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": template(labels), **spec},
        }
    )


def deployment(name: str, replicas: int, image: str = "img:1", **spec: Any) -> Deployment:
    labels = {"app": name}
    return Deployment.model_validate(
        {
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": template(labels, image),
                **spec,
            },
        }
    )


def bare_pod(name: str, labels: dict[str, str]) -> Pod:
    return Pod.model_validate(
        {"metadata": ObjectMeta(name=name, namespace=NS, labels=labels).to_dict(), "spec": template(labels)["spec"]}
    )
