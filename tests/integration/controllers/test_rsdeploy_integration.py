"""ReplicaSet + Deployment controllers as Ray actors over etcd and a real API server.

1. A 20-replica Deployment rolls to a new template and a pod watch never sees fewer than
   ``replicas - maxUnavailable`` ready pods (nor more than ``replicas + maxSurge`` active ones).
2. Fault test: the ReplicaSet controller actor is killed (and restarted by Ray) 20 times while
   a ReplicaSet scales 0 -> 200; a pod watch never sees more than 200, and it settles at exactly
   200. ``KRAY_FAULT_REPLICAS`` / ``KRAY_FAULT_KILLS`` shrink it for slow machines.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import ray

from kray.actors.controllers.podutil import is_ready
from kray.actors.controllers.teststandin import KubeletStandIn, fake_nodes
from kray.actors.framework import ClientListWatcher
from kray.actors.framework.hosting import deploy_controller
from kray.client import AsyncClient, Client
from kray.config import KrayConfig
from kray.crds import Namespace, ObjectMeta, Pod
from kray.crds.apps import Deployment, ReplicaSet

pytestmark = [pytest.mark.ray, pytest.mark.etcd]


@pytest.fixture
def namespace(config: KrayConfig) -> Iterator[str]:
    name = f"rsd-{uuid.uuid4().hex[:6]}"
    with Client(config) as client:
        client.create(Namespace(metadata=ObjectMeta(name=name)))
    yield name


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


class Background:
    """An asyncio loop on a thread, for the kubelet stand-in (the test body stays synchronous)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tasks: list[Any] = []

    def standin(self, config: KrayConfig, namespace: str, ready_delay: float) -> None:
        async def run() -> None:
            async with AsyncClient(config) as client:
                standin = KubeletStandIn(
                    ClientListWatcher(client), client, nodes=fake_nodes(4), ready_delay=ready_delay, namespace=namespace
                )
                await standin.run(interval=0.1)

        self.tasks.append(asyncio.run_coroutine_threadsafe(run(), self.loop))

    def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        time.sleep(0.2)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class PodObserver:
    """Watches a namespace's pods and records, after every event, active and ready counts."""

    def __init__(self, config: KrayConfig, namespace: str, owner_prefix: str = "") -> None:
        self.config, self.namespace = config, namespace
        self.pods: dict[str, Pod] = {}
        self.max_active = 0
        self.min_ready: int | None = None
        self.events = 0
        self._stop = threading.Event()
        with Client(config) as client:
            listed = client.list(Pod, namespace)
        self.pods = {p.name: p for p in listed.items}
        self._rv = listed.resource_version
        self._record()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _record(self) -> None:
        active = [p for p in self.pods.values() if p.metadata.deletion_timestamp is None]
        self.max_active = max(self.max_active, len(active))
        ready = sum(1 for p in active if is_ready(p))
        self.min_ready = ready if self.min_ready is None else min(self.min_ready, ready)

    @property
    def active(self) -> int:
        return sum(1 for p in self.pods.values() if p.metadata.deletion_timestamp is None)

    def _run(self) -> None:
        with Client(self.config) as client:
            while not self._stop.is_set():
                for ev in client.watch(Pod, self.namespace, resource_version=self._rv, timeout_seconds=2):
                    obj = ev.object
                    self._rv = ev.resource_version or self._rv
                    if ev.type == "DELETED":
                        self.pods.pop(obj.name, None)
                    elif ev.type in ("ADDED", "MODIFIED"):
                        self.pods[obj.name] = obj
                    else:
                        continue
                    self.events += 1
                    self._record()

    def reset_min(self) -> None:
        self.min_ready = None
        self._record()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)


def test_rolling_update_of_20_keeps_availability(ray_cluster: str, config: KrayConfig, namespace: str) -> None:
    tag = uuid.uuid4().hex[:6]
    handles: list[Any] = [
        *deploy_controller(f"rs-{tag}", "kray.actors.controllers.replicaset:build", config, leader_elect=False),
        *deploy_controller(f"deploy-{tag}", "kray.actors.controllers.deployment:build", config, leader_elect=False),
    ]
    bg = Background()
    client = Client(config)
    try:
        assert all(ray.get([h.ready.remote() for h in handles], timeout=60))
        bg.standin(config, namespace, ready_delay=0.3)
        replicas, surge, unavailable = 20, 5, 2
        labels = {"app": "web"}
        body = {
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "strategy": {"rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "v1"}]}},
            },
        }
        client.create(Deployment.model_validate(body))

        def rolled_out(image: str) -> bool:
            d = client.get(Deployment, "web", namespace)
            s = d.status
            pods = [p for p in client.list(Pod, namespace).items if p.metadata.deletion_timestamp is None]
            return bool(
                s
                and s.observed_generation == d.metadata.generation
                and (s.updated_replicas, s.available_replicas, s.replicas) == (replicas, replicas, replicas)
                and len(pods) == replicas
                and all(p.spec.containers[0].image == image for p in pods)
            )

        wait_for(lambda: rolled_out("v1"), 30, "the first rollout")
        observer = PodObserver(config, namespace)
        started = time.monotonic()
        client.patch(
            Deployment,
            "web",
            {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "v2"}]}}}},
            namespace,
        )
        wait_for(lambda: rolled_out("v2"), 40, "the rolling update")
        took = time.monotonic() - started
        observer.stop()
        print(f"rolled 20 pods in {took:.1f}s; min ready {observer.min_ready}, max active {observer.max_active}")
        assert observer.events > 40
        assert observer.min_ready is not None and observer.min_ready >= replicas - unavailable
        assert observer.max_active <= replicas + surge
    finally:
        bg.stop()
        for h in handles:
            ray.kill(h, no_restart=True)
        client.close()


def test_replicaset_controller_killed_20_times_during_scale_to_200(
    ray_cluster: str, config: KrayConfig, namespace: str
) -> None:
    target = int(os.environ.get("KRAY_FAULT_REPLICAS", "200"))
    kills = int(os.environ.get("KRAY_FAULT_KILLS", "20"))
    tag = uuid.uuid4().hex[:6]
    (handle,) = deploy_controller(
        f"rs-fault-{tag}", "kray.actors.controllers.replicaset:build", config, leader_elect=False
    )
    client = Client(config)
    rng = random.Random(1234)
    try:
        assert ray.get(handle.ready.remote(), timeout=60)
        labels = {"app": "fault"}
        rs = {
            "metadata": {"name": "fault", "namespace": namespace},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
            },
        }
        client.create(ReplicaSet.model_validate(rs))
        observer = PodObserver(config, namespace)
        started = time.monotonic()
        client.patch(ReplicaSet, "fault", {"spec": {"replicas": target}}, namespace)
        for _ in range(kills):
            time.sleep(rng.uniform(0.05, 1.0))
            try:
                ray.kill(handle, no_restart=False)  # Ray restarts it: a crash, not a removal
            except Exception as exc:  # killing one that is still restarting
                print(f"kill failed: {exc!r}")
        wait_for(lambda: observer.active >= target, 90, f"{target} pods")
        took = time.monotonic() - started
        time.sleep(3)  # at rest: nothing more may appear
        observer.stop()
        live = [p for p in client.list(Pod, namespace).items if p.metadata.deletion_timestamp is None]
        print(f"scaled to {target} through {kills} kills in {took:.1f}s; max observed {observer.max_active}")
        assert len(live) == target
        assert observer.max_active <= target
    finally:
        ray.kill(handle, no_restart=True)
        client.close()
