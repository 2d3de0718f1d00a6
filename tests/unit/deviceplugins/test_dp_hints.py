"""The scheduler's device choice (``kray.io/gpu-devices``) as the kubelet reads it, and the device
manager honouring it for init and app containers, reusing init containers' devices (real gRPC on
a unix socket to the GPU plugin over FakeNvml; no Ray, no GPU)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kray.crds import Pod
from kray.deviceplugins.fake_nvml import FakeNvml
from kray.deviceplugins.hints import GPU_DEVICES_ANNOTATION, requested_devices
from kray.deviceplugins.manager import DeviceManager, InsufficientDevicesError
from kray.deviceplugins.nvidia import GpuPlugin, GpuPluginConfig

GPU = "nvidia.com/gpu"


def _pod(annotation: str | None, init: dict[str, int], apps: dict[str, int | None], resource: str = GPU) -> Pod:
    def ctr(name: str, n: int | None) -> dict:  # type: ignore[type-arg]
        c: dict = {"name": name, "image": "busybox"}  # type: ignore[type-arg]
        if n is not None:
            c["resources"] = {"limits": {resource: str(n)}}
        return c

    meta: dict = {"name": "p", "namespace": "default"}  # type: ignore[type-arg]
    if annotation is not None:
        meta["annotations"] = {GPU_DEVICES_ANNOTATION: annotation}
    spec = {"initContainers": [ctr(k, v) for k, v in init.items()], "containers": [ctr(k, v) for k, v in apps.items()]}
    return Pod.model_validate({"metadata": meta, "spec": spec})


def test_app_containers_take_slices_in_container_order() -> None:
    pod = _pod("GPU-3, GPU-0,GPU-1", {"init": 1}, {"a": 1, "cpu": None, "b": 2})
    assert requested_devices(pod, "a") == ["GPU-3"]
    assert requested_devices(pod, "cpu") == []
    assert requested_devices(pod, "b") == ["GPU-0", "GPU-1"]
    assert requested_devices(pod, "nope") is None
    assert requested_devices(_pod(None, {}, {"a": 1}), "a") is None
    assert requested_devices(_pod("GPU-3,GPU-0", {}, {"a": 1, "b": 2}), "b") is None  # too few listed: ignored
    assert requested_devices(_pod(" , ", {}, {"a": 1}), "a") is None


def test_init_containers_take_the_first_devices() -> None:
    # Effective request max(3, 1 + 1) = 3: the scheduler lists 3 devices.
    pod = _pod("G0,G1,G2", {"big": 3, "small": 1, "none": None}, {"a": 1, "b": 1})
    assert requested_devices(pod, "big") == ["G0", "G1", "G2"]
    assert requested_devices(pod, "small") == ["G0"]
    assert requested_devices(pod, "none") == []
    assert requested_devices(pod, "a") == ["G0"]  # what the init containers held: reused
    assert requested_devices(pod, "b") == ["G1"]
    assert requested_devices(_pod("G0,G1", {"big": 3}, {"a": 1}), "big") is None  # too few: ignored


def test_the_hint_is_for_the_resource_the_node_devices_name() -> None:
    pod = _pod("W0,W1", {}, {"a": 2}, resource="example.com/widget")
    assert requested_devices(pod, "a", "example.com/widget") is None  # the node's devices are GPUs
    assert requested_devices(pod, "a", "example.com/widget", hinted="example.com/widget") == ["W0", "W1"]
    gpus = _pod("G0", {}, {"a": 1})
    assert requested_devices(gpus, "a", GPU, hinted="example.com/widget") is None


@dataclass
class Node:
    manager: DeviceManager
    gpus: list[str]  # FakeNvml.dgx(4, island=2): NVLink islands {0, 1} and {2, 3}


@pytest.fixture
def node() -> Iterator[Node]:
    tmp = Path(tempfile.mkdtemp(prefix="kdh-"))  # unix socket paths must stay short
    manager = DeviceManager(tmp)
    manager.start()
    nvml = FakeNvml.dgx(4, island=2)
    plugin = GpuPlugin(nvml, tmp, GpuPluginConfig(device_nodes=False, health_tick_s=0.05), watch_interval_s=0.1)
    try:
        assert plugin.start()
        assert manager.wait_until(lambda: manager.allocatable().get(GPU) == 4)
        yield Node(manager, [g.uuid for g in nvml.gpus])
    finally:
        plugin.stop()
        manager.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_init_devices_are_reused_by_app_containers_as_the_scheduler_chose(node: Node) -> None:
    m, g = node.manager, node.gpus
    inits = ["init"]
    # Across islands, which the plugin would never pick itself: the scheduler's word wins.
    assert m.allocate("p1", "init", GPU, 2, [g[3], g[0]], inits).device_ids == [g[3], g[0]]
    assert m.allocate("p1", "a", GPU, 1, [g[3]], inits).device_ids == [g[3]]
    assert m.allocate("p1", "b", GPU, 1, [g[0]], inits).device_ids == [g[0]]
    assert m.in_use(GPU) == {g[0], g[3]}
    assert m.allocated_ids("p1", GPU) == [g[3], g[0]]  # each once
    # Another pod cannot have them: held by p1's containers.
    with pytest.raises(InsufficientDevicesError):
        m.allocate("p2", "main", GPU, 3)
    assert sorted(m.allocate("p2", "main", GPU, 2, [g[0], g[1]]).device_ids) == sorted([g[1], g[2]])
    assert m.free_pod("p1") == [g[3], g[0]]


def test_an_app_container_does_not_reuse_what_another_app_container_took(node: Node) -> None:
    m, g = node.manager, node.gpus
    inits = ["init"]
    assert m.allocate("p1", "init", GPU, 2, [g[0], g[1]], inits).device_ids == [g[0], g[1]]
    assert m.allocate("p1", "a", GPU, 1, [g[0]], inits).device_ids == [g[0]]
    # g[0] is a's now: b asks for it and gets the plugin's choice, its reusable g[1] first.
    assert m.allocate("p1", "b", GPU, 1, [g[0]], inits).device_ids == [g[1]]
    # Not passing the init containers: nothing is reused, the pod holds g[0] and g[1] already.
    assert sorted(m.allocate("p1", "c", GPU, 2).device_ids) == sorted([g[2], g[3]])


def test_without_a_hint_reused_devices_come_first_and_the_plugin_adds_their_island(node: Node) -> None:
    m, g = node.manager, node.gpus
    inits = ["i1", "i2"]
    first = m.allocate("p1", "i1", GPU, 1, None, inits).device_ids
    assert m.allocate("p1", "i2", GPU, 1, None, inits).device_ids == first  # one init after the other
    island = {g[0], g[1]} if first[0] in (g[0], g[1]) else {g[2], g[3]}
    pair = m.allocate("p1", "main", GPU, 2, None, inits).device_ids
    assert pair[0] == first[0] and set(pair) == island  # must-include, then its NVLink partner
    assert m.in_use(GPU) == island
    m.allocate("p2", "i", GPU, 1)
    with pytest.raises(InsufficientDevicesError, match="1 free of 4 healthy, 1 reusable"):
        m.allocate("p2", "main", GPU, 4, None, ["i"])
