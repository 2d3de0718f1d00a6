"""GPU utilization through the NVML port's fake and the GPU plugin core's DeviceUsage answer."""

from __future__ import annotations

import pytest

from kray.deviceplugins.fake_nvml import H100_MEMORY, FakeNvml
from kray.deviceplugins.nvidia import GpuPluginConfig, GpuPluginCore
from kray.deviceplugins.nvml import DeviceGoneError, GpuUtilization

GiB = 1024**3


def test_fake_gpus_are_idle_until_told_otherwise() -> None:
    nvml = FakeNvml.dgx(2)
    nvml.init()
    assert nvml.utilization(0) == GpuUtilization(gpu_percent=0, memory_used_bytes=0, memory_total_bytes=H100_MEMORY)
    nvml.set_utilization(1, gpu_percent=93, memory_used_bytes=71 * GiB)
    assert nvml.utilization(1) == GpuUtilization(93, 71 * GiB, H100_MEMORY)
    assert nvml.utilization(0).gpu_percent == 0  # per GPU
    nvml.set_utilization(nvml.gpus[0].uuid, gpu_percent=None, memory_used_bytes=None)  # NOT_SUPPORTED
    assert nvml.utilization(0) == GpuUtilization(None, None, None)


def test_fake_refuses_what_a_gpu_cannot_report() -> None:
    nvml = FakeNvml.dgx(1)
    nvml.init()
    with pytest.raises(ValueError, match="0-100"):
        nvml.set_utilization(0, gpu_percent=101)
    with pytest.raises(ValueError, match="memory_used_bytes"):
        nvml.set_utilization(0, memory_used_bytes=H100_MEMORY + 1)
    nvml.set_utilization(0, gpu_percent=100, memory_used_bytes=H100_MEMORY)  # full is fine
    assert nvml.utilization(0).memory_used_bytes == H100_MEMORY


def test_fake_utilization_has_nvml_errors() -> None:
    nvml = FakeNvml.dgx(2)
    with pytest.raises(RuntimeError, match="before init"):
        nvml.utilization(0)
    nvml.init()
    nvml.remove_device(1)
    with pytest.raises(DeviceGoneError):
        nvml.utilization(1)


def test_plugin_core_reports_each_gpu_once_under_time_slicing() -> None:
    nvml = FakeNvml.pcie(3)
    core = GpuPluginCore(nvml, GpuPluginConfig(replicas=4, device_nodes=False))
    nvml.set_utilization(0, gpu_percent=40, memory_used_bytes=3 * GiB)
    nvml.set_utilization(2, gpu_percent=None, memory_used_bytes=None)
    nvml.remove_device(1)
    assert len(core.devices()) == 12  # advertised as <uuid>::<i>, but usage is per GPU
    got = [{f.name: v for f, v in e.ListFields()} for e in core.usage()]
    uuids = [g.uuid for g in nvml.gpus]
    assert got == [
        {"id": uuids[0], "model": "NVIDIA L4", "gpu_percent": 40, "memory_used_bytes": 3 * GiB,
         "memory_total_bytes": 24 * GiB},
        {"id": uuids[1], "model": "NVIDIA L4"},  # gone: listed, figures unknown
        {"id": uuids[2], "model": "NVIDIA L4"},  # NOT_SUPPORTED: unset, not zero
    ]  # fmt: skip
    # Zero is a figure, not "unset": an idle GPU says 0%.
    nvml.restore_device(1)
    idle = core.usage()[1]
    assert idle.HasField("gpu_percent") and idle.gpu_percent == 0 and idle.memory_used_bytes == 0
