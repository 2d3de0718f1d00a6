"""The garbage collector over etcd + a real API server removes a Node's NodeDevices when the
Node goes (the kubelet's device loop makes the Node its owner), and leaves other Nodes' alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable

import pytest
from controllers_it import running, wait_for

from kray.actors.controllers import garbagecollector
from kray.client import AsyncClient, NotFound
from kray.config import KrayConfig
from kray.crds import Node, ObjectMeta
from kray.crds.devices import NodeDevice, NodeDevices, NodeDevicesSpec
from kray.crds.meta import OwnerReference

pytestmark = [pytest.mark.etcd]


@pytest.fixture
async def client(config: KrayConfig) -> AsyncIterator[AsyncClient]:
    async with running(config, garbagecollector.setup) as c:
        yield c


async def exists(client: AsyncClient, name: str) -> bool:
    try:
        await client.get(NodeDevices, name)
        return True
    except NotFound:
        return False


async def node_with_devices(client: AsyncClient, name: str) -> NodeDevices:
    node = await client.create(Node(metadata=ObjectMeta(name=name)))
    # What deviceplugins.nodesync writes: a cluster-scoped object named after its Node, owned by it.
    owner = OwnerReference(api_version="v1", kind="Node", name=name, uid=node.metadata.uid or "")
    spec = NodeDevicesSpec(node_name=name, devices=[NodeDevice(name=f"GPU-{name}-0", uuid=f"GPU-{name}-0")])
    return await client.create(NodeDevices(metadata=ObjectMeta(name=name, owner_references=[owner]), spec=spec))


async def test_node_deletion_collects_its_nodedevices_only(client: AsyncClient) -> None:
    gone, kept = f"nd-gone-{uuid.uuid4().hex[:6]}", f"nd-kept-{uuid.uuid4().hex[:6]}"
    await node_with_devices(client, gone)
    await node_with_devices(client, kept)
    try:
        await client.delete(Node, gone)
        await wait_for(lambda: _not(exists(client, gone)), f"NodeDevices {gone} to be collected")
        # The collector has handled the deletion; give it a moment to (wrongly) touch the other.
        await asyncio.sleep(1.0)
        other = await client.get(NodeDevices, kept)
        assert [r.name for r in other.metadata.owner_references or []] == [kept]
        assert other.metadata.deletion_timestamp is None
    finally:
        for name in (gone, kept):
            for kind in (NodeDevices, Node):
                try:
                    await client.delete(kind, name)
                except NotFound:
                    pass


async def _not(aw: Awaitable[bool]) -> bool:
    return not await aw
