"""An in-memory device manager with the real allocation rules, for tests of the kubelet core:
the kubelet's DevicePort without device plugins, gRPC or a checkpoint. Kept apart from the fake
CRI runtime in fakes.py, which re-exports it (tests import both from there).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from kray.deviceplugins.api.usage import DeviceUsage


@dataclass
class FakeDevices:
    """A device manager over fixed device ids per resource, with the real allocation rules, and
    the usage a DeviceUsage-serving plugin would report (``set_usage``; none until then)."""

    devices: dict[str, list[str]]
    allocations: dict[tuple[str, str], dict[str, list[str]]] = field(default_factory=dict)
    gpu_usage: dict[str, DeviceUsage] = field(default_factory=dict)  # by physical id (a GPU's UUID)

    def capacity(self) -> dict[str, int]:
        return {r: len(ids) for r, ids in self.devices.items()}

    def allocatable(self) -> dict[str, int]:
        return self.capacity()

    def allocate(
        self,
        pod_uid: str,
        container: str,
        resource: str,
        count: int,
        requested: list[str] | None = None,
        init_containers: Collection[str] = (),
    ) -> Any:
        from kray.deviceplugins.checkpoint import ContainerDevices

        held = self.allocations.setdefault((pod_uid, container), {})
        if resource not in held:
            used = {d for per in self.allocations.values() for d in per.get(resource, [])}
            mine = [
                (c in init_containers, per.get(resource, []))
                for (u, c), per in self.allocations.items()
                if u == pod_uid
            ]
            reuse = {d for init, ids in mine if init for d in ids} - {d for init, ids in mine if not init for d in ids}
            free = sorted(reuse) + [d for d in self.devices.get(resource, []) if d not in used]
            if len(free) < count:
                from kray.deviceplugins.manager import InsufficientDevicesError

                raise InsufficientDevicesError(f"insufficient {resource}: requested {count}, {len(free)} free")
            # As the real manager: the scheduler's choice when it is all free, else the first free.
            ok = requested is not None and len(requested) == count and set(requested) <= set(free)
            held[resource] = list(requested) if ok and requested is not None else free[:count]
        ids = held[resource]
        return ContainerDevices(resource, ids, envs={"NVIDIA_VISIBLE_DEVICES": ",".join(ids)})

    def free_pod(self, pod_uid: str) -> list[str]:
        keys = [k for k in self.allocations if k[0] == pod_uid]
        return [d for k in keys for ids in self.allocations.pop(k).values() for d in ids]

    def retain_pods(self, active: set[str]) -> list[str]:
        out: list[str] = []
        for uid in {k[0] for k in self.allocations} - active:
            out += self.free_pod(uid)
        return out

    def set_usage(
        self,
        device: str,
        gpu_percent: int | None,
        memory_used_bytes: int | None,
        memory_total_bytes: int = 80 * 1024**3,
        model: str = "NVIDIA H100 80GB HBM3",
    ) -> None:
        """What ``device``'s plugin reports from now on; ``device``: the physical id, shared by
        its time-sliced ``<device>::<i>`` ids. None: a figure the device cannot tell."""
        from kray.deviceplugins.allocation import base_uuid

        owner = [r for r, ids in self.devices.items() if any(base_uuid(d) == device for d in ids)]
        if not owner:
            raise KeyError(f"no resource advertises device {device}")
        if gpu_percent is not None and not 0 <= gpu_percent <= 100:
            raise ValueError(f"gpu_percent must be 0-100, got {gpu_percent}")
        if memory_used_bytes is not None and not 0 <= memory_used_bytes <= memory_total_bytes:
            raise ValueError(f"memory_used_bytes must be 0-{memory_total_bytes}, got {memory_used_bytes}")
        self.gpu_usage[device] = DeviceUsage(
            device, owner[0], model, gpu_percent, memory_used_bytes, memory_total_bytes
        )

    def usage(self) -> dict[str, DeviceUsage]:
        from kray.deviceplugins.allocation import base_uuid

        aliases = {d: base_uuid(d) for ids in self.devices.values() for d in ids}
        return {**self.gpu_usage, **{d: self.gpu_usage[b] for d, b in aliases.items() if b in self.gpu_usage}}

    def container_usage(self) -> dict[tuple[str, str], list[DeviceUsage]]:
        usage = self.usage()
        out: dict[tuple[str, str], list[DeviceUsage]] = {}
        for key, per in self.allocations.items():
            held = {u.id: u for u in (usage.get(d) for ids in per.values() for d in ids) if u is not None}
            if held:
                out[key] = list(held.values())
        return out
