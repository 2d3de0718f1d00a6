"""Discovery over FakeNvml, including hosts without the NVIDIA library."""

from __future__ import annotations

import pytest

from kray.deviceplugins.fake_nvml import FakeNvml
from kray.deviceplugins.nvidia import GpuPlugin, GpuPluginCore
from kray.deviceplugins.nvml import TOPOLOGY_SYSTEM, NoGPUs, PyNvml, discover


def test_discover_lists_every_gpu() -> None:
    nvml = FakeNvml.dgx(8)
    gpus = discover(nvml)
    assert isinstance(gpus, list)
    assert [g.index for g in gpus] == list(range(8))
    assert len({g.uuid for g in gpus}) == 8
    assert gpus[0].compute_capability == "9.0"
    assert gpus[0].memory_bytes == 80 * 1024**3


def test_library_not_found_means_no_gpus_not_a_crash() -> None:
    nvml = FakeNvml.dgx(8)
    nvml.fail_init("NVML Shared Library Not Found")
    result = discover(nvml)
    assert isinstance(result, NoGPUs)
    assert "Library Not Found" in result.reason
    core = GpuPluginCore(nvml)
    assert core.no_gpus is not None and core.gpus == [] and core.devices() == []
    assert GpuPlugin(nvml, plugin_dir="/nonexistent").start() is False


def test_a_device_that_disappeared_is_skipped() -> None:
    nvml = FakeNvml.pcie(4)
    nvml.remove_device(2)
    gpus = discover(nvml)
    assert isinstance(gpus, list)
    assert [g.index for g in gpus] == [0, 1, 3]


def test_mig_enabled_gpus_are_not_advertised_whole() -> None:
    nvml = FakeNvml.pcie(2)
    nvml.set_mig(1)
    core = GpuPluginCore(nvml)
    assert [d.ID for d in core.devices()] == [nvml.gpus[0].uuid]


def test_topology_of_builders() -> None:
    dgx = FakeNvml.dgx(8)
    assert dgx.topology(0, 3).nvlinks > 0
    assert dgx.topology(3, 4).nvlinks == 0 and dgx.topology(3, 4).ancestor == TOPOLOGY_SYSTEM
    pcie = FakeNvml.pcie(4)
    assert all(pcie.topology(a, b).nvlinks == 0 for a in range(4) for b in range(a + 1, 4))


def test_real_nvml_without_a_driver_reports_no_gpus() -> None:
    # This machine has no NVIDIA driver: the real port must say so, not raise.
    pytest.importorskip("pynvml")
    result = discover(PyNvml())
    if isinstance(result, list):
        pytest.skip("this host has NVIDIA GPUs")
    assert isinstance(result, NoGPUs)
