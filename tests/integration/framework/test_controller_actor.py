"""A sample controller as two Ray actor replicas with leader election, over etcd + a real API server:
it reconciles; killing the leader hands over to the other replica within the lease time."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import ray

from kray.actors.apiserver import ApiServer, ServerThread
from kray.actors.framework.hosting import deploy_controller
from kray.actors.framework.sample import CONFIGMAP, LABEL
from kray.actors.store import ObjectStore
from kray.client import Client, NotFound
from kray.config import KrayConfig
from kray.crds import REGISTRY, ConfigMap, Lease, Namespace, ObjectMeta

pytestmark = [pytest.mark.ray, pytest.mark.etcd]

TOKEN = "framework-it-token"
LEASE = 3.0  # seconds: short, so the takeover check stays quick


@pytest.fixture(scope="module")
def apiserver(etcd_endpoint: str) -> Iterator[ServerThread]:
    async def build() -> ApiServer:
        from kray.actors.store.etcd import EtcdKV

        return ApiServer(ObjectStore(EtcdKV(etcd_endpoint), REGISTRY), REGISTRY, token=TOKEN)

    thread = ServerThread(build)
    thread.start()
    yield thread
    thread.stop()


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def actor_dead(handle: Any) -> bool:
    try:
        ray.get(handle.status.remote(), timeout=5)
    except ray.exceptions.RayActorError:
        return True
    except ray.exceptions.GetTimeoutError:
        return False
    return False


def has_configmap(client: Client, ns: str) -> bool:
    try:
        client.get(ConfigMap, CONFIGMAP, ns)
        return True
    except NotFound:
        return False


def test_two_replicas_one_leader_and_takeover(ray_cluster: str, apiserver: ServerThread) -> None:
    config = KrayConfig(server=apiserver.url, token=TOKEN)
    client = Client(config)
    name = f"mirror-{uuid.uuid4().hex[:6]}"
    handles: list[Any] = deploy_controller(
        name,
        "kray.actors.framework.sample:build",
        config,
        replicas=2,
        leader_elect=True,
        lease_duration=LEASE,
        renew_deadline=2.0,
        retry_period=0.25,
    )
    try:
        assert all(ray.get([h.ready.remote() for h in handles], timeout=60))
        first = f"{name}-a"
        client.create(Namespace(metadata=ObjectMeta(name=first, labels={LABEL: "true"})))
        wait_for(lambda: has_configmap(client, first), 20, "the first reconcile")

        statuses = ray.get([h.status.remote() for h in handles], timeout=10)
        leaders = [i for i, s in enumerate(statuses) if s["leader"]]
        assert len(leaders) == 1, statuses
        leader, follower = handles[leaders[0]], handles[1 - leaders[0]]
        lease = client.get(Lease, f"kray-controller-{name}", "kube-system")
        assert lease.spec.holder_identity == statuses[leaders[0]]["identity"]

        ray.kill(leader, no_restart=True)
        # ray.kill returns at once; wait until the old leader is really gone, or it could still
        # reconcile the next namespace itself and hide a missing takeover.
        wait_for(lambda: actor_dead(leader), 20, "the old leader to die")
        second = f"{name}-b"
        client.create(Namespace(metadata=ObjectMeta(name=second, labels={LABEL: "true"})))
        took = wait_for(lambda: has_configmap(client, second), LEASE + 8, "the follower to take over")
        # Leading is checked by polling: on a loaded machine a 3 s lease can lapse and be
        # re-acquired between two status calls.
        wait_for(lambda: ray.get(follower.status.remote(), timeout=10)["leader"], 15, "the follower to lead")
        print(f"takeover reconciled after {took:.2f}s (lease {LEASE}s)")
    finally:
        for h in handles:
            ray.kill(h, no_restart=True)
        client.close()
