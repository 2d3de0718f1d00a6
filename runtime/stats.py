"""Containers' CPU and memory usage, as CRI's ListContainerStats reports them.

From the container's cgroup (v1: ``cpuacct.usage``; memory ``usage_in_bytes`` minus the
inactive file cache, which is the "working set" the kubelet and ``kubectl top`` show, as
cAdvisor computes it). A container of the process runtime has no cgroup of its own: its main
process's ``/proc`` counters stand in (children not counted). CPU comes as cumulative core
nanoseconds; where an earlier sample of the same container exists, also as a rate (nano cores),
the way containerd reports ``usage_nano_cores``.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from kray.runtime.cgroups import CgroupV1

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Usage:
    timestamp_ns: int
    cpu_ns: int  # cumulative core nanoseconds
    nano_cores: int | None  # the rate since the previous sample, when there was one
    working_set_bytes: int
    usage_bytes: int
    rss_bytes: int


def _memory_stat(cg: CgroupV1) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in (cg.dir("memory") / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                out[key] = int(value)
    except OSError:
        pass
    return out


def _from_cgroup(cg: CgroupV1) -> tuple[int, int, int, int]:
    """(cpu ns, working set, usage, rss) of a cgroup v1."""
    usage = cg.memory().usage_bytes
    stat = _memory_stat(cg)
    inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
    working_set = max(usage - inactive, 0)
    return cg.cpu_usage_ns(), working_set, usage, stat.get("total_rss", stat.get("rss", 0))


def _from_proc(pid: int) -> tuple[int, int, int, int]:
    """(cpu ns, working set, usage, rss) of one process: the process runtime's stand-in."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu_ns = (int(fields[11]) + int(fields[12])) * 1_000_000_000 // _TICKS  # utime + stime
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0, 0, 0, 0
    return cpu_ns, rss, rss, rss


class StatsSampler:
    """Reads usage and remembers each container's last sample, for CPU rates. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, tuple[int, int]] = {}  # cid -> (timestamp ns, cpu ns)

    def sample(self, cid: str, cgroup_path: str | None, pid: int) -> Usage:
        cg = CgroupV1(cgroup_path) if cgroup_path else None
        if cg is not None and cg.dir("cpuacct").is_dir():
            cpu_ns, working_set, usage, rss = _from_cgroup(cg)
        else:
            cpu_ns, working_set, usage, rss = _from_proc(pid) if pid > 0 else (0, 0, 0, 0)
        now = time.time_ns()
        with self._lock:
            prev = self._last.get(cid)
            self._last[cid] = (now, cpu_ns)
        nano_cores = None
        if prev is not None and now > prev[0] and cpu_ns >= prev[1]:
            nano_cores = (cpu_ns - prev[1]) * 1_000_000_000 // (now - prev[0])
        return Usage(now, cpu_ns, nano_cores, working_set, usage, rss)

    def forget(self, keep: set[str]) -> None:
        """Drop the samples of containers that are gone."""
        with self._lock:
            for cid in set(self._last) - keep:
                del self._last[cid]
