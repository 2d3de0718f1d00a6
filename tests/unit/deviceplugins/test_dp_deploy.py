"""`kray up`'s GPU decision: fake GPUs, the real plugin where NVML finds GPUs, else nothing."""

from __future__ import annotations

import pytest

from kray.deviceplugins.deploy import gpu_plan
from kray.deviceplugins.fake_nvml import FakeNvml
from kray.deviceplugins.nvidia import local_gpus
from kray.deviceplugins.nvml import NoGPUs


def test_fake_gpus_need_no_probe() -> None:
    def boom() -> object:
        raise AssertionError("fake GPUs must not touch NVML")

    plan = gpu_plan(4, "/var/lib/kray/n1", probe=boom)
    assert plan.fake_gpus == 4 and plan.plugin_dir == "/var/lib/kray/n1/device-plugins"


def test_real_gpus_get_the_real_plugin_and_none_get_nothing() -> None:
    found = gpu_plan(0, "/r/n1", probe=lambda: local_gpus(FakeNvml.pcie(2)))
    assert found.fake_gpus == 0 and found.plugin_dir == "/r/n1/device-plugins" and "2 NVIDIA GPU" in found.why
    absent = FakeNvml.pcie(2)
    absent.fail_init("NVML Shared Library Not Found")
    none = gpu_plan(0, "/r/n1", probe=lambda: local_gpus(absent))
    assert none.plugin_dir is None and "Shared Library Not Found" in none.why
    # This machine: no driver (or no nvidia-ml-py), which must read as "no GPUs", never crash.
    assert isinstance(local_gpus(), (NoGPUs, list))


def test_negative_fake_gpus_rejected() -> None:
    with pytest.raises(ValueError, match="fake_gpus"):
        gpu_plan(-1, "/r/n1")


def test_too_long_node_root_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="--node-root is too long"):
        gpu_plan(2, "/" + "x" * 100 + "/n1")
