"""PyNvml's translation of NVML answers, against a hand-written stand-in for the pynvml module.

No GPU here, so this checks the parts that are our logic: error mapping, NVLink lane counting
(direct and through NVSwitches), MIG detection, event waits that time out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pynvml
import pytest

from kray.deviceplugins.nvml import TOPOLOGY_NODE, NoGPUsError, PyNvml, XidEvent


@dataclass
class _Pci:
    busId: str  # pynvml spells its fields in camelCase


@dataclass
class _Mem:
    total: int


@dataclass
class _Event:
    device: int
    eventType: int
    eventData: int


class StubNvml:
    """The subset of pynvml that PyNvml calls; device handles are plain ints."""

    NVMLError = pynvml.NVMLError
    NVML_ERROR_LIBRARY_NOT_FOUND = pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
    NVML_ERROR_DRIVER_NOT_LOADED = pynvml.NVML_ERROR_DRIVER_NOT_LOADED
    NVML_ERROR_TIMEOUT = pynvml.NVML_ERROR_TIMEOUT
    NVML_FEATURE_ENABLED = pynvml.NVML_FEATURE_ENABLED
    NVML_NVLINK_MAX_LINKS = 4
    NVML_DEVICE_MIG_ENABLE = pynvml.NVML_DEVICE_MIG_ENABLE
    nvmlEventTypeXidCriticalError = pynvml.nvmlEventTypeXidCriticalError

    def __init__(self, links: dict[int, list[str]], init_error: int | None = None) -> None:
        self.links = links  # device -> remote bus id per active link
        self.init_error = init_error
        self.events: list[_Event] = []

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)

    def nvmlDeviceGetCount(self) -> int:
        return len(self.links)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        if i >= len(self.links):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return i

    def nvmlDeviceGetCudaComputeCapability(self, h: int) -> tuple[int, int]:
        return (9, 0)

    def nvmlDeviceGetPciInfo(self, h: int) -> _Pci:
        return _Pci(busId=f"00000000:{h + 1:02X}:00.0")

    def nvmlDeviceGetMigMode(self, h: int) -> list[int]:
        if h == 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return [1 if h == 2 else 0, 0]

    def nvmlDeviceGetUUID(self, h: int) -> bytes:
        return f"GPU-{h}".encode()

    def nvmlDeviceGetName(self, h: int) -> str:
        return "NVIDIA H200"

    def nvmlDeviceGetMemoryInfo(self, h: int) -> _Mem:
        return _Mem(total=141 * 1024**3)

    def nvmlDeviceGetMinorNumber(self, h: int) -> int:
        return h

    def nvmlDeviceGetNvLinkState(self, h: int, link: int) -> int:
        if link >= len(self.links[h]):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return pynvml.NVML_FEATURE_ENABLED

    def nvmlDeviceGetNvLinkRemotePciInfo(self, h: int, link: int) -> _Pci:
        return _Pci(busId=self.links[h][link])

    def nvmlDeviceGetTopologyCommonAncestor(self, a: int, b: int) -> int:
        return TOPOLOGY_NODE

    def nvmlEventSetCreate(self) -> str:
        return "set"

    def nvmlDeviceRegisterEvents(self, h: int, types: int, es: Any) -> None:
        pass

    def nvmlEventSetWait(self, es: Any, timeout_ms: int) -> _Event:
        if not self.events:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT)
        return self.events.pop(0)

    def nvmlEventSetFree(self, es: Any) -> None:
        pass


def _bus(i: int) -> str:
    return f"00000000:{i + 1:02X}:00.0"


def test_init_without_library_is_no_gpus() -> None:
    with pytest.raises(NoGPUsError):
        PyNvml(module=StubNvml({}, init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)).init()
    with pytest.raises(NoGPUsError):
        PyNvml(module=StubNvml({}, init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)).init()


def test_device_fields_and_mig(tmp_path: Path) -> None:
    (tmp_path / "0000:02:00.0").mkdir()
    (tmp_path / "0000:02:00.0" / "numa_node").write_text("1\n")
    nv = PyNvml(sysfs=str(tmp_path), module=StubNvml({0: [], 1: [], 2: []}))
    nv.init()
    g0, g1, g2 = (nv.device(i) for i in range(3))
    assert g1.uuid == "GPU-1" and g1.compute_capability == "9.0" and g1.memory_bytes == 141 * 1024**3
    assert g1.numa_node == 1 and g0.numa_node is None
    assert (g0.mig_enabled, g1.mig_enabled, g2.mig_enabled) == (False, False, True)


def test_direct_and_switched_nvlinks() -> None:
    switch = "00000000:AA:00.0"
    stub = StubNvml({0: [_bus(1), _bus(1)], 1: [_bus(0), _bus(0)], 2: [switch] * 3, 3: [switch] * 3})
    nv = PyNvml(module=stub)
    nv.init()
    assert nv.topology(0, 1).nvlinks == 2
    assert nv.topology(2, 3).nvlinks == 3  # both GPUs on one NVSwitch
    assert nv.topology(0, 2).nvlinks == 0 and nv.topology(0, 2).ancestor == TOPOLOGY_NODE


def test_a_shared_gpu_neighbour_is_not_a_switch() -> None:
    # 0-1 and 1-2 linked directly; 0 and 2 both reach GPU 1 but not each other.
    stub = StubNvml({0: [_bus(1)], 1: [_bus(0), _bus(2)], 2: [_bus(1)]})
    nv = PyNvml(module=stub)
    nv.init()
    assert nv.topology(0, 1).nvlinks == 1 and nv.topology(0, 2).nvlinks == 0


def test_event_wait_times_out_and_reports_xids() -> None:
    stub = StubNvml({0: [], 1: []})
    nv = PyNvml(module=stub)
    nv.init()
    es = nv.event_set([0, 1])
    assert es.wait(0.01) is None
    stub.events.append(_Event(device=1, eventType=pynvml.nvmlEventTypeXidCriticalError, eventData=79))
    assert es.wait(0.01) == XidEvent(uuid="GPU-1", xid=79)
    es.close()
