"""ResourceQuota end to end on etcd and a real API server over HTTP: the official ``kubernetes``
client creates a quota and reads its status (the controller's), admission refuses what would
exceed it with Kubernetes' 403, a deletion is released by the controller, racing creates cannot
overcommit, a missing cpu request is named, and object counts limit TrainingJobs."""

# mypy: disable-error-code="union-attr"

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from controllers_it import running, wait_for

from kray.actors.controllers import resourcequota
from kray.client import AsyncClient, Forbidden
from kray.config import KrayConfig
from kray.crds import Namespace, ObjectMeta, Pod
from kray.crds.core.quota import ResourceQuota
from kray.crds.training import TrainingJob

pytestmark = [pytest.mark.etcd]


@pytest.fixture
async def client(config: KrayConfig) -> AsyncIterator[AsyncClient]:
    async with running(config, resourcequota.setup, resourcequota={"settle_seconds": 0.5}) as c:
        yield c


async def namespace(client: AsyncClient) -> str:
    ns = f"quota-{uuid.uuid4().hex[:8]}"
    await client.create(Namespace(metadata=ObjectMeta(name=ns)))
    return ns


def gpu_pod(ns: str, name: str, gpus: int, **requests: str) -> Pod:
    resources: dict[str, Any] = {"limits": {"nvidia.com/gpu": gpus}, "requests": requests}
    c = {"name": "main", "image": "x", "resources": resources}
    return Pod.model_validate({"metadata": {"name": name, "namespace": ns}, "spec": {"containers": [c]}})


async def make_quota(client: AsyncClient, ns: str, hard: dict[str, str], name: str = "team-a") -> None:
    await client.create(
        ResourceQuota.model_validate({"metadata": {"name": name, "namespace": ns}, "spec": {"hard": hard}})
    )
    await wait_until_used(client, ns, {k: "0" for k in hard}, name)


async def used_of(client: AsyncClient, ns: str, name: str = "team-a") -> dict[str, str]:
    q = await client.get(ResourceQuota, name, ns)
    return {k: str(v) for k, v in ((q.status.used if q.status else None) or {}).items()}


async def wait_until_used(client: AsyncClient, ns: str, want: dict[str, str], name: str = "team-a") -> None:
    async def done() -> bool:
        return await used_of(client, ns, name) == want

    await wait_for(done, f"status.used == {want}", timeout=10)


async def test_gpu_quota_admits_refuses_and_releases(client: AsyncClient, config: KrayConfig) -> None:
    ns = await namespace(client)
    status = await asyncio.to_thread(official_create_quota, config, ns)
    assert status == ({"requests.nvidia.com/gpu": "8"}, {"requests.nvidia.com/gpu": "0"})

    await client.create(gpu_pod(ns, "p1", 4))
    await client.create(gpu_pod(ns, "p2", 4))
    with pytest.raises(Forbidden) as refused:
        await client.create(gpu_pod(ns, "p3", 1))
    assert refused.value.status == 403
    assert refused.value.message == (
        'pods "p3" is forbidden: exceeded quota: team-a, requested: requests.nvidia.com/gpu=1, '
        "used: requests.nvidia.com/gpu=8, limited: requests.nvidia.com/gpu=8"
    )
    assert await used_of(client, ns) == {"requests.nvidia.com/gpu": "8"}

    await client.delete(Pod, "p1", ns)  # unscheduled: gone at once; the controller releases it
    await wait_until_used(client, ns, {"requests.nvidia.com/gpu": "4"})
    await client.create(gpu_pod(ns, "p4", 4))
    assert await used_of(client, ns) == {"requests.nvidia.com/gpu": "8"}
    await client.delete(Namespace, ns)


async def test_concurrent_creates_cannot_overcommit(client: AsyncClient) -> None:
    ns = await namespace(client)
    await make_quota(client, ns, {"requests.nvidia.com/gpu": "4"})

    async def create(i: int) -> bool:
        try:
            await client.create(gpu_pod(ns, f"racer-{i}", 2))
        except Forbidden as exc:
            assert "exceeded quota: team-a, requested: requests.nvidia.com/gpu=2" in exc.message
            return False
        return True

    results = await asyncio.gather(*(create(i) for i in range(6)))
    assert sum(results) == 2
    assert len((await client.list(Pod, ns)).items) == 2
    assert await used_of(client, ns) == {"requests.nvidia.com/gpu": "4"}
    await asyncio.sleep(0.8)  # past the controller's settle time: its recount agrees
    assert await used_of(client, ns) == {"requests.nvidia.com/gpu": "4"}
    await client.delete(Namespace, ns)


async def test_cpu_quota_needs_cpu_requests_and_counts_training_jobs(client: AsyncClient) -> None:
    ns = await namespace(client)
    await make_quota(client, ns, {"requests.cpu": "4", "count/trainingjobs.kray.io": "1"})
    with pytest.raises(Forbidden) as refused:
        await client.create(gpu_pod(ns, "no-cpu", 1))
    assert (
        refused.value.message == 'pods "no-cpu" is forbidden: failed quota: team-a: must specify requests.cpu for: main'
    )
    await client.create(gpu_pod(ns, "with-cpu", 1, cpu="3"))
    with pytest.raises(Forbidden) as too_much:
        await client.create(gpu_pod(ns, "more-cpu", 1, cpu="2"))
    assert "requested: requests.cpu=2, used: requests.cpu=3, limited: requests.cpu=4" in too_much.value.message

    await client.create(training_job(ns, "first"))
    with pytest.raises(Forbidden) as second:
        await client.create(training_job(ns, "second"))
    assert second.value.message == (
        'trainingjobs.kray.io "second" is forbidden: exceeded quota: team-a, requested: '
        "count/trainingjobs.kray.io=1, used: count/trainingjobs.kray.io=1, limited: count/trainingjobs.kray.io=1"
    )
    await client.delete(TrainingJob, "first", ns)
    await wait_until_used(client, ns, {"requests.cpu": "3", "count/trainingjobs.kray.io": "0"})
    await client.create(training_job(ns, "second"))
    await client.delete(Namespace, ns)


def training_job(ns: str, name: str) -> TrainingJob:
    container = {"name": "pytorch", "image": "x", "command": ["python3", "train.py"]}
    replica = {"replicas": 1, "template": {"spec": {"containers": [container]}}}
    spec = {"replicaSpecs": {"Master": replica}}
    return TrainingJob.model_validate({"metadata": {"name": name, "namespace": ns}, "spec": spec})


def official_create_quota(config: KrayConfig, ns: str) -> tuple[dict[str, str], dict[str, str]]:
    """The official client's create_namespaced_resource_quota, then the status it reads back once
    the controller has written it: kray's wire format is Kubernetes'."""
    k8s = pytest.importorskip("kubernetes.client")

    configuration = k8s.Configuration(host=config.server, api_key={"authorization": f"Bearer {config.token}"})
    with k8s.ApiClient(configuration) as api_client:
        v1 = k8s.CoreV1Api(api_client)
        body = k8s.V1ResourceQuota(
            metadata=k8s.V1ObjectMeta(name="team-a"),
            spec=k8s.V1ResourceQuotaSpec(hard={"requests.nvidia.com/gpu": "8"}),
        )
        created = v1.create_namespaced_resource_quota(ns, body)
        assert created.spec.hard == {"requests.nvidia.com/gpu": "8"}
        deadline = time.monotonic() + 10
        while True:
            quota = v1.read_namespaced_resource_quota_status("team-a", ns)
            if quota.status is not None and quota.status.hard:
                return dict(quota.status.hard), dict(quota.status.used or {})
            assert time.monotonic() < deadline, "the controller never wrote the quota's status"
            time.sleep(0.05)
