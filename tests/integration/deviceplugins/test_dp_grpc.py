"""The GPU plugin and the device manager over real gRPC on unix sockets (no Ray, no GPU)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kray.deviceplugins.api import pb, pb_grpc
from kray.deviceplugins.example_widget import WidgetCore, widget_plugin
from kray.deviceplugins.fake_nvml import FakeNvml
from kray.deviceplugins.manager import DeviceManager, InsufficientDevicesError
from kray.deviceplugins.nvidia import GpuPlugin, GpuPluginConfig
from kray.deviceplugins.server import PluginServer

GPU = "nvidia.com/gpu"


@pytest.fixture
def plugin_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes; pytest's tmp_path can be longer.
    d = Path(tempfile.mkdtemp(prefix="kdp-"))
    (d / "dev").mkdir()
    for name in ("nvidia0", "nvidia1", "nvidia2", "nvidia3", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"):
        (d / "dev" / name).touch()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def manager(plugin_dir: Path) -> Iterator[DeviceManager]:
    m = DeviceManager(plugin_dir)
    m.start()
    yield m
    m.stop()


@pytest.fixture
def nvml() -> FakeNvml:
    return FakeNvml.dgx(4, island=2)


@pytest.fixture
def gpu_plugin(plugin_dir: Path, manager: DeviceManager, nvml: FakeNvml) -> Iterator[GpuPlugin]:
    config = GpuPluginConfig(dev_root=str(plugin_dir / "dev"), health_tick_s=0.05, backoff_s=3600)
    plugin = GpuPlugin(nvml, plugin_dir, config, watch_interval_s=0.1)
    assert plugin.start()
    yield plugin
    plugin.stop()


def test_gpu_plugin_registers_and_allocates(manager: DeviceManager, gpu_plugin: GpuPlugin, nvml: FakeNvml) -> None:
    assert manager.wait_until(lambda: manager.allocatable().get(GPU) == 4)
    assert manager.capacity()[GPU] == 4

    got = manager.allocate("pod-1", "main", GPU, 2)
    visible = got.envs["NVIDIA_VISIBLE_DEVICES"].split(",")
    assert len(visible) == 2 and set(visible) <= {g.uuid for g in nvml.gpus}
    assert set(visible) == set(got.device_ids)
    # The plugin's preference: both on one NVLink island (islands of 2 here).
    assert set(visible) in ({nvml.gpus[0].uuid, nvml.gpus[1].uuid}, {nvml.gpus[2].uuid, nvml.gpus[3].uuid})
    paths = [d["containerPath"] for d in got.devices]
    assert "/dev/nvidiactl" in paths and "/dev/nvidia-uvm-tools" in paths
    assert sum(p.startswith("/dev/nvidia") and p[-1].isdigit() for p in paths) == 2
    # Asking again for the same container gives the same devices (kubelet re-admission).
    assert manager.allocate("pod-1", "main", GPU, 2).device_ids == got.device_ids

    with pytest.raises(InsufficientDevicesError, match="insufficient"):
        manager.allocate("pod-2", "main", GPU, 3)

    other = manager.allocate("pod-2", "main", GPU, 2)
    assert not set(other.device_ids) & set(got.device_ids)
    assert manager.free_pod("pod-1") == got.device_ids
    assert manager.in_use(GPU) == set(other.device_ids)


def test_xid79_lowers_allocatable_via_list_and_watch(
    manager: DeviceManager, gpu_plugin: GpuPlugin, nvml: FakeNvml
) -> None:
    assert manager.wait_until(lambda: manager.allocatable().get(GPU) == 4)
    nvml.inject_xid(2, 79)
    assert manager.wait_until(lambda: manager.allocatable().get(GPU) == 3)
    assert manager.capacity()[GPU] == 4
    assert manager.unhealthy_devices(GPU) == {nvml.gpus[2].uuid}
    with pytest.raises(InsufficientDevicesError):
        manager.allocate("pod-1", "main", GPU, 4)
    got = manager.allocate("pod-1", "main", GPU, 3)
    assert nvml.gpus[2].uuid not in got.device_ids


def test_manager_restart_restores_allocations(
    plugin_dir: Path, manager: DeviceManager, gpu_plugin: GpuPlugin, nvml: FakeNvml
) -> None:
    assert manager.wait_until(lambda: manager.allocatable().get(GPU) == 4)
    first = manager.allocate("pod-1", "main", GPU, 2)
    manager.stop()

    restarted = DeviceManager(plugin_dir)
    restarted.start()
    try:
        assert restarted.checkpoint_error is None
        assert restarted.allocation("pod-1", "main")[GPU].device_ids == first.device_ids
        # The plugin notices the new kubelet.sock and registers again.
        assert restarted.wait_until(lambda: restarted.allocatable().get(GPU) == 4)
        assert gpu_plugin.server.registrations >= 2
        with pytest.raises(InsufficientDevicesError):
            restarted.allocate("pod-2", "main", GPU, 3)
        second = restarted.allocate("pod-2", "main", GPU, 2)
        assert not set(second.device_ids) & set(first.device_ids)
    finally:
        restarted.stop()


def test_widget_plugin_registers_too(plugin_dir: Path, manager: DeviceManager, gpu_plugin: GpuPlugin) -> None:
    widgets = widget_plugin(plugin_dir, count=3, watch_interval_s=0.1)
    widgets.start()
    try:
        assert manager.wait_until(lambda: manager.allocatable().get("example.com/widget") == 3)
        assert manager.wait_until(lambda: manager.allocatable().get(GPU) == 4)
        got = manager.allocate("pod-w", "c", "example.com/widget", 2)
        assert got.envs["WIDGETS"] == ",".join(got.device_ids)
        assert got.mounts[0]["containerPath"] == "/run/widgets"
        core = widgets.core
        assert isinstance(core, WidgetCore)
        core.set_health("widget-2", healthy=False)
        assert manager.wait_until(lambda: manager.allocatable().get("example.com/widget") == 2)
        with pytest.raises(InsufficientDevicesError):
            manager.allocate("pod-x", "c", "example.com/widget", 1)
    finally:
        widgets.stop()
    # The plugin went away: its devices stay counted but none is allocatable.
    assert manager.wait_until(lambda: manager.allocatable().get("example.com/widget") == 0)


def test_registration_rejects_a_wrong_api_version(plugin_dir: Path, manager: DeviceManager) -> None:
    with grpc.insecure_channel(f"unix://{plugin_dir / 'kubelet.sock'}") as ch, pytest.raises(grpc.RpcError) as e:
        pb_grpc.RegistrationStub(ch).Register(
            pb.RegisterRequest(version="v1alpha", endpoint="x.sock", resource_name="example.com/x"), timeout=5
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_list_and_watch_sends_full_list_then_changes(plugin_dir: Path, nvml: FakeNvml) -> None:
    plugin = GpuPlugin(nvml, plugin_dir, GpuPluginConfig(health_tick_s=0.05, backoff_s=3600))
    assert plugin.start(register=False)
    try:
        with grpc.insecure_channel(f"unix://{plugin.server.socket_path}") as ch:
            stream = pb_grpc.DevicePluginStub(ch).ListAndWatch(pb.Empty(), timeout=10)
            first = next(stream)
            assert [d.health for d in first.devices] == ["Healthy"] * 4
            assert first.devices[0].topology.nodes[0].ID == 0
            nvml.inject_xid(1, 79)
            second = next(stream)
            assert [d.health for d in second.devices] == ["Healthy", "Unhealthy", "Healthy", "Healthy"]
            stream.cancel()
    finally:
        plugin.stop()


def test_plugin_server_is_reusable_for_any_core(plugin_dir: Path, manager: DeviceManager) -> None:
    server = PluginServer(WidgetCore(1), plugin_dir, "w1.sock")
    server.start()
    try:
        assert manager.wait_until(lambda: manager.allocatable().get("example.com/widget") == 1)
    finally:
        server.stop()
