"""The binding subresource's optimistic transaction on MemoryKV: fit, no-fit, races, release."""

from __future__ import annotations

import asyncio
import json

import pytest

from kray.actors.apiserver.binding import ALLOCATIONS_PREFIX, allocation_key, read_allocation
from kray.client.errors import Conflict, NotFound
from kray.crds import Node, Pod

from .test_shard_helpers import Cluster, binding, memory_cluster, node_body, pod_body


@pytest.fixture
async def cluster():  # type: ignore[no-untyped-def]
    async with memory_cluster() as c:
        yield c


async def _post_binding(c: Cluster, name: str, node: str, ns: str = "default") -> dict:
    from kray.client.ops import Request

    return await c.client.request(
        Request("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", body=binding(name, node))
    )


async def _create(c: Cluster, body: dict) -> None:
    await c.client.create_raw(body, Node if body["kind"] == "Node" else Pod)


async def test_bind_sets_node_condition_and_allocation(cluster: Cluster) -> None:
    await _create(cluster, node_body("n1", gpus=8))
    await _create(cluster, pod_body("p1", cpu="1500m", gpus=2))
    status = await _post_binding(cluster, "p1", "n1")
    assert status["status"] == "Success" and status["code"] == 201
    pod = await cluster.client.get(Pod, "p1", "default")
    assert pod.spec.node_name == "n1"
    cond = pod.status.condition("PodScheduled") if pod.status else None
    assert cond is not None and cond.status == "True"
    alloc = await read_allocation(cluster.store, "n1")
    assert alloc.requested == {"cpu": 1500, "memory": 1024**3 * 1000, "nvidia.com/gpu": 2000}
    assert [e["pod"] for e in alloc.pods.values()] == ["default/p1"]
    raw = json.loads((await cluster.kv.get(allocation_key("n1"))).value)  # type: ignore[union-attr]
    assert raw["node"] == "n1" and raw["requested"]["cpu"] == 1500


async def test_no_fit_is_a_conflict_with_the_reason(cluster: Cluster) -> None:
    await _create(cluster, node_body("n1", gpus=1))
    await _create(cluster, pod_body("big", gpus=2))
    with pytest.raises(Conflict) as err:
        await _post_binding(cluster, "big", "n1")
    assert "Insufficient nvidia.com/gpu (requested 2, free 1)" in str(err.value)
    pod = await cluster.client.get(Pod, "big", "default")
    assert pod.spec.node_name is None
    assert (await read_allocation(cluster.store, "n1")).pods == {}


async def test_pods_limit_and_already_bound_and_missing(cluster: Cluster) -> None:
    await _create(cluster, node_body("n1", pods="1"))
    await _create(cluster, pod_body("a"))
    await _create(cluster, pod_body("b"))
    await _post_binding(cluster, "a", "n1")
    with pytest.raises(Conflict, match="already assigned"):
        await _post_binding(cluster, "a", "n1")
    with pytest.raises(Conflict, match="Too many pods"):
        await _post_binding(cluster, "b", "n1")
    with pytest.raises(NotFound):
        await _post_binding(cluster, "b", "nope")
    with pytest.raises(NotFound):
        await _post_binding(cluster, "ghost", "n1")


async def test_concurrent_binds_never_overcommit(cluster: Cluster) -> None:
    await _create(cluster, node_body("n1", cpu="4"))
    await _create(cluster, node_body("n2", cpu="3"))
    for i in range(40):
        await _create(cluster, pod_body(f"p{i}", cpu="1", memory="10Mi"))

    async def try_bind(i: int) -> bool:
        try:
            await _post_binding(cluster, f"p{i}", "n1" if i % 2 else "n2")
            return True
        except Conflict:
            return False

    results = await asyncio.gather(*(try_bind(i) for i in range(40)))
    assert sum(results) == 7
    assert len((await read_allocation(cluster.store, "n1")).pods) == 4
    assert len((await read_allocation(cluster.store, "n2")).pods) == 3
    pods = (await cluster.client.list(Pod, "default")).items
    assert sum(1 for p in pods if p.spec.node_name) == 7


async def _wait_for(cond, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_delete_and_termination_release(cluster: Cluster) -> None:
    await _create(cluster, node_body("n1", cpu="2"))
    for name in ("a", "b", "c"):
        await _create(cluster, pod_body(name))
    await _post_binding(cluster, "a", "n1")
    await _post_binding(cluster, "b", "n1")
    with pytest.raises(Conflict):
        await _post_binding(cluster, "c", "n1")
    await cluster.client.delete(Pod, "a", "default", grace_period_seconds=0)

    async def released() -> bool:
        return len((await read_allocation(cluster.store, "n1")).pods) == 1

    await _wait_for(released)
    await _post_binding(cluster, "c", "n1")
    # A pod that ends (Succeeded) gives its share back too.
    await cluster.client.patch(Pod, "b", {"status": {"phase": "Succeeded"}}, "default", subresource="status")
    await _wait_for(released)
    assert [e["pod"] for e in (await read_allocation(cluster.store, "n1")).pods.values()] == ["default/c"]


async def test_preset_node_name_counts_and_resync_repairs_drift(cluster: Cluster) -> None:
    await _create(cluster, node_body("n1", cpu="2"))
    await _create(cluster, pod_body("x"))
    await _post_binding(cluster, "x", "n1")  # starts the releaser
    await _create(cluster, pod_body("preset", node_name="n1"))

    async def counted() -> bool:
        return len((await read_allocation(cluster.store, "n1")).pods) == 2

    await _wait_for(counted)
    # Drift (a record written by hand, a missed event): the resync recomputes from the pods.
    await cluster.kv.put(allocation_key("n9"), b'{"node":"n9","pods":{"u":{"pod":"d/g","requests":{"cpu":1}}}}')
    await cluster.kv.put(allocation_key("n1"), b'{"node":"n1","pods":{}}')
    await cluster.api.bindings.releaser.resync()
    assert len((await read_allocation(cluster.store, "n1")).pods) == 2
    assert (await read_allocation(cluster.store, "n9")).pods == {}
    items, _ = await cluster.kv.range(ALLOCATIONS_PREFIX)
    assert {i.key for i in items} == {allocation_key("n1"), allocation_key("n9")}
