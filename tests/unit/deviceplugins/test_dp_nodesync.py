"""NodeDevices publishing and GPU node labels against the in-memory API server, and the
device manager's check of the scheduler's device choice (the annotation's parsing: test_dp_hints)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.framework import FakeClock
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient
from kray.client.errors import NotFound
from kray.crds import Event, Node, Pod
from kray.crds.devices import NodeDevices
from kray.crds.registry import REGISTRY
from kray.deviceplugins.fake_nvml import FakeNvml
from kray.deviceplugins.manager import DeviceManager
from kray.deviceplugins.nodesync import RETRY_S, DeviceStatusSync, gpu_labels, label_value
from kray.deviceplugins.nvidia import GpuPluginCore
from kray.deviceplugins.nvml import XidEvent


@pytest.fixture
async def client() -> AsyncIterator[AsyncClient]:
    kv = MemoryKV()
    api = ApiServer(ObjectStore(kv, REGISTRY), REGISTRY, token="t")
    await api.start()
    async with AsyncClient(server="http://kray.test", token="t", transport=httpx.ASGITransport(app=api.app)) as c:
        await c.create(Node.model_validate({"metadata": {"name": "gpu-n1", "labels": {"a": "b"}}}))
        yield c
    await kv.close()


def inventory(nvml: FakeNvml, core: GpuPluginCore | None = None) -> NodeDevices:
    core = core or GpuPluginCore(nvml)
    return core.inventory("gpu-n1")


def new_sync(client: AsyncClient, tmp_path: Path, inv: list[NodeDevices]) -> DeviceStatusSync:
    # A device manager that never started: no plugin, no allocations (publishing needs neither).
    return DeviceStatusSync("gpu-n1", client, DeviceManager(tmp_path), lambda: inv[0], lambda uid: None, lambda u: None)


def test_label_values() -> None:
    assert label_value("NVIDIA H200") == "NVIDIA-H200"
    assert label_value(" NVIDIA A100-SXM4-80GB (rev 1) ") == "NVIDIA-A100-SXM4-80GB-rev-1"
    assert len(label_value("x" * 100)) == 63
    labels = gpu_labels(inventory(FakeNvml.dgx(4)))
    assert labels == {
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
        "nvidia.com/gpu.memory": "81920",
        "nvidia.com/gpu.count": "4",
    }


async def test_publish_creates_updates_only_on_change_and_labels_node(client: AsyncClient, tmp_path: Path) -> None:
    nvml = FakeNvml.dgx(4)
    core = GpuPluginCore(nvml)
    inv = [core.inventory("gpu-n1")]
    sync = new_sync(client, tmp_path, inv)
    assert await sync.tick()
    nd = await client.get(NodeDevices, "gpu-n1")
    node = await client.get(Node, "gpu-n1")
    assert [d.name for d in nd.spec.devices] == [g.uuid for g in nvml.gpus]
    assert nd.metadata.owner_references[0].kind == "Node"
    assert nd.metadata.owner_references[0].uid == node.metadata.uid
    assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert node.metadata.labels["nvidia.com/gpu.count"] == "4" and node.metadata.labels["a"] == "b"
    assert not await sync.tick()  # nothing changed, resync not due: no refresh at all
    sync._next_resync = 0.0
    assert await sync.tick()  # a resync with an unchanged spec writes nothing
    assert (await client.get(NodeDevices, "gpu-n1")).metadata.resource_version == nd.metadata.resource_version

    # Someone else writes the object: our cached resourceVersion is stale, the update conflicts,
    # and the sync re-reads and writes the new health on top.
    other = await client.get(NodeDevices, "gpu-n1")
    other.metadata.labels = {"touched": "yes"}
    await client.update(other)
    core.health.handle_event(XidEvent(uuid=nvml.gpus[1].uuid, xid=79))
    inv[0] = core.inventory("gpu-n1")
    sync._next_resync = 0.0
    assert await sync.tick()
    nd2 = await client.get(NodeDevices, "gpu-n1")
    bad = [d for d in nd2.spec.devices if d.health == "Unhealthy"]
    assert [d.name for d in bad] == [nvml.gpus[1].uuid] and "XID 79" in (bad[0].health_reason or "")
    assert nd2.metadata.labels == {"touched": "yes"}  # their change kept
    assert not sync.errors

    await sync.delete()
    with pytest.raises(NotFound):
        await client.get(NodeDevices, "gpu-n1")


async def test_inventory_failure_is_retried_not_fatal(client: AsyncClient, tmp_path: Path) -> None:
    calls = []

    def flaky() -> NodeDevices | None:
        calls.append(1)
        if len(calls) == 1:
            raise TimeoutError("plugin restarting")
        return inventory(FakeNvml.pcie(2))

    clock = FakeClock(datetime(2024, 1, 1, tzinfo=timezone.utc))
    sync = DeviceStatusSync("gpu-n1", client, DeviceManager(tmp_path), flaky, lambda u: None, lambda u: None, clock)
    assert not await sync.tick()
    assert "inventory" in sync.errors
    assert not await sync.tick() and len(calls) == 1  # not hammered: retried after RETRY_S
    clock.advance(RETRY_S)
    assert await sync.tick()
    assert not sync.errors
    node = await client.get(Node, "gpu-n1")
    assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert node.metadata.labels["nvidia.com/gpu.memory"] == "24576"


def test_manager_takes_requested_devices_only_when_all_free(caplog: pytest.LogCaptureFixture) -> None:
    free = ["GPU-0", "GPU-1", "GPU-2"]
    pick = DeviceManager._requested
    assert pick(["GPU-2", "GPU-0"], free, 2, "p") == ["GPU-2", "GPU-0"]
    assert pick(None, free, 2, "p") is None
    with caplog.at_level(logging.WARNING):
        assert pick(["GPU-2", "GPU-9"], free, 2, "p") is None  # GPU-9 unhealthy or taken
        assert pick(["GPU-2"], free, 2, "p") is None
        assert pick(["GPU-2", "GPU-2"], free, 2, "p") is None
    assert "GPU-9 is not free and healthy" in caplog.text
    # Time-slicing: the scheduler names the GPU, the manager takes free replicas of it.
    replicas = ["GPU-0::0", "GPU-0::1", "GPU-1::0"]
    assert pick(["GPU-0", "GPU-0"], replicas, 2, "p") == ["GPU-0::0", "GPU-0::1"]
    assert pick(["GPU-1", "GPU-1"], replicas, 2, "p") is None


@dataclass
class HeldDevices:
    """nodesync.DevicesView: which pod holds which GPUs."""

    held: dict[str, list[str]] = field(default_factory=dict)
    generation: int = 0

    def allocated_pods(self) -> set[str]:
        return set(self.held)

    def allocated_ids(self, pod_uid: str, resource: str) -> list[str]:
        return list(self.held.get(pod_uid, []))


async def test_a_pod_giving_its_gpus_back_is_not_reported_healed(client: AsyncClient) -> None:
    """A finished Pod frees its GPUs: no GPUHealthy event, no status rewrite; the kubelet keeps
    its last GPUHealthy condition (actors.kubelet.podstatus.merge_conditions)."""
    nvml = FakeNvml.dgx(2, island=2)
    core = GpuPluginCore(nvml)
    pod = await client.create(
        Pod.model_validate(
            {
                "metadata": {"name": "p", "namespace": "default"},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            }
        )
    )
    uid = pod.metadata.uid or ""
    devices = HeldDevices({uid: [nvml.gpus[0].uuid]})
    dispatched: list[str] = []
    sync = DeviceStatusSync(
        "gpu-n1",
        client,
        devices,
        lambda: core.inventory("gpu-n1"),
        lambda u: pod if u == uid else None,
        dispatched.append,
    )
    core.health.handle_event(XidEvent(uuid=nvml.gpus[0].uuid, xid=79))
    assert await sync.tick()
    assert dispatched == [uid] and sync.pod_conditions(pod)[0]["status"] == "False"
    devices.held.clear()
    devices.generation += 1
    assert await sync.tick()
    assert dispatched == [uid] and sync.pod_conditions(pod) == []
    reasons = [e.reason for e in (await client.list(Event, "default")).items if e.involved_object.kind == "Pod"]
    assert reasons == ["GPUUnhealthy"]
