"""The node agent with fake Ray membership, deployer and autoscaler, against a real in-memory API
server and the real node IPAM controller: join -> Node + podCIDR -> kubelet/proxy/GPU plugin;
leave -> actors removed, Node deleted after the grace period; unschedulable Pods -> bundles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx
import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.controllers import nodeipam
from kray.actors.framework import FakeClock, Manager, StoreListWatcher
from kray.actors.nodeagent import NodeAgent, RayNode, node_labels, node_name_for, pod_bundle
from kray.actors.nodeagent.core import RAY_NODE_ID_LABEL
from kray.actors.nodeagent.fakes import FakeAutoscaler, FakeDeployer, FakeMembership
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient
from kray.client.errors import NotFound
from kray.crds import Namespace, Node, ObjectMeta, Pod
from kray.crds.registry import REGISTRY

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
ID_A = "a1b2c3d4" + "0" * 48
ID_B = "b1b2c3d4" + "0" * 48


@dataclass
class Env:
    client: AsyncClient
    clock: FakeClock
    manager: Manager
    members: FakeMembership
    deployer: FakeDeployer
    autoscaler: FakeAutoscaler
    agent: NodeAgent

    async def step(self, rounds: int = 3) -> None:
        """Agent pass, then IPAM, then agent again (so a new Node gets its podCIDR and actors)."""
        for _ in range(rounds):
            await self.agent.step()
            await asyncio.sleep(0.01)  # the informers' watch delivers on later loop turns
            await self.manager.step()
            await asyncio.sleep(0.01)

    async def node_names(self) -> set[str]:
        return {n.name for n in (await self.client.list(Node)).items}


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    kv = MemoryKV()
    store = ObjectStore(kv, REGISTRY)
    api = ApiServer(store, REGISTRY, token="t", clock=lambda: NOW)
    await api.start()
    clock = FakeClock(NOW)
    transport = httpx.ASGITransport(app=api.app)
    async with AsyncClient(server="http://kray.test", token="t", transport=transport) as client:
        manager = Manager(StoreListWatcher(store), client, clock=clock)
        nodeipam.setup(manager, cluster_cidr="10.244.0.0/16")
        assert await manager.start_informers(2)
        members, deployer, autoscaler = FakeMembership(), FakeDeployer(), FakeAutoscaler()
        agent = NodeAgent(client, members, deployer, autoscaler, clock, grace_period=300, autoscale_interval=10)
        yield Env(client, clock, manager, members, deployer, autoscaler, agent)
        await manager.stop()
    await kv.close()


def test_names_and_labels() -> None:
    plain = RayNode(ID_A, True, hostname="Worker_1.example.com", resources={"CPU": 8})
    assert node_name_for(plain) == "worker-1.example.com-a1b2c3d4"
    assert node_name_for(RayNode(ID_A, True, hostname="h", labels={"kray.io/node-name": "gpu-a"})) == "gpu-a"
    assert node_name_for(RayNode(ID_A, True, hostname="h", resources={"kray.io/node-name:gpu-b": 1})) == "gpu-b"
    assert node_name_for(RayNode(ID_A, True, hostname="h", labels={"kray.io/node-name": "Bad Name!"})) == "h-a1b2c3d4"
    rich = RayNode(
        ID_A,
        True,
        hostname="h",
        resources={"CPU": 8, "GPU": 2, "memory": 1e9, "node:10.0.0.1": 1, "accelerator_type:H100": 1, "ssd": 2},
        labels={"ray.io/node-id": ID_A, "zone": "us-east-1a", "bad key!": "x"},
    )
    assert node_labels(rich) == {
        RAY_NODE_ID_LABEL: ID_A,
        "zone": "us-east-1a",
        "kray.io/accelerator-type": "H100",
        "resources.kray.io/ssd": "2",
        "kray.io/gpu-count": "2",
    }


def test_pod_bundle_shapes() -> None:
    def pod(requests: dict[str, str] | None) -> Pod:
        c = {"name": "c", "image": "i", "resources": {"requests": requests} if requests else {}}
        return Pod.model_validate({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [c]}})

    assert pod_bundle(pod({"cpu": "1500m", "memory": "2Gi", "nvidia.com/gpu": "1"})) == {
        "CPU": 1.5,
        "memory": float(2 * 1024**3),
        "GPU": 1.0,
    }
    assert pod_bundle(pod(None)) == {"CPU": 0.1, "memory": float(200 * 1024 * 1024)}
    assert pod_bundle(pod({"cpu": "2", "memory": "1Gi"}), memory=False) == {"CPU": 2.0}


async def test_join_deploys_after_podcidr_and_stays_stable(env: Env) -> None:
    member = env.members.join(RayNode(ID_A, True, hostname="host", address="10.0.0.1", resources={"CPU": 4}))
    await env.agent.step()
    name = node_name_for(member)
    node = await env.client.get(Node, name)
    assert node.metadata.labels and node.metadata.labels[RAY_NODE_ID_LABEL] == ID_A
    assert env.deployer.kinds(name) == set()  # no podCIDR yet: nothing deployed
    await env.step()
    node = await env.client.get(Node, name)
    assert node.spec.pod_cidr == "10.244.0.0/24"
    assert env.deployer.kinds(name) == {"kubelet", "proxy", "dns"}
    plan = env.deployer.actors[f"kubelet-{name}"]
    assert (plan.pod_cidr, plan.node_ip, plan.cpu, plan.node_id) == ("10.244.0.0/24", "10.0.0.1", "4", ID_A)
    assert plan.dns_ip == "10.244.0.1"  # the node's DNS server: its pod bridge's gateway
    assert (plan.net_prefix, plan.root) == (None, None)  # the deployer's defaults
    calls = len(env.deployer.calls)
    await env.step()
    assert len(env.deployer.calls) == calls  # steady state: no redeploys
    # A GPU node gets the device plugin too, and its own podCIDR.
    gpu = env.members.join(RayNode(ID_B, True, hostname="host", address="10.0.0.2", resources={"CPU": 8, "GPU": 2}))
    await env.step()
    assert env.deployer.kinds(node_name_for(gpu)) == {"kubelet", "proxy", "dns", "gpu"}
    assert (await env.client.get(Node, node_name_for(gpu))).spec.pod_cidr == "10.244.1.0/24"
    # A restarted agent (no memory) rebuilds from Ray and the API: same names, idempotent deploys.
    again = NodeAgent(env.client, env.members, env.deployer, env.autoscaler, env.clock)
    await again.step()
    assert set(again.deployed) == {name, node_name_for(gpu)}
    assert await env.node_names() == {name, node_name_for(gpu)}


async def test_leave_removes_actors_then_deletes_node_after_grace(env: Env) -> None:
    a = env.members.join(RayNode(ID_A, True, hostname="host", address="10.0.0.1"))
    b = env.members.join(RayNode(ID_B, True, hostname="host", address="10.0.0.2"))
    hand_made = Node(metadata=ObjectMeta(name="hollow-1"))  # not the agent's: never deleted
    await env.client.create(hand_made)
    await env.step()
    name_a, name_b = node_name_for(a), node_name_for(b)
    assert env.deployer.kinds(name_a) == {"kubelet", "proxy", "dns"}
    env.members.leave(ID_A)
    await env.agent.step()
    assert env.deployer.kinds(name_a) == set() and ("remove", name_a) in env.deployer.calls
    assert name_a in await env.node_names()  # NotReady (lifecycle controller), not gone yet
    env.clock.advance(299)
    await env.agent.step()
    assert name_a in await env.node_names()
    env.clock.advance(2)
    await env.agent.step()
    assert await env.node_names() == {name_b, "hollow-1"}
    env.clock.advance(10_000)
    await env.agent.step()
    assert await env.node_names() == {name_b, "hollow-1"}


async def test_named_node_coming_back_within_grace_is_kept_and_redeployed(env: Env) -> None:
    labels = {"kray.io/node-name": "trainer-0"}
    env.members.join(RayNode(ID_A, True, hostname="h", address="10.0.0.1", labels=labels))
    await env.step()
    cidr = (await env.client.get(Node, "trainer-0")).spec.pod_cidr
    env.members.leave(ID_A)
    await env.agent.step()
    env.clock.advance(200)
    # The machine rejoins Ray (a new node id) under the same name before the grace runs out.
    env.members.join(RayNode(ID_B, True, hostname="h", address="10.0.0.9", labels=labels))
    await env.step()
    node = await env.client.get(Node, "trainer-0")
    assert node.spec.pod_cidr == cidr and (node.metadata.labels or {})[RAY_NODE_ID_LABEL] == ID_B
    assert env.deployer.actors["kubelet-trainer-0"].node_id == ID_B
    env.clock.advance(1000)
    await env.agent.step()
    await env.client.get(Node, "trainer-0")  # still there


async def test_bound_node_keeps_its_name_and_settings_and_excluded_nodes_are_left_alone(env: Env) -> None:
    """`kray up` registers its own node: a Node bound to the head's Ray node id, with settings
    as annotations. The agent uses that name and those settings; Ray labels give the others'."""
    await env.client.create(
        Node(
            metadata=ObjectMeta(
                name="my-laptop",
                labels={RAY_NODE_ID_LABEL: ID_A},
                annotations={"kray.io/net-prefix": "kx", "kray.io/node-root": "/srv/kray"},
            )
        )
    )
    env.members.join(RayNode(ID_A, True, hostname="h", address="10.0.0.1", labels={"kray.io/net-prefix": "no"}))
    worker = RayNode(ID_B, True, hostname="h", address="10.0.0.2", labels={"kray.io/net-prefix": "kw"})
    env.members.join(worker)
    await env.step()
    assert await env.node_names() == {"my-laptop", node_name_for(worker)}
    head = env.deployer.actors["kubelet-my-laptop"]
    assert (head.net_prefix, head.root, head.node_id) == ("kx", "/srv/kray", ID_A)
    plan = env.deployer.actors[f"kubelet-{node_name_for(worker)}"]
    assert (plan.net_prefix, plan.root) == ("kw", None)
    assert "kray.io/net-prefix" not in ((await env.client.get(Node, node_name_for(worker))).metadata.labels or {})
    # A control-plane-only head (`kray up --no-kubelet`): no Node, no actors.
    members = FakeMembership()
    members.join(RayNode(ID_A, True, hostname="cp", address="10.0.0.1"))
    deployer = FakeDeployer()
    agent = NodeAgent(env.client, members, deployer, None, env.clock, exclude_node_ids={ID_A}, dns=False)
    await agent.step()
    assert deployer.calls == [] and agent.deployed == {}
    # Ray without root (`kray up` as a user): Nodes are registered, no node actors deployed.
    members.join(RayNode(ID_B, True, hostname="w", address="10.0.0.2"))
    agent = NodeAgent(env.client, members, deployer, None, env.clock, exclude_node_ids={ID_A}, node_actors=False)
    await env.step()
    await agent.step()
    assert deployer.calls == [] and agent.deployed == {}


async def _pod(
    client: AsyncClient, name: str, cpu: str, node: str | None = None, gpu: str | None = None, ns: str = "default"
) -> Pod:
    requests = {"cpu": cpu, "memory": "1Gi", **({"nvidia.com/gpu": gpu} if gpu else {})}
    spec = {"containers": [{"name": "c", "image": "i", "resources": {"requests": requests}}], "nodeName": node}
    await client.create(Pod.model_validate({"metadata": {"name": name, "namespace": ns}, "spec": spec}))
    if node is None:
        body = {
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
            }
        }
        await client.patch(Pod, name, body, ns, subresource="status")
    return await client.get(Pod, name, ns)


async def test_unschedulable_pods_become_bundles_rate_limited_and_cleared(env: Env) -> None:
    a = env.members.join(RayNode(ID_A, True, hostname="host", address="10.0.0.1", resources={"CPU": 2}))
    await env.step()
    assert env.autoscaler.requests == [[]]  # the first pass clears whatever an old agent left
    await _pod(env.client, "running", "2", node=node_name_for(a))
    await env.agent.step()
    assert env.autoscaler.requests == [[]]  # nothing pending: nothing asked
    await env.client.create(Namespace(metadata=ObjectMeta(name="team")))
    await _pod(env.client, "big", "4", gpu="1", ns="team")  # pending pods of every namespace count
    await env.agent.step()
    assert len(env.autoscaler.requests) == 1  # rate-limited: the clear went out < 10 s ago
    env.clock.advance(10)
    await env.agent.step()
    gib = float(1024**3)
    assert env.autoscaler.standing == [{"CPU": 2.0, "memory": gib}, {"CPU": 4.0, "memory": gib, "GPU": 1.0}]
    env.clock.advance(10)
    await env.agent.step()
    assert len(env.autoscaler.requests) == 2  # unchanged: not sent again
    await env.client.delete(Pod, "big", "team")
    with pytest.raises(NotFound):
        await env.client.get(Pod, "big", "team")
    await env.agent.step()
    assert env.autoscaler.standing == []  # cleared (the last send was 10 s ago)
