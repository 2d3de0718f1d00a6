"""Hollow nodes on the in-memory cluster: registration, lease heartbeats, pods run and deleted."""

from __future__ import annotations

import asyncio

from kray.actors.framework.ports import StoreListWatcher
from kray.actors.hollow import LEASE_NAMESPACE, HollowNodes, NodeTemplate
from kray.client.ops import Request
from kray.crds import Node, Pod
from kray.crds.core.lease import Lease

from .test_shard_core import until
from .test_shard_helpers import binding, memory_cluster, pod_body


async def test_hollow_nodes_register_heartbeat_and_run_pods() -> None:
    async with memory_cluster() as c:
        template = NodeTemplate(
            cpu="8", gpus=4, labels={"pool": "gpu"}, taints=[{"key": "gpu", "value": "bad", "effect": "NoSchedule"}]
        )
        hollow = HollowNodes(c.client, StoreListWatcher(c.store), count=5, template=template, heartbeat_interval=0)
        await hollow.start()
        try:
            nodes = (await c.client.list(Node)).items
            assert sorted(n.metadata.name for n in nodes) == [f"hollow-{i}" for i in range(5)]
            n0 = nodes[0]
            assert n0.is_ready() and n0.metadata.labels["pool"] == "gpu"
            assert str(n0.status.allocatable["nvidia.com/gpu"]) == "4"  # type: ignore[index,union-attr]
            assert n0.spec.taints and n0.spec.taints[0].key == "gpu"
            before = (await c.client.get(Lease, "hollow-3", LEASE_NAMESPACE)).spec.renew_time
            await asyncio.sleep(0.01)
            assert await hollow.heartbeat_once() == 0
            after = (await c.client.get(Lease, "hollow-3", LEASE_NAMESPACE)).spec.renew_time
            assert before is not None and after is not None and after > before

            await c.client.create_raw(pod_body("w"), Pod)
            await c.client.request(
                Request("POST", "/api/v1/namespaces/default/pods/w/binding", body=binding("w", "hollow-2"))
            )

            async def running() -> bool:
                pod = await c.client.get(Pod, "w", "default")
                return pod.status is not None and pod.status.phase == "Running"

            await until(running)
            pod = await c.client.get(Pod, "w", "default")
            assert pod.status.condition("Ready").status == "True"  # type: ignore[union-attr]
            # A graceful delete of a bound pod waits for the kubelet, which finishes it.
            await c.client.delete(Pod, "w", "default")

            async def gone() -> bool:
                return not (await c.client.list(Pod, "default")).items

            await until(gone)
            await hollow.unregister()
            assert (await c.client.list(Node)).items == []
        finally:
            await hollow.stop()
