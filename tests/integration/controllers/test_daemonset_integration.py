"""The DaemonSet controller over etcd and a real API server (HTTP list/watch), with the real
scheduler core placing its pods: each lands on the node its required node affinity pins, nodes
labelled in and out gain and lose their daemon pod, and the status follows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone

import pytest
from controllers_it import running, wait_for

from kray.actors.controllers import daemonset
from kray.actors.controllers.daemonset_util import target_node_name
from kray.actors.framework import ClientListWatcher
from kray.actors.scheduler.binder import ApiBinder
from kray.actors.scheduler.reporter import ApiStatusReporter
from kray.actors.scheduler.shard import ShardCore
from kray.client import AsyncClient
from kray.client.errors import NotFound
from kray.config import KrayConfig
from kray.crds import Namespace, Node, ObjectMeta, Pod
from kray.crds.apps_daemonset import DaemonSet

pytestmark = [pytest.mark.etcd]


@pytest.fixture
async def client(config: KrayConfig) -> AsyncIterator[AsyncClient]:
    async with running(config, daemonset.setup) as c:
        lw = ClientListWatcher(c, timeout_seconds=30)
        shard = ShardCore(0, 1, pods=lw, nodes=lw, pod_groups=None, binder=ApiBinder(c), reporter=ApiStatusReporter(c))
        task = asyncio.ensure_future(shard.run())
        try:
            yield c
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def make_node(client: AsyncClient, name: str, labels: dict[str, str]) -> None:
    await client.create(Node(metadata=ObjectMeta(name=name, labels=labels)))
    allocatable = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    await client.patch(Node, name, {"status": {"allocatable": allocatable, "capacity": allocatable}}, None,
                       subresource="status")  # fmt: skip


async def test_daemon_pods_are_placed_by_the_scheduler_on_their_nodes(client: AsyncClient) -> None:
    ns = f"ds-{uuid.uuid4().hex[:8]}"
    nodes = [f"{ns}-n{i}" for i in range(3)]
    await client.create(Namespace(metadata=ObjectMeta(name=ns)))
    for name in nodes[:2]:
        await make_node(client, name, {"ds-it": ns})
    await make_node(client, nodes[2], {})
    ds = DaemonSet.model_validate(
        {
            "metadata": {"name": "agent", "namespace": ns},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {"nodeSelector": {"ds-it": ns}, "containers": [{"name": "c", "image": "agent:1"}]},
                },
            },
        }
    )
    await client.create(ds)

    async def live_pods() -> list[Pod]:
        return [p for p in (await client.list(Pod, ns)).items if p.metadata.deletion_timestamp is None]

    def placed_on(expected: set[str]) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            pods = await live_pods()
            # Bound by the scheduler, each to exactly the node its affinity pins, one per node.
            return (
                len(pods) == len(expected)
                and all(p.spec.node_name and p.spec.node_name == target_node_name(p) for p in pods)
                and {p.spec.node_name for p in pods} == expected
            )

        return check

    await wait_for(placed_on(set(nodes[:2])), "a pod bound on each labelled node", timeout=30)
    pods = await live_pods()
    for p in pods:
        ref = p.metadata.owner_references[0]  # type: ignore[index]
        assert (ref.kind, ref.name, ref.controller) == ("DaemonSet", "agent", True)

    # A kubelet's part: the pods run and become ready; the status counts them.
    now = datetime.now(timezone.utc).isoformat()
    for p in pods:
        status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}
        await client.patch(Pod, p.name, {"status": status}, ns, subresource="status")

    async def status_ok() -> bool:
        s = (await client.get(DaemonSet, "agent", ns)).status
        return s is not None and (s.desired_number_scheduled, s.current_number_scheduled, s.number_ready) == (2, 2, 2)

    await wait_for(status_ok, "status desired=current=ready=2")

    # Label the third node in: it gets a pod; label the first out: its pod is deleted.
    await client.patch(Node, nodes[2], {"metadata": {"labels": {"ds-it": ns}}}, None)
    await wait_for(placed_on(set(nodes)), "a pod on the newly labelled node", timeout=30)
    await client.patch(Node, nodes[0], {"metadata": {"labels": {"ds-it": None}}}, None)
    await wait_for(placed_on(set(nodes[1:])), "the pod on the unlabelled node deleted", timeout=30)

    await client.delete(Namespace, ns)
    for name in nodes:
        try:
            await client.delete(Node, name)
        except NotFound:
            pass
