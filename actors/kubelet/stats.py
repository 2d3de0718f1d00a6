"""The kubelet's ``/stats/summary``: node and pod usage in the shape of Kubernetes' Summary API.

Containers' figures come from the runtime (CRI ListContainerStats, read from their cgroups);
the node's from the host (``/proc/stat`` for CPU, ``/proc/meminfo`` for memory: total minus
available is the node's working set). CPU rates need two samples: the runtime and this module
each keep the last one, and a first call samples twice, a moment apart, so that even the first
answer has rates. What the API server's ``metrics.k8s.io`` (and so ``kray top``) serves.

GPUs: a container holding devices whose plugin serves kray's DeviceUsage extension gets the
Summary API's ``accelerators`` list (make, model, id, memoryTotal, memoryUsed, dutyCycle), read
from the device manager; the node gets the same list for all its devices (a kray extension: the
Summary API's NodeStats has none). A figure the device cannot tell is left out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kray.deviceplugins.api.usage import DeviceUsage
from kray.runtime.cri import api_pb2 as pb

from .ports import CONTAINER_NAME, POD_NAME, POD_NAMESPACE, POD_UID, DeviceUsagePort

if TYPE_CHECKING:
    from .kubelet import Kubelet

log = logging.getLogger(__name__)

_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
FIRST_SAMPLE_GAP_S = 0.5


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def host_cpu_ns(stat: str | None = None) -> int:
    """Busy CPU time of the whole host, all cores, in nanoseconds (idle and iowait excluded)."""
    text = stat if stat is not None else Path("/proc/stat").read_text()
    fields = [int(x) for x in text.splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    # guest time is already counted in user/nice: only the first 8 fields add up.
    return (sum(fields[:8]) - idle) * _TICK_NS


def host_memory(meminfo: str | None = None) -> tuple[int, int]:
    """(working set, available) bytes of the host."""
    text = meminfo if meminfo is not None else Path("/proc/meminfo").read_text()
    kb = {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in text.splitlines()) if v.strip()}
    total, available = kb.get("MemTotal", 0) * 1024, kb.get("MemAvailable", kb.get("MemFree", 0)) * 1024
    return max(total - available, 0), available


@dataclass
class _Sample:
    at_ns: int
    cpu_ns: int


class StatsProvider:
    """Builds summaries; remembers the node's last CPU sample for the rate."""

    def __init__(self, kubelet: Kubelet) -> None:
        self.kubelet = kubelet
        self._node_last: _Sample | None = None

    def _node_cpu(self) -> tuple[int, int, int | None, float]:
        """(now, cumulative CPU ns, rate in nano cores or None, seconds since the last sample)."""
        now, cpu = time.time_ns(), host_cpu_ns()
        prev, self._node_last = self._node_last, _Sample(now, cpu)
        if prev is None or now <= prev.at_ns:
            return now, cpu, None, 0.0
        return now, cpu, (cpu - prev.cpu_ns) * 1_000_000_000 // (now - prev.at_ns), (now - prev.at_ns) / 1e9

    async def summary(self) -> dict[str, Any]:
        stats = await self.kubelet.cri.list_container_stats()
        now, cpu, rate, window = self._node_cpu()
        if rate is None or any(not s.cpu.HasField("usage_nano_cores") for s in stats):
            await asyncio.sleep(FIRST_SAMPLE_GAP_S)  # a first call: a second sample gives rates
            stats = await self.kubelet.cri.list_container_stats()
            now, cpu, rate, window = self._node_cpu()
        working_set, available = host_memory()
        node: dict[str, Any] = {
            "nodeName": self.kubelet.node_name,
            "cpu": {"time": _iso(now), "usageNanoCores": rate or 0, "usageCoreNanoSeconds": cpu},
            "memory": {"time": _iso(now), "workingSetBytes": working_set, "availableBytes": available},
        }
        devices, held = await self._device_usage()
        if devices:
            node["accelerators"] = [_accelerator(u) for u in sorted(devices, key=lambda u: u.id)]
        # "window" (not in Kubernetes' Summary API): what the rates are averaged over.
        return {"node": node, "pods": _pods(stats, held), "window": f"{round(window, 3)}s"}

    async def _device_usage(self) -> tuple[list[DeviceUsage], dict[tuple[str, str], list[DeviceUsage]]]:
        """(every device once, (pod uid, container) -> its devices); empty without a device
        manager that knows usage, or when asking it fails (CPU and memory still count)."""
        devices = self.kubelet.devices
        if not isinstance(devices, DeviceUsagePort):
            return [], {}
        try:
            by_id, held = await asyncio.to_thread(lambda: (devices.usage(), devices.container_usage()))
        except Exception as e:
            log.warning("no device usage for the summary: %r", e)
            return [], {}
        return list({u.id: u for u in by_id.values()}.values()), held


def _accelerator(u: DeviceUsage) -> dict[str, Any]:
    """One device in the Summary API's AcceleratorStats shape (dutyCycle: percent busy)."""
    out: dict[str, Any] = {"make": u.make, "model": u.model, "id": u.id}
    figures = {"memoryTotal": u.memory_total_bytes, "memoryUsed": u.memory_used_bytes, "dutyCycle": u.gpu_percent}
    out.update({k: v for k, v in figures.items() if v is not None})
    return out


def _container(s: pb.ContainerStats, devices: list[DeviceUsage]) -> dict[str, Any]:
    out = {
        "name": s.attributes.labels.get(CONTAINER_NAME, s.attributes.metadata.name),
        "cpu": {
            "time": _iso(s.cpu.timestamp),
            "usageNanoCores": s.cpu.usage_nano_cores.value,
            "usageCoreNanoSeconds": s.cpu.usage_core_nano_seconds.value,
        },
        "memory": {
            "time": _iso(s.memory.timestamp),
            "workingSetBytes": s.memory.working_set_bytes.value,
            "usageBytes": s.memory.usage_bytes.value,
            "rssBytes": s.memory.rss_bytes.value,
        },
    }
    if devices:
        out["accelerators"] = [_accelerator(u) for u in sorted(devices, key=lambda u: u.id)]
    return out


def _pods(
    stats: list[pb.ContainerStats], held: dict[tuple[str, str], list[DeviceUsage]] | None = None
) -> list[dict[str, Any]]:
    held = held or {}
    pods: dict[str, dict[str, Any]] = {}
    for s in stats:
        labels = s.attributes.labels
        uid = labels.get(POD_UID)
        if not uid:
            continue  # not a pod's container (nothing else runs there, but be sure)
        pod = pods.setdefault(uid, {
            "podRef": {"name": labels.get(POD_NAME, ""), "namespace": labels.get(POD_NAMESPACE, ""), "uid": uid},
            "containers": [],
        })  # fmt: skip
        name = labels.get(CONTAINER_NAME, s.attributes.metadata.name)
        pod["containers"].append(_container(s, held.get((uid, name), [])))
    for pod in pods.values():
        containers = pod["containers"]
        pod["cpu"] = {"usageNanoCores": sum(c["cpu"]["usageNanoCores"] for c in containers)}
        pod["memory"] = {"workingSetBytes": sum(c["memory"]["workingSetBytes"] for c in containers)}
    return sorted(pods.values(), key=lambda p: (p["podRef"]["namespace"], p["podRef"]["name"]))
