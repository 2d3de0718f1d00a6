"""GPU device ids through the real API server: the Binding's annotations land on the pod in the
bind transaction, a device can be bound only once, and a ShardCore places GPU pods by topology."""

from __future__ import annotations

import asyncio

import pytest

from kray.actors.apiserver.binding import read_allocation
from kray.actors.framework.ports import StoreListWatcher
from kray.actors.scheduler.binder import ApiBinder
from kray.actors.scheduler.shard import ShardCore
from kray.client.errors import Conflict, Invalid
from kray.client.ops import Request
from kray.crds import Node, Pod
from kray.crds.devices import NodeDevices
from kray.crds.scheduling import GPU_DEVICES_ANNOTATION

from .gpu_builders import gpu_ids, node_devices
from .test_shard_helpers import Cluster, binding, memory_cluster, node_body, pod_body


@pytest.fixture
async def cluster():  # type: ignore[no-untyped-def]
    async with memory_cluster() as c:
        yield c


async def _bind(c: Cluster, name: str, node: str, annotations: object) -> dict:
    body = binding(name, node)
    body["metadata"]["annotations"] = annotations
    return await c.client.request(Request("POST", f"/api/v1/namespaces/default/pods/{name}/binding", body=body))


async def test_binding_annotations_are_copied_and_devices_bind_once(cluster: Cluster) -> None:
    await cluster.client.create_raw(node_body("n1", gpus=8), Node)
    for name in ("a", "b"):
        await cluster.client.create_raw(pod_body(name, gpus=2), Pod)
    await _bind(cluster, "a", "n1", {GPU_DEVICES_ANNOTATION: "GPU-0,GPU-1", "team": "x"})
    a = await cluster.client.get(Pod, "a", "default")
    assert a.spec.node_name == "n1"
    assert a.metadata.annotations == {GPU_DEVICES_ANNOTATION: "GPU-0,GPU-1", "team": "x"}
    alloc = await read_allocation(cluster.store, "n1")
    assert [e.get("devices") for e in alloc.pods.values()] == [["GPU-0", "GPU-1"]]
    with pytest.raises(Conflict, match="devices already allocated: GPU-1"):
        await _bind(cluster, "b", "n1", {GPU_DEVICES_ANNOTATION: "GPU-1,GPU-2"})
    b = await cluster.client.get(Pod, "b", "default")
    assert b.spec.node_name is None and not b.metadata.annotations
    with pytest.raises(Invalid, match=r"metadata\.annotations"):
        await _bind(cluster, "b", "n1", {GPU_DEVICES_ANNOTATION: 3})
    await _bind(cluster, "b", "n1", {GPU_DEVICES_ANNOTATION: "GPU-2,GPU-3"})


async def test_gang_binding_carries_each_members_annotations(cluster: Cluster) -> None:
    await cluster.client.create_raw(node_body("n1", gpus=8), Node)
    for name in ("w0", "w1"):
        await cluster.client.create_raw(pod_body(name, gpus=4), Pod)
    pods = [await cluster.client.get(Pod, n, "default") for n in ("w0", "w1")]
    labelled = [
        p.model_copy(
            update={"metadata": p.metadata.model_copy(update={"labels": {"scheduling.kray.io/pod-group": "g"}})}
        )
        for p in pods
    ]
    status = await ApiBinder(cluster.client).bind_gang(
        [
            (labelled[0], "n1", {GPU_DEVICES_ANNOTATION: "G0,G1,G2,G3"}),
            (labelled[1], "n1", {GPU_DEVICES_ANNOTATION: "G3,G4,G5,G6"}),
        ]
    )
    assert not status.ok and "devices already allocated: G3" in status.message  # all or nothing
    for name in ("w0", "w1"):
        assert (await cluster.client.get(Pod, name, "default")).spec.node_name is None
    status = await ApiBinder(cluster.client).bind_gang(
        [
            (labelled[0], "n1", {GPU_DEVICES_ANNOTATION: "G0,G1,G2,G3"}),
            (labelled[1], "n1", {GPU_DEVICES_ANNOTATION: "G4,G5,G6,G7"}),
        ]
    )
    assert status.ok, status
    w1 = await cluster.client.get(Pod, "w1", "default")
    assert (w1.metadata.annotations or {})[GPU_DEVICES_ANNOTATION] == "G4,G5,G6,G7"


async def test_shard_places_on_an_island_and_a_restarted_shard_knows_the_held_devices(cluster: Cluster) -> None:
    await cluster.client.create_raw(node_body("n1", cpu="64", memory="512Gi", gpus=8), Node)
    body = node_devices("n1").model_dump(by_alias=True, exclude_none=True, mode="json")
    await cluster.client.create_raw({**body, "apiVersion": "kray.io/v1", "kind": "NodeDevices"}, NodeDevices)
    lw = StoreListWatcher(cluster.store)

    def shard() -> ShardCore:
        binder = ApiBinder(cluster.client)
        return ShardCore(0, 1, pods=lw, nodes=lw, pod_groups=lw, node_devices=lw, binder=binder, seed=0)

    async def placed(name: str, core: ShardCore) -> list[str]:
        await cluster.client.create_raw(pod_body(name, gpus=4), Pod)
        deadline = asyncio.get_running_loop().time() + 15.0  # generous: the machine may be loaded
        while asyncio.get_running_loop().time() < deadline:
            await core.run_until_idle()
            p = await cluster.client.get(Pod, name, "default")
            if p.spec.node_name:
                return (p.metadata.annotations or {})[GPU_DEVICES_ANNOTATION].split(",")
            await asyncio.sleep(0.02)
        raise AssertionError(f"{name} was not placed")

    first = shard()
    await first.start()
    try:
        assert await placed("a", first) == gpu_ids("n1")[:4]  # one whole island
    finally:
        await first.stop()
    second = shard()  # knows only what the store holds: the annotation on pod a
    await second.start()
    try:
        assert await placed("b", second) == gpu_ids("n1")[4:]
    finally:
        await second.stop()
