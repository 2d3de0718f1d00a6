"""The kubelet core with the real device manager and GPU plugin (FakeNvml, gRPC on unix
sockets), the in-memory API server and the in-memory CRI: Node capacity, the scheduler's
device choice (init containers' devices reused by app containers), and GPU health reaching
Pods as a condition (kept once the Pod finished) and Events."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.framework import FakeClock
from kray.actors.kubelet import Kubelet, KubeletConfig
from kray.actors.kubelet.fakes import FakeCri
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient
from kray.crds import Event, Node, Pod
from kray.crds.devices import NodeDevices
from kray.crds.registry import REGISTRY
from kray.deviceplugins.fake_nvml import FakeNvml
from kray.deviceplugins.hints import GPU_DEVICES_ANNOTATION
from kray.deviceplugins.manager import DeviceManager
from kray.deviceplugins.nodesync import CONDITION, DeviceStatusSync, attach
from kray.deviceplugins.nvidia import GpuPlugin, GpuPluginConfig
from kray.runtime.volumes import EmptyDirPlugin, VolumeManager

GPU = "nvidia.com/gpu"
NODE = "gpu-k1"


@dataclass
class Env:
    client: AsyncClient
    kubelet: Kubelet
    cri: FakeCri
    manager: DeviceManager
    plugin: GpuPlugin
    nvml: FakeNvml
    sync: DeviceStatusSync

    async def step(self) -> None:
        for _ in range(2):
            await self.kubelet.step()
            await self.sync.tick()
        await self.kubelet.drain()

    async def create(self, name: str, containers: list[dict], annotations: dict | None = None, **spec: Any) -> Pod:  # type: ignore[type-arg]
        meta = {"name": name, "namespace": "default", "annotations": annotations or {}}
        body = {"metadata": meta, "spec": {"nodeName": NODE, "containers": containers, **spec}}
        return await self.client.create(Pod.model_validate(body))

    def visible(self, uid: str, container: str = "main") -> list[str]:
        [c] = self.cri.by_name(uid, container)
        return {e.key: e.value for e in c.config.envs}["NVIDIA_VISIBLE_DEVICES"].split(",")


def gpu_ctr(n: int, name: str = "main", resource: str = GPU) -> dict:  # type: ignore[type-arg]
    return {"name": name, "image": "busybox", "command": ["sleep", "1000"], "resources": {"limits": {resource: str(n)}}}


@pytest.fixture
async def env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    resource = getattr(request, "param", GPU)  # the name the plugin advertises its GPUs as
    tmp = Path(tempfile.mkdtemp(prefix="kdk-"))  # unix socket paths must stay short
    kv = MemoryKV()
    api = ApiServer(ObjectStore(kv, REGISTRY), REGISTRY, token="t")
    await api.start()
    nvml = FakeNvml.dgx(4, island=2)
    manager = DeviceManager(tmp / "dp")
    manager.start()
    # Fake GPUs have no device nodes: env only (GpuPluginConfig.device_nodes).
    config = GpuPluginConfig(device_nodes=False, health_tick_s=0.05, backoff_s=0.2, resource_name=resource)
    plugin = GpuPlugin(nvml, tmp / "dp", config, watch_interval_s=0.1)
    assert plugin.start()
    clock = FakeClock(datetime(2024, 1, 1, tzinfo=timezone.utc))
    cri = FakeCri(now_ns=lambda: int(clock.now().timestamp() * 1e9), log_root=str(tmp / "logs"))
    volumes = VolumeManager(tmp / "pods", {"emptyDir": EmptyDirPlugin()})
    try:
        async with AsyncClient(server="http://kray.test", token="t", transport=httpx.ASGITransport(app=api.app)) as c:
            cfg = KubeletConfig(cpu="4", memory="8Gi", node_ip="192.168.0.10", hostname=NODE)
            kubelet = Kubelet(NODE, c, cri, volumes, manager, clock, cfg)
            sync = attach(kubelet, manager, lambda: plugin.core.inventory(NODE))
            assert manager.wait_until(lambda: manager.allocatable().get(resource) == 4)
            yield Env(c, kubelet, cri, manager, plugin, nvml, sync)
            await kubelet.drain()
    finally:
        plugin.stop()
        manager.stop()
        await kv.close()
        shutil.rmtree(tmp, ignore_errors=True)


async def events(env: Env, kind: str, name: str) -> list[Event]:
    items = (await env.client.list(Event, None, all_namespaces=True)).items
    return [e for e in items if e.involved_object.kind == kind and e.involved_object.name == name]


async def test_node_advertises_gpus_and_publishes_devices(env: Env) -> None:
    await env.step()
    node = await env.client.get(Node, NODE)
    assert str(node.status.capacity[GPU]) == "4" and str(node.status.allocatable[GPU]) == "4"
    assert node.metadata.labels["nvidia.com/gpu.count"] == "4"
    nd = await env.client.get(NodeDevices, NODE)
    assert {d.name for d in nd.spec.devices} == {g.uuid for g in env.nvml.gpus}
    assert [g.devices for g in nd.spec.topology_groups] == [
        [env.nvml.gpus[0].uuid, env.nvml.gpus[1].uuid],
        [env.nvml.gpus[2].uuid, env.nvml.gpus[3].uuid],
    ]


async def test_scheduler_chosen_devices_are_honoured_else_plugin_choice(env: Env) -> None:
    g = [x.uuid for x in env.nvml.gpus]
    # Across islands, which the plugin would never pick itself: the scheduler's word wins.
    two = {GPU_DEVICES_ANNOTATION: f"{g[3]},{g[0]},{g[2]}"}
    p1 = await env.create("chosen", [gpu_ctr(1, "a"), gpu_ctr(2, "b")], two)
    await env.step()
    assert env.visible(p1.metadata.uid, "a") == [g[3]]
    assert env.visible(p1.metadata.uid, "b") == [g[0], g[2]]
    # g[0] is taken now: the annotation is ignored and the plugin picks the remaining one.
    p2 = await env.create("stale", [gpu_ctr(1)], {GPU_DEVICES_ANNOTATION: g[0]})
    await env.step()
    assert env.visible(p2.metadata.uid) == [g[1]]
    assert (await env.client.get(Pod, "stale", "default")).status.phase == "Running"


async def test_unusable_choice_falls_back_to_the_plugins_preference(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    g = [x.uuid for x in env.nvml.gpus]
    env.nvml.set_probe_failing(g[0])
    env.nvml.inject_xid(g[0], 79)
    assert env.manager.wait_until(lambda: env.manager.allocatable().get(GPU) == 3)
    pod = await env.create("fallback", [gpu_ctr(2)], {GPU_DEVICES_ANNOTATION: f"{g[0]},{g[1]}"})
    await env.step()
    # Not g[1] with the first free one: the plugin keeps the pair on one NVLink island.
    assert sorted(env.visible(pod.metadata.uid or "")) == sorted([g[2], g[3]])
    assert f"scheduler-chosen device {g[0]} is not free and healthy" in caplog.text


async def test_unhealthy_gpu_sets_pod_condition_and_events_then_clears(env: Env) -> None:
    pod = await env.create("train", [gpu_ctr(2)])
    await env.step()
    uid = pod.metadata.uid or ""
    mine = env.visible(uid)
    other = next(x.uuid for x in env.nvml.gpus if x.uuid not in mine)
    conds = {c.type: c for c in (await env.client.get(Pod, "train", "default")).status.conditions}
    assert conds[CONDITION].status == "True"

    # A GPU the pod does not hold: allocatable drops, a Node event, the pod stays healthy.
    env.nvml.set_probe_failing(other)
    env.nvml.inject_xid(other, 79)
    assert env.manager.wait_until(lambda: env.manager.allocatable().get(GPU) == 3)
    await env.step()
    node = await env.client.get(Node, NODE)
    assert str(node.status.allocatable[GPU]) == "3" and str(node.status.capacity[GPU]) == "4"
    assert any(other in (e.message or "") and e.reason == "GPUUnhealthy" for e in await events(env, "Node", NODE))
    conds = {c.type: c for c in (await env.client.get(Pod, "train", "default")).status.conditions}
    assert conds[CONDITION].status == "True"

    # One of the pod's GPUs falls off the bus.
    env.nvml.set_probe_failing(mine[1])
    env.nvml.inject_xid(mine[1], 79)
    assert env.manager.wait_until(lambda: env.manager.allocatable().get(GPU) == 2)
    await env.step()
    cond = {c.type: c for c in (await env.client.get(Pod, "train", "default")).status.conditions}[CONDITION]
    assert cond.status == "False" and cond.reason == "GPUUnhealthy"
    assert mine[1] in (cond.message or "") and "XID 79" in (cond.message or "")
    # The kubelet's own Pulled/Created/Started events are there too; these are the GPU ones.
    pod_events = [e for e in await events(env, "Pod", "train") if e.reason and e.reason.startswith("GPU")]
    assert [e.reason for e in pod_events] == ["GPUUnhealthy"] and mine[1] in (pod_events[0].message or "")
    nd = await env.client.get(NodeDevices, NODE)
    assert {d.name for d in nd.spec.devices if d.health == "Unhealthy"} == {other, mine[1]}

    # It answers again: the re-probe readmits it and the condition goes back to True.
    env.nvml.restore_device(mine[1])
    assert env.manager.wait_until(lambda: env.manager.allocatable().get(GPU) == 3, timeout_s=10)
    await env.step()
    cond = {c.type: c for c in (await env.client.get(Pod, "train", "default")).status.conditions}[CONDITION]
    assert cond.status == "True"
    gpu_events = [e.reason for e in await events(env, "Pod", "train") if e.reason and e.reason.startswith("GPU")]
    assert gpu_events == ["GPUUnhealthy", "GPUHealthy"]


async def test_init_containers_take_the_chosen_devices_and_hand_them_on(env: Env) -> None:
    g = [x.uuid for x in env.nvml.gpus]
    # max(init 2, app 1 + 1) = 2 devices, across islands (never the plugin's own pick).
    inits = [{**gpu_ctr(2, "init"), "command": ["true"]}]
    pod = await env.create(
        "staged", [gpu_ctr(1, "a"), gpu_ctr(1, "b")], {GPU_DEVICES_ANNOTATION: f"{g[3]},{g[0]}"}, initContainers=inits
    )
    uid = pod.metadata.uid or ""
    await env.step()
    assert env.visible(uid, "init") == [g[3], g[0]]
    [init] = env.cri.by_name(uid, "init")
    env.cri.exit(init.id, 0)
    await env.step()
    assert (env.visible(uid, "a"), env.visible(uid, "b")) == ([g[3]], [g[0]])
    assert env.manager.in_use(GPU) == {g[3], g[0]}
    assert (await env.client.get(Pod, "staged", "default")).status.phase == "Running"


async def test_gpu_condition_stays_when_the_pod_finishes(env: Env) -> None:
    pod = await env.create("doomed", [gpu_ctr(2)], restartPolicy="Never")
    await env.step()
    uid = pod.metadata.uid or ""
    mine = env.visible(uid)
    env.nvml.set_probe_failing(mine[0])
    env.nvml.inject_xid(mine[0], 79)
    assert env.manager.wait_until(lambda: env.manager.allocatable().get(GPU) == 3)
    await env.step()
    cond = {c.type: c for c in (await env.client.get(Pod, "doomed", "default")).status.conditions}[CONDITION]
    assert cond.status == "False"
    # The training dies with its GPU: the Pod fails and gives its GPUs back.
    [c] = env.cri.by_name(uid, "main")
    env.cri.exit(c.id, 1)
    await env.step()
    await env.step()
    done = await env.client.get(Pod, "doomed", "default")
    assert done.status.phase == "Failed" and env.manager.allocated_ids(uid, GPU) == []
    conds = {c.type: c for c in done.status.conditions}
    assert conds[CONDITION].status == "False" and mine[0] in (conds[CONDITION].message or "")
    assert conds["Ready"].status == "False"
    gpu_events = [e.reason for e in await events(env, "Pod", "doomed") if e.reason and e.reason.startswith("GPU")]
    assert gpu_events == ["GPUUnhealthy"]  # freeing its GPUs healed nothing


@pytest.mark.parametrize("env", ["nvidia.com/h100"], indirect=True)
async def test_the_choice_applies_to_the_resource_the_node_devices_name(env: Env) -> None:
    await env.step()  # the node publishes its NodeDevices first: the scheduler reads it to choose
    assert (await env.client.get(NodeDevices, NODE)).spec.driver == "nvidia.com/h100"
    g = [x.uuid for x in env.nvml.gpus]
    ann = {GPU_DEVICES_ANNOTATION: f"{g[3]},{g[0]}"}
    pod = await env.create("h100", [gpu_ctr(2, resource="nvidia.com/h100")], ann)
    await env.step()
    assert env.visible(pod.metadata.uid or "") == [g[3], g[0]]
