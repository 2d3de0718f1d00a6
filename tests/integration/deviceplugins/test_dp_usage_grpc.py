"""kray's DeviceUsage extension over real gRPC on unix sockets: the GPU plugin serves it next to
its v1beta1 DevicePlugin service, the device manager asks it and maps the figures onto the
containers holding the devices (time-sliced ids included); a plugin that does not serve it
(the example widget, like any plugin written for Kubernetes) just has no usage."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kray.actors.kubelet.ports import DeviceUsagePort
from kray.deviceplugins.api import usage_grpc, usage_pb
from kray.deviceplugins.example_widget import widget_plugin
from kray.deviceplugins.fake_nvml import H100_MEMORY, FakeNvml
from kray.deviceplugins.manager import DeviceManager, DeviceUsage
from kray.deviceplugins.nvidia import GpuPlugin, GpuPluginConfig

GPU = "nvidia.com/gpu"
GiB = 1024**3


@pytest.fixture
def plugin_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="kdu-"))  # unix socket paths stop at 107 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def manager(plugin_dir: Path) -> Iterator[DeviceManager]:
    m = DeviceManager(plugin_dir, usage_ttl_s=0.0)  # every call asks: tests change figures between calls
    m.start()
    yield m
    m.stop()


@pytest.fixture
def nvml() -> FakeNvml:
    return FakeNvml.dgx(4, island=2)


@pytest.fixture
def gpu_plugin(plugin_dir: Path, manager: DeviceManager, nvml: FakeNvml) -> Iterator[GpuPlugin]:
    config = GpuPluginConfig(replicas=2, device_nodes=False, health_tick_s=0.05, backoff_s=3600)
    plugin = GpuPlugin(nvml, plugin_dir, config, watch_interval_s=0.1)
    assert plugin.start()
    assert manager.wait_until(lambda: manager.allocatable().get(GPU) == 8)
    yield plugin
    plugin.stop()


def test_the_plugin_serves_get_usage_on_its_socket(gpu_plugin: GpuPlugin, nvml: FakeNvml) -> None:
    nvml.set_utilization(3, gpu_percent=12, memory_used_bytes=GiB)
    with grpc.insecure_channel(f"unix://{gpu_plugin.server.socket_path}") as ch:
        got = usage_grpc.DeviceUsageStub(ch).GetUsage(usage_pb.Empty(), timeout=5)
    assert [d.id for d in got.devices] == [g.uuid for g in nvml.gpus]  # each GPU once, not per replica
    assert (got.devices[3].gpu_percent, got.devices[3].memory_used_bytes) == (12, GiB)


def test_usage_per_device_and_per_container(manager: DeviceManager, gpu_plugin: GpuPlugin, nvml: FakeNvml) -> None:
    assert isinstance(manager, DeviceUsagePort)  # what the kubelet's /stats/summary checks for
    u = [g.uuid for g in nvml.gpus]
    nvml.set_utilization(0, gpu_percent=90, memory_used_bytes=70 * GiB)
    nvml.set_utilization(1, gpu_percent=30, memory_used_bytes=10 * GiB)
    manager.allocate("pod-1", "main", GPU, 2, requested=[u[0], u[1]])  # one replica of each
    manager.allocate("pod-2", "main", GPU, 1, requested=[u[0]])  # time-sliced: GPU 0's other replica
    manager.allocate("pod-3", "main", GPU, 2, requested=[f"{u[2]}::0", f"{u[2]}::1"])  # one GPU, twice

    usage = manager.usage()
    busy = DeviceUsage(u[0], GPU, "NVIDIA H100 80GB HBM3", 90, 70 * GiB, H100_MEMORY)
    assert usage[u[0]] == busy
    assert usage[f"{u[0]}::0"] == usage[f"{u[0]}::1"] == busy  # every advertised id maps to its GPU
    assert usage[u[3]].gpu_percent == 0 and usage[u[3]].make == "nvidia"

    held = manager.container_usage()
    assert sorted(held) == [("pod-1", "main"), ("pod-2", "main"), ("pod-3", "main")]
    assert [(d.id, d.gpu_percent) for d in held[("pod-1", "main")]] == [(u[0], 90), (u[1], 30)]
    assert [d.id for d in held[("pod-2", "main")]] == [u[0]]
    assert [d.id for d in held[("pod-3", "main")]] == [u[2]]  # two replicas of one GPU: one GPU

    nvml.set_utilization(1, gpu_percent=75, memory_used_bytes=10 * GiB)
    assert manager.container_usage()[("pod-1", "main")][1].gpu_percent == 75
    manager.free_pod("pod-1")
    assert ("pod-1", "main") not in manager.container_usage()


def test_answers_are_cached_briefly(plugin_dir: Path, nvml: FakeNvml) -> None:
    manager = DeviceManager(plugin_dir, usage_ttl_s=0.5)
    manager.start()
    plugin = GpuPlugin(nvml, plugin_dir, GpuPluginConfig(device_nodes=False), watch_interval_s=0.1)
    try:
        assert plugin.start()
        assert manager.wait_until(lambda: manager.allocatable().get(GPU) == 4)
        assert manager.usage()[nvml.gpus[0].uuid].gpu_percent == 0
        nvml.set_utilization(0, gpu_percent=50)
        assert manager.usage()[nvml.gpus[0].uuid].gpu_percent == 0  # still the cached answer
        time.sleep(0.6)
        assert manager.usage()[nvml.gpus[0].uuid].gpu_percent == 50
    finally:
        plugin.stop()
        manager.stop()


def test_a_plugin_without_the_extension_has_no_usage(
    plugin_dir: Path, manager: DeviceManager, gpu_plugin: GpuPlugin, nvml: FakeNvml
) -> None:
    widgets = widget_plugin(plugin_dir, count=2, watch_interval_s=0.1)
    widgets.start()
    try:
        assert manager.wait_until(lambda: manager.allocatable().get("example.com/widget") == 2)
        got = manager.allocate("pod-w", "main", "example.com/widget", 1)
        usage = manager.usage()  # UNIMPLEMENTED from the widget plugin: not an error
        assert {d.resource for d in usage.values()} == {GPU}
        assert not set(got.device_ids) & set(usage)
        assert ("pod-w", "main") not in manager.container_usage()
    finally:
        widgets.stop()


def test_a_gone_plugin_is_left_out(manager: DeviceManager, gpu_plugin: GpuPlugin, nvml: FakeNvml) -> None:
    assert len({u.id for u in manager.usage().values()}) == 4
    gpu_plugin.stop()
    assert manager.wait_until(lambda: manager.allocatable().get(GPU) == 0)
    start = time.monotonic()
    assert manager.usage() == {}
    assert time.monotonic() - start < 2.0
