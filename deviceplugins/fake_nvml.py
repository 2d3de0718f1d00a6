"""FakeNvml: the ``Nvml`` port in memory, with builders for common boxes and injectable faults.

Semantics follow the real library where tests can observe them: ``init`` fails the way a host
without a driver does, a removed device raises ``DeviceGoneError`` on every query and fails
``probe``, XID events reach every event set registered for that device, in order, waking
a waiter blocked in ``wait``, and an idle GPU reports 0% busy and no memory used until a test
calls ``set_utilization``.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field, replace

from .nvml import (
    TOPOLOGY_NODE,
    TOPOLOGY_SINGLE,
    TOPOLOGY_SYSTEM,
    DeviceGoneError,
    EventsUnsupportedError,
    GpuInfo,
    GpuUtilization,
    NoGPUsError,
    PairTopology,
    XidEvent,
)

H100_MEMORY = 80 * 1024**3


def fake_uuid(index: int) -> str:
    return f"GPU-{index:08x}-0000-4000-8000-{index:012x}"


def make_gpus(
    n: int, model: str = "NVIDIA H100 80GB HBM3", memory: int = H100_MEMORY, cc: str = "9.0"
) -> list[GpuInfo]:
    half = max(1, n // 2)
    return [
        GpuInfo(
            index=i,
            uuid=fake_uuid(i),
            name=model,
            memory_bytes=memory,
            compute_capability=cc,
            pci_bus_id=f"00000000:{0x18 + i * 0x10:02X}:00.0",
            mig_enabled=False,
            minor=i,
            numa_node=0 if i < half else 1,
        )
        for i in range(n)
    ]


@dataclass
class _FakeEventSet:
    owner: FakeNvml
    uuids: frozenset[str]
    queue: deque[XidEvent] = field(default_factory=deque)
    closed: bool = False

    def wait(self, timeout_s: float) -> XidEvent | None:
        cond = self.owner._cond
        with cond:
            cond.wait_for(lambda: bool(self.queue) or self.closed, timeout=max(0.0, timeout_s))
            return self.queue.popleft() if self.queue else None

    def close(self) -> None:
        with self.owner._cond:
            self.closed = True
            if self in self.owner._event_sets:
                self.owner._event_sets.remove(self)
            self.owner._cond.notify_all()


class FakeNvml:
    def __init__(
        self,
        gpus: list[GpuInfo],
        nvlinks: dict[tuple[int, int], int] | None = None,
        ancestor: dict[tuple[int, int], int] | None = None,
        default_ancestor: int = TOPOLOGY_SYSTEM,
        events_supported: bool = True,
    ) -> None:
        self.gpus = list(gpus)
        # Keys are unordered pairs; both orders are looked up.
        self.nvlinks = dict(nvlinks or {})
        self.ancestor = dict(ancestor or {})
        self.default_ancestor = default_ancestor
        self.events_supported = events_supported
        self.init_error: str | None = None
        self.initialized = False
        self.gone: set[str] = set()  # uuids that no longer answer
        self.unprobeable: set[str] = set()  # uuids whose probe fails (still listed)
        # uuid -> (GPU %, memory used); None for a figure the device does not report (NOT_SUPPORTED).
        self.usage: dict[str, tuple[int | None, int | None]] = {}
        self._cond = threading.Condition()
        self._event_sets: list[_FakeEventSet] = []

    # -- builders -------------------------------------------------------------------------------

    @classmethod
    def dgx(cls, n: int = 8, island: int = 4, lanes: int = 6, events_supported: bool = True) -> FakeNvml:
        """n GPUs in NVLink islands of ``island`` (all-to-all inside), islands joined by PCIe/SMP."""
        links = {(a, b): lanes for a in range(n) for b in range(a + 1, n) if a // island == b // island}
        anc = {
            (a, b): TOPOLOGY_NODE if a // island == b // island else TOPOLOGY_SYSTEM
            for a in range(n)
            for b in range(a + 1, n)
        }
        return cls(make_gpus(n), nvlinks=links, ancestor=anc, events_supported=events_supported)

    @classmethod
    def pcie(cls, n: int, events_supported: bool = True) -> FakeNvml:
        """n GPUs without NVLink, pairs sharing a PCIe switch (0-1, 2-3, ...)."""
        anc = {
            (a, b): TOPOLOGY_SINGLE if a // 2 == b // 2 else TOPOLOGY_NODE for a in range(n) for b in range(a + 1, n)
        }
        return cls(
            make_gpus(n, model="NVIDIA L4", memory=24 * 1024**3, cc="8.9"),
            ancestor=anc,
            events_supported=events_supported,
        )

    # -- faults ---------------------------------------------------------------------------------

    def fail_init(self, reason: str = "NVML Shared Library Not Found") -> None:
        self.init_error = reason

    def inject_xid(self, device: int | str | None, xid: int) -> None:
        """Deliver an XID event (``device`` None: one NVML could not attribute) to every waiter."""
        uuid = self._uuid(device) if device is not None else None
        with self._cond:
            for es in self._event_sets:
                if uuid is None or uuid in es.uuids:
                    es.queue.append(XidEvent(uuid=uuid, xid=xid))
            self._cond.notify_all()

    def remove_device(self, device: int | str) -> None:
        self.gone.add(self._uuid(device))

    def restore_device(self, device: int | str) -> None:
        uuid = self._uuid(device)
        self.gone.discard(uuid)
        self.unprobeable.discard(uuid)

    def set_probe_failing(self, device: int | str, failing: bool = True) -> None:
        uuid = self._uuid(device)
        (self.unprobeable.add if failing else self.unprobeable.discard)(uuid)

    def set_mig(self, device: int | str, enabled: bool = True) -> None:
        uuid = self._uuid(device)
        self.gpus = [replace(g, mig_enabled=enabled) if g.uuid == uuid else g for g in self.gpus]

    def set_utilization(
        self, device: int | str, gpu_percent: int | None = 0, memory_used_bytes: int | None = 0
    ) -> None:
        """What the GPU reports from now on; None: that figure is NOT_SUPPORTED on it.
        Refuses what a real GPU cannot report (over 100%, more memory used than it has)."""
        uuid = self._uuid(device)
        total = next(g.memory_bytes for g in self.gpus if g.uuid == uuid)
        if gpu_percent is not None and not 0 <= gpu_percent <= 100:
            raise ValueError(f"gpu_percent must be 0-100, got {gpu_percent}")
        if memory_used_bytes is not None and not 0 <= memory_used_bytes <= total:
            raise ValueError(f"memory_used_bytes must be 0-{total}, got {memory_used_bytes}")
        with self._cond:  # the plugin's gRPC threads read it while a test writes it
            self.usage[uuid] = (gpu_percent, memory_used_bytes)

    def _uuid(self, device: int | str) -> str:
        if isinstance(device, int):
            return self.gpus[device].uuid
        return device

    # -- the Nvml port --------------------------------------------------------------------------

    def init(self) -> None:
        if self.init_error is not None:
            raise NoGPUsError(self.init_error)
        self.initialized = True

    def shutdown(self) -> None:
        self.initialized = False

    def device_count(self) -> int:
        self._check_init()
        return len(self.gpus)

    def device(self, index: int) -> GpuInfo:
        self._check_init()
        gpu = self.gpus[index]
        if gpu.uuid in self.gone:
            raise DeviceGoneError(f"GPU {index} ({gpu.uuid}) is lost")
        return gpu

    def topology(self, a: int, b: int) -> PairTopology:
        key = (min(a, b), max(a, b))
        return PairTopology(nvlinks=self.nvlinks.get(key, 0), ancestor=self.ancestor.get(key, self.default_ancestor))

    def event_set(self, indices: list[int]) -> _FakeEventSet:
        if not self.events_supported:
            raise EventsUnsupportedError("XID events are not supported on this fake")
        lost = [i for i in indices if self.gpus[i].uuid in self.gone]
        if lost:  # as NVML: a GPU that fell off the bus has no handle to register
            raise EventsUnsupportedError(f"GPU {lost[0]}: GPU is lost")
        es = _FakeEventSet(self, frozenset(self.gpus[i].uuid for i in indices))
        with self._cond:
            self._event_sets.append(es)
        return es

    def probe(self, uuid: str) -> bool:
        return self.initialized and uuid not in self.gone and uuid not in self.unprobeable

    def utilization(self, index: int) -> GpuUtilization:
        gpu = self.device(index)  # not started, or gone: the same errors as any other query
        with self._cond:
            busy, used = self.usage.get(gpu.uuid, (0, 0))
        total = gpu.memory_bytes if used is not None else None  # NVML reports both or neither
        return GpuUtilization(gpu_percent=busy, memory_used_bytes=used, memory_total_bytes=total)

    def _check_init(self) -> None:
        if not self.initialized:
            raise RuntimeError("NVML used before init()")  # the real library says Uninitialized
