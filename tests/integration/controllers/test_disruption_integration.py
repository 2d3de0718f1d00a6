"""PodDisruptionBudgets end to end on etcd and a real API server over HTTP: the disruption
controller counts the pods (status through the status subresource, as a kubelet would write it),
the eviction subresource consumes the budget in one transaction with the deletion, refuses with
Kubernetes' 429 once it is spent, and the official ``kubernetes`` client's eviction call works."""

# mypy: disable-error-code="union-attr"

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from controllers_it import running, wait_for

from kray.actors.controllers import disruption
from kray.client import AsyncClient, NotFound, TooManyRequests
from kray.config import KrayConfig
from kray.crds import Namespace, ObjectMeta, Pod
from kray.crds.policy import PodDisruptionBudget, PodDisruptionBudgetStatus

pytestmark = [pytest.mark.etcd]

READY = [{"type": "Ready", "status": "True"}]


@pytest.fixture
async def client(config: KrayConfig) -> AsyncIterator[AsyncClient]:
    async with running(config, disruption.setup) as c:
        yield c


async def ready_pod(client: AsyncClient, ns: str, name: str, app: str = "zk") -> None:
    meta = {"name": name, "namespace": ns, "labels": {"app": app}}
    await client.create(Pod.model_validate({"metadata": meta, "spec": {"containers": [{"name": "c", "image": "x"}]}}))
    status = {"status": {"phase": "Running", "conditions": READY}}
    await client.patch(Pod, name, status, ns, subresource="status")


async def pdb_status(client: AsyncClient, ns: str) -> PodDisruptionBudgetStatus:
    return (await client.get(PodDisruptionBudget, "zk-pdb", ns)).status or PodDisruptionBudgetStatus()


async def test_budget_status_and_evictions(client: AsyncClient, config: KrayConfig) -> None:
    ns = f"pdb-{uuid.uuid4().hex[:8]}"
    await client.create(Namespace(metadata=ObjectMeta(name=ns)))
    for name in ("zk-0", "zk-1", "zk-2"):
        await ready_pod(client, ns, name)
    await ready_pod(client, ns, "loner", app="other")
    spec = {"minAvailable": 2, "selector": {"matchLabels": {"app": "zk"}}}
    await client.create(
        PodDisruptionBudget.model_validate({"metadata": {"name": "zk-pdb", "namespace": ns}, "spec": spec})
    )

    async def allowed(n: int, healthy: int) -> bool:
        s = await pdb_status(client, ns)
        return (s.disruptions_allowed, s.current_healthy, s.desired_healthy, s.expected_pods) == (n, healthy, 2, 3)

    await wait_for(lambda: allowed(1, 3), "disruptionsAllowed 1 over 3 ready pods")
    [cond] = (await pdb_status(client, ns)).conditions or []
    assert (cond.type, cond.status, cond.reason) == ("DisruptionAllowed", "True", "SufficientPods")

    # The official client's eviction call: its wire format is Kubernetes'.
    await asyncio.to_thread(official_evict, config, ns, "zk-0")
    with pytest.raises(NotFound):
        await client.get(Pod, "zk-0", ns)
    status = await pdb_status(client, ns)
    assert status.disruptions_allowed == 0 and set(status.disrupted_pods or {}) <= {"zk-0"}

    with pytest.raises(TooManyRequests) as refused:
        await client.evict("zk-1", ns)
    assert refused.value.message == "Cannot evict pod as it would violate the pod's disruption budget."
    [cause] = refused.value.causes
    assert cause["reason"] == "DisruptionBudget"
    assert cause["message"].startswith("The disruption budget zk-pdb needs 2 healthy pods and has ")
    await client.get(Pod, "zk-1", ns)  # still there

    # The controller sees the pod gone: 2 expected, 2 healthy, still nothing to spare.
    async def settled() -> bool:
        s = await pdb_status(client, ns)
        return (s.expected_pods, s.current_healthy, s.disruptions_allowed, s.disrupted_pods) == (2, 2, 0, None)

    await wait_for(settled, "the disruption noted, then pruned once the pod is gone")

    assert (await client.evict("loner", ns))["status"] == "Success"  # no budget selects it
    with pytest.raises(NotFound):
        await client.get(Pod, "loner", ns)
    with pytest.raises(NotFound):
        await client.evict("loner", ns)

    # A replacement turns ready: one disruption is allowed again.
    await ready_pod(client, ns, "zk-3")
    await wait_for(lambda: allowed(1, 3), "disruptionsAllowed back to 1")
    await client.delete(Namespace, ns)


def official_evict(config: KrayConfig, ns: str, name: str) -> None:
    k8s = pytest.importorskip("kubernetes.client")
    configuration = k8s.Configuration(host=config.server, api_key={"authorization": f"Bearer {config.token}"})
    with k8s.ApiClient(configuration) as api_client:
        body = k8s.V1Eviction(
            api_version="policy/v1",
            kind="Eviction",
            metadata=k8s.V1ObjectMeta(name=name, namespace=ns),
            delete_options=k8s.V1DeleteOptions(grace_period_seconds=0),
        )
        k8s.CoreV1Api(api_client).create_namespaced_pod_eviction(name, ns, body)
        budget = k8s.PolicyV1Api(api_client).read_namespaced_pod_disruption_budget("zk-pdb", ns)
        assert budget.spec.min_available == 2 and budget.status.disruptions_allowed == 0
