"""The PodGroup controller over etcd and a real API server (HTTP list/watch): a gang is bound by
the scheduler's own gang binder (one transaction through the PodGroup binding subresource), runs
and finishes, and the group's status follows every step."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from controllers_it import running, wait_for

from kray.actors.controllers import podgroup
from kray.actors.scheduler.binder import ApiBinder
from kray.client import AsyncClient
from kray.config import KrayConfig
from kray.crds import Namespace, Node, ObjectMeta, Pod
from kray.crds.scheduling import POD_GROUP_LABEL, PodGroup, PodGroupStatus

pytestmark = [pytest.mark.etcd]


@pytest.fixture
async def client(config: KrayConfig) -> AsyncIterator[AsyncClient]:
    async with running(config, podgroup.setup) as c:
        yield c


async def test_a_gang_is_followed_from_pending_to_finished(client: AsyncClient) -> None:
    ns = f"pg-{uuid.uuid4().hex[:8]}"
    node_name = f"{ns}-node"
    await client.create(Namespace(metadata=ObjectMeta(name=ns)))
    await client.create(Node(metadata=ObjectMeta(name=node_name)))
    allocatable = {"cpu": "8", "memory": "16Gi", "pods": "110"}
    await client.patch(Node, node_name, {"status": {"allocatable": allocatable, "capacity": allocatable}}, None,
                       subresource="status")  # fmt: skip
    await client.create(
        PodGroup.model_validate({"metadata": {"name": "gang", "namespace": ns}, "spec": {"minMember": 2}})
    )

    async def status() -> PodGroupStatus:
        return (await client.get(PodGroup, "gang", ns)).status or PodGroupStatus()

    def phase_is(phase: str, **counts: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            s = await status()
            return s.phase == phase and all(getattr(s, k) == v for k, v in counts.items())

        return check

    await wait_for(phase_is("Pending"), "Pending with no members")
    pods = []
    for i in range(2):
        pod = Pod.model_validate(
            {
                "metadata": {"name": f"m{i}", "namespace": ns, "labels": {POD_GROUP_LABEL: "gang"}},
                "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1"}}}]},
            }
        )
        pods.append(await client.create(pod))
    await wait_for(phase_is("Scheduling", scheduled=0), "Scheduling once minMember members exist")
    assert (await status()).schedule_start_time is not None

    bound = await ApiBinder(client).bind_gang([(p, node_name, {}) for p in pods])
    assert bound.ok, bound
    await wait_for(phase_is("Scheduled", scheduled=2), "Scheduled once the gang is bound")

    for p in pods:
        await client.patch(Pod, p.name, {"status": {"phase": "Running"}}, ns, subresource="status")
    await wait_for(phase_is("Running", running=2), "Running")
    for p in pods:
        await client.patch(Pod, p.name, {"status": {"phase": "Succeeded"}}, ns, subresource="status")
    await wait_for(phase_is("Finished", succeeded=2, running=0), "Finished")

    await client.delete(Namespace, ns)
    await client.delete(Node, node_name)
