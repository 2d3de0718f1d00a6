"""cgroup v1 folders of kray's containers: paths, usage and OOM counters, and removal.

crun/runc create the container's leaf folder from the bundle's `cgroupsPath` and delete only that
leaf; the parents (`kray/<pod>`) are ours to remove once a pod's containers are gone.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# The v1 hierarchies runc/crun put a container in. runc also makes folders in the name=systemd
# hierarchy and the (hybrid) cgroup2 mount at "unified"; we never read those, only remove them.
CONTROLLERS = (
    "memory",
    "cpu",
    "cpuacct",
    "cpuset",
    "pids",
    "devices",
    "freezer",
    "blkio",
    "systemd",
    "unified",
)


@dataclass
class MemoryStats:
    usage_bytes: int
    max_usage_bytes: int
    limit_bytes: int
    failcnt: int
    oom_kills: int
    under_oom: bool


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return 0


class CgroupV1:
    """A cgroup path (e.g. "/kray/pod-a/ctr-1") across the v1 controllers mounted at `root`."""

    def __init__(self, path: str, root: Path = CGROUP_ROOT) -> None:
        self.path = "/" + path.strip("/")
        self.root = root

    def dir(self, controller: str) -> Path:
        return self.root / controller / self.path.lstrip("/")

    def dirs(self) -> list[Path]:
        return [self.dir(c) for c in CONTROLLERS if (self.root / c).is_dir()]

    def exists(self) -> bool:
        return any(d.is_dir() for d in self.dirs())

    def pids(self) -> list[int]:
        procs = self.dir("pids") / "cgroup.procs"
        if not procs.exists():
            procs = self.dir("memory") / "cgroup.procs"
        try:
            return [int(x) for x in procs.read_text().split()]
        except OSError:
            return []

    def memory(self) -> MemoryStats:
        d = self.dir("memory")
        oom_kills = 0
        under_oom = False
        try:
            for line in (d / "memory.oom_control").read_text().splitlines():
                key, _, val = line.partition(" ")
                if key == "oom_kill":
                    oom_kills = int(val)
                elif key == "under_oom":
                    under_oom = val.strip() == "1"
        except OSError:
            pass
        return MemoryStats(
            usage_bytes=_read_int(d / "memory.usage_in_bytes"),
            max_usage_bytes=_read_int(d / "memory.max_usage_in_bytes"),
            limit_bytes=_read_int(d / "memory.limit_in_bytes"),
            failcnt=_read_int(d / "memory.failcnt"),
            oom_kills=oom_kills,
            under_oom=under_oom,
        )

    def cpu_usage_ns(self) -> int:
        return _read_int(self.dir("cpuacct") / "cpuacct.usage")

    def ensure(self) -> None:
        """Create the folders (used for pod-level parents that carry pod limits)."""
        for d in self.dirs():
            d.mkdir(parents=True, exist_ok=True)

    def remove(self, timeout: float = 5.0, parents_up_to: str | None = None) -> bool:
        """Remove this folder in every controller, then each empty parent below `parents_up_to`
        (e.g. "/kray" removes "/kray/pod" after "/kray/pod/ctr"). A folder whose processes are
        still exiting answers EBUSY for a moment, so we retry until `timeout`. Returns True when
        nothing is left."""
        chain = [self.path]
        if parents_up_to is not None:
            stop = "/" + parents_up_to.strip("/")
            p = os.path.dirname(self.path)
            while p.startswith(stop + "/"):
                chain.append(p)
                p = os.path.dirname(p)
        deadline = time.monotonic() + timeout
        ok = True
        for i, path in enumerate(chain):
            only_if_empty = i > 0
            for controller in CONTROLLERS:
                d = self.root / controller / path.lstrip("/")
                if not _rmdir_retry(d, deadline, only_if_empty):
                    ok = False
        return ok


def _rmdir_retry(d: Path, deadline: float, only_if_empty: bool) -> bool:
    while True:
        try:
            # Children first: a leftover nested folder (runc's sub-cgroups) blocks rmdir.
            if d.is_dir() and not only_if_empty:
                for child in sorted(d.iterdir(), reverse=True):
                    if child.is_dir():
                        _rmdir_retry(child, deadline, False)
            os.rmdir(d)
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if only_if_empty and exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                return True  # a sibling container still lives in the parent: not ours to remove
            if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline:
                return False
            time.sleep(0.02)
