"""The NVML port: the few NVML calls the GPU plugin needs, behind a small Protocol.

``PyNvml`` is the real implementation over ``pynvml`` (nvidia-ml-py); ``fake_nvml.FakeNvml``
is the test double with the same interface. Everything above this module (discovery, health,
allocation, the gRPC server) sees only ``Nvml``, so it runs unchanged on a laptop without GPUs.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

# NVML_TOPOLOGY_* common-ancestor levels, copied so callers need not import pynvml.
TOPOLOGY_INTERNAL = 0  # same board (e.g. the two GPUs of a K80)
TOPOLOGY_SINGLE = 10  # one PCIe switch
TOPOLOGY_MULTIPLE = 20  # several PCIe switches, no host bridge
TOPOLOGY_HOSTBRIDGE = 30  # the same host bridge
TOPOLOGY_NODE = 40  # the same NUMA node (CPU socket)
TOPOLOGY_SYSTEM = 50  # across sockets (SMP interconnect)


class NoGPUsError(Exception):
    """NVML cannot start because this host has no NVIDIA driver or library: not a failure."""


class DeviceGoneError(Exception):
    """A device that was there no longer answers (fallen off the bus, removed)."""


class EventsUnsupportedError(Exception):
    """The driver cannot deliver XID events for these devices; callers fall back to polling."""


@dataclass(frozen=True)
class GpuInfo:
    index: int
    uuid: str
    name: str
    memory_bytes: int
    compute_capability: str  # "9.0"
    pci_bus_id: str  # "00000000:18:00.0"
    mig_enabled: bool
    minor: int  # N in /dev/nvidiaN
    numa_node: int | None = None


@dataclass(frozen=True)
class PairTopology:
    """How two GPUs talk: NVLink lanes between them, else the PCIe common-ancestor level."""

    nvlinks: int
    ancestor: int  # TOPOLOGY_*


@dataclass(frozen=True)
class GpuUtilization:
    """How busy one GPU is now. None: NVML cannot tell on this device (NOT_SUPPORTED)."""

    gpu_percent: int | None  # share of the last sample period a kernel ran, 0-100
    memory_used_bytes: int | None
    memory_total_bytes: int | None


@dataclass(frozen=True)
class XidEvent:
    uuid: str | None  # None: NVML could not tell which device, so it concerns all of them
    xid: int


class EventSet(Protocol):
    def wait(self, timeout_s: float) -> XidEvent | None:
        """The next XID event, or None when ``timeout_s`` passes without one."""
        ...

    def close(self) -> None: ...


class Nvml(Protocol):
    def init(self) -> None:
        """Start NVML; raises ``NoGPUsError`` when the library or driver is absent."""
        ...

    def shutdown(self) -> None: ...

    def device_count(self) -> int: ...

    def device(self, index: int) -> GpuInfo:
        """Everything about one device; raises ``DeviceGoneError`` when it does not answer."""
        ...

    def topology(self, a: int, b: int) -> PairTopology: ...

    def event_set(self, indices: list[int]) -> EventSet:
        """Register for XID critical-error events; raises ``EventsUnsupportedError``."""
        ...

    def probe(self, uuid: str) -> bool:
        """Whether the device answers queries again (used to re-admit an unhealthy GPU)."""
        ...

    def utilization(self, index: int) -> GpuUtilization:
        """GPU and memory use now; raises ``DeviceGoneError`` when the device does not answer."""
        ...


@dataclass(frozen=True)
class NoGPUs:
    """Discovery's answer on a host without NVIDIA GPUs (or without a working driver)."""

    reason: str


def discover(nvml: Nvml) -> list[GpuInfo] | NoGPUs:
    """Init NVML and list its GPUs. Devices that fail to answer are skipped, not fatal."""
    try:
        nvml.init()
    except NoGPUsError as e:
        return NoGPUs(str(e))
    gpus: list[GpuInfo] = []
    for index in range(nvml.device_count()):
        try:
            gpus.append(nvml.device(index))
        except DeviceGoneError:
            continue
    if not gpus:
        return NoGPUs("NVML reports no usable devices")
    return gpus


# ---------------------------------------------------------------------------------------------
# the real thing


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _handle_key(handle: Any) -> int | None:
    """A device handle's address: NVML hands out the same pointer for a device all session long."""
    return ctypes.cast(handle, ctypes.c_void_p).value


class _PyNvmlEventSet:
    def __init__(self, pynvml: Any, handle: Any, uuids: dict[int, str]) -> None:
        self._pynvml = pynvml
        self._set = handle
        # Handle address -> UUID, read while the GPUs answered: after XID 79 the GPU that raised
        # it is lost and nvmlDeviceGetUUID fails, yet the event must still name that one GPU.
        self._uuids = uuids

    def wait(self, timeout_s: float) -> XidEvent | None:
        nv = self._pynvml
        try:
            data = nv.nvmlEventSetWait(self._set, int(timeout_s * 1000))
        except nv.NVMLError as e:
            if e.value == nv.NVML_ERROR_TIMEOUT:
                return None
            raise
        if data.eventType != nv.nvmlEventTypeXidCriticalError:
            return None
        key = _handle_key(data.device)
        uuid = self._uuids.get(key) if key is not None else None
        if uuid is None:
            try:
                uuid = _text(nv.nvmlDeviceGetUUID(data.device))
            except nv.NVMLError:
                uuid = None
        return XidEvent(uuid=uuid, xid=int(data.eventData))

    def close(self) -> None:
        try:
            self._pynvml.nvmlEventSetFree(self._set)
        except self._pynvml.NVMLError:
            pass


class PyNvml:
    """``Nvml`` over nvidia-ml-py. Thread-safe: NVML itself is, and init/shutdown are locked."""

    def __init__(self, sysfs: str = "/sys/bus/pci/devices", module: Any = None) -> None:
        if module is None:
            import pynvml  # imported here so this file loads (and FakeNvml works) without it

            module = pynvml
        self._nv = module
        self._sysfs = Path(sysfs)
        self._lock = threading.Lock()
        self._remote_cache: dict[int, dict[str, int]] = {}
        self._bus_cache: set[str] | None = None

    def init(self) -> None:
        nv = self._nv
        no_gpu_codes = {nv.NVML_ERROR_LIBRARY_NOT_FOUND, nv.NVML_ERROR_DRIVER_NOT_LOADED}
        with self._lock:
            try:
                nv.nvmlInit()
            except nv.NVMLError as e:
                if e.value in no_gpu_codes:
                    raise NoGPUsError(f"NVML unavailable: {e}") from e
                raise
            except OSError as e:  # a broken libnvidia-ml.so also means "no usable GPUs here"
                raise NoGPUsError(f"NVML unavailable: {e}") from e

    def shutdown(self) -> None:
        with self._lock:
            try:
                self._nv.nvmlShutdown()
            except self._nv.NVMLError:
                pass

    def device_count(self) -> int:
        return int(self._nv.nvmlDeviceGetCount())

    def _handle(self, index: int) -> Any:
        nv = self._nv
        try:
            return nv.nvmlDeviceGetHandleByIndex(index)
        except nv.NVMLError as e:
            raise DeviceGoneError(f"GPU {index}: {e}") from e

    def device(self, index: int) -> GpuInfo:
        nv = self._nv
        h = self._handle(index)
        try:
            major, minor_cc = nv.nvmlDeviceGetCudaComputeCapability(h)
            bus_id = _text(nv.nvmlDeviceGetPciInfo(h).busId)
            try:
                mig = nv.nvmlDeviceGetMigMode(h)[0] == nv.NVML_DEVICE_MIG_ENABLE
            except nv.NVMLError:  # pre-Ampere GPUs: NOT_SUPPORTED
                mig = False
            return GpuInfo(
                index=index,
                uuid=_text(nv.nvmlDeviceGetUUID(h)),
                name=_text(nv.nvmlDeviceGetName(h)),
                memory_bytes=int(nv.nvmlDeviceGetMemoryInfo(h).total),
                compute_capability=f"{major}.{minor_cc}",
                pci_bus_id=bus_id,
                mig_enabled=mig,
                minor=int(nv.nvmlDeviceGetMinorNumber(h)),
                numa_node=self._numa_node(bus_id),
            )
        except nv.NVMLError as e:
            raise DeviceGoneError(f"GPU {index}: {e}") from e

    def _numa_node(self, bus_id: str) -> int | None:
        # sysfs spells the bus id with a 4-digit domain in lower case; NVML uses 8 digits.
        short = bus_id.lower()[-12:]
        try:
            node = int((self._sysfs / short / "numa_node").read_text().strip())
        except (OSError, ValueError):
            return None
        return node if node >= 0 else None

    def _remotes(self, index: int) -> dict[str, int]:
        """Active NVLink lanes of one GPU, counted per remote PCI bus id (a GPU or an NVSwitch)."""
        if index in self._remote_cache:
            return self._remote_cache[index]
        nv = self._nv
        h = self._handle(index)
        remotes: dict[str, int] = {}
        for link in range(nv.NVML_NVLINK_MAX_LINKS):
            try:
                if nv.nvmlDeviceGetNvLinkState(h, link) != nv.NVML_FEATURE_ENABLED:
                    continue
                remote = _text(nv.nvmlDeviceGetNvLinkRemotePciInfo(h, link).busId).lower()
            except nv.NVMLError:
                break  # NOT_SUPPORTED / INVALID_ARGUMENT past the last link
            remotes[remote] = remotes.get(remote, 0) + 1
        self._remote_cache[index] = remotes
        return remotes

    def topology(self, a: int, b: int) -> PairTopology:
        nv = self._nv
        ra, rb = self._remotes(a), self._remotes(b)
        bus_b = self.device(b).pci_bus_id.lower()
        direct = ra.get(bus_b, 0)
        # Behind NVSwitches the remote is the switch, shared by every GPU of the fabric; a
        # remote that is itself a GPU (a third one both link to) does not join a and b.
        switched = sum(min(n, rb[r]) for r, n in ra.items() if r in rb and r not in self._gpu_buses())
        try:
            level = int(nv.nvmlDeviceGetTopologyCommonAncestor(self._handle(a), self._handle(b)))
        except nv.NVMLError:
            level = TOPOLOGY_SYSTEM
        return PairTopology(nvlinks=direct + switched, ancestor=level)

    def _gpu_buses(self) -> set[str]:
        if self._bus_cache is None:
            buses = set()
            for i in range(self.device_count()):
                try:
                    buses.add(_text(self._nv.nvmlDeviceGetPciInfo(self._handle(i)).busId).lower())
                except (DeviceGoneError, self._nv.NVMLError):
                    continue
            self._bus_cache = buses
        return self._bus_cache

    def event_set(self, indices: list[int]) -> EventSet:
        nv = self._nv
        try:
            es = nv.nvmlEventSetCreate()
        except nv.NVMLError as e:
            raise EventsUnsupportedError(str(e)) from e
        uuids: dict[int, str] = {}
        try:
            for i in indices:
                h = self._handle(i)
                nv.nvmlDeviceRegisterEvents(h, nv.nvmlEventTypeXidCriticalError, es)
                key = _handle_key(h)
                if key is not None:
                    uuids[key] = _text(nv.nvmlDeviceGetUUID(h))
        except (nv.NVMLError, DeviceGoneError) as e:  # a lost GPU cannot register: poll instead
            nv.nvmlEventSetFree(es)
            raise EventsUnsupportedError(str(e)) from e
        return _PyNvmlEventSet(nv, es, uuids)

    def probe(self, uuid: str) -> bool:
        nv = self._nv
        try:
            h = nv.nvmlDeviceGetHandleByUUID(uuid)
            nv.nvmlDeviceGetMemoryInfo(h)  # any real query: a lost GPU fails with GPU_IS_LOST
            return True
        except nv.NVMLError:
            return False

    def utilization(self, index: int) -> GpuUtilization:
        nv = self._nv
        h = self._handle(index)

        def ask(call: Any) -> Any:
            try:
                return call(h)
            except nv.NVMLError as e:
                # Some boards (GeForce, some vGPU profiles) do not report one or the other:
                # that figure is unknown, the GPU is fine.
                if e.value == nv.NVML_ERROR_NOT_SUPPORTED:
                    return None
                raise DeviceGoneError(f"GPU {index}: {e}") from e

        rates, memory = ask(nv.nvmlDeviceGetUtilizationRates), ask(nv.nvmlDeviceGetMemoryInfo)
        return GpuUtilization(
            gpu_percent=int(rates.gpu) if rates is not None else None,
            memory_used_bytes=int(memory.used) if memory is not None else None,
            memory_total_bytes=int(memory.total) if memory is not None else None,
        )
