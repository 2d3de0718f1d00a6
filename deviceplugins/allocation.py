"""Which GPUs to give a container, and what the container needs to use them.

``preferred_allocation`` answers GetPreferredAllocation: among the free healthy GPUs it picks
the set with the best interconnect (sum of pairwise link scores: NVLink beats one PCIe switch
beats the host bridge beats crossing sockets), breaking ties so that NVLink islands stay whole
for later, larger requests. ``allocate_response`` answers Allocate with the NVIDIA container
env and the device nodes that exist on the host.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .api import pb
from .nvml import (
    TOPOLOGY_HOSTBRIDGE,
    TOPOLOGY_INTERNAL,
    TOPOLOGY_MULTIPLE,
    TOPOLOGY_NODE,
    TOPOLOGY_SINGLE,
    GpuInfo,
    Nvml,
    PairTopology,
)

REPLICA_SEP = "::"
# An annotation on time-sliced allocations: replicas share one GPU with no memory or fault isolation.
SHARING_ANNOTATION = "kray.io/gpu-sharing"
# Beyond this many candidate sets, fall back to a greedy pick (C(16, 8) is 12870).
EXHAUSTIVE_LIMIT = 20000

_ANCESTOR_SCORE = {
    TOPOLOGY_INTERNAL: 60,
    TOPOLOGY_SINGLE: 50,
    TOPOLOGY_MULTIPLE: 40,
    TOPOLOGY_HOSTBRIDGE: 30,
    TOPOLOGY_NODE: 20,
}
_SYSTEM_SCORE = 10
_NVLINK_BASE = 100


def link_score(t: PairTopology) -> int:
    if t.nvlinks > 0:
        return _NVLINK_BASE + t.nvlinks  # more lanes, more bandwidth
    return _ANCESTOR_SCORE.get(t.ancestor, _SYSTEM_SCORE)


def base_uuid(device_id: str) -> str:
    """The GPU behind an advertised id (``<uuid>::<i>`` under time-slicing)."""
    return device_id.split(REPLICA_SEP, 1)[0]


def advertised_ids(gpus: Sequence[GpuInfo], replicas: int = 1) -> list[str]:
    if replicas <= 1:
        return [g.uuid for g in gpus]
    return [f"{g.uuid}{REPLICA_SEP}{i}" for g in gpus for i in range(replicas)]


class Topology:
    """Pairwise link scores between GPUs (by UUID) and the NVLink islands they form."""

    def __init__(self, uuids: Sequence[str], pairs: dict[tuple[str, str], PairTopology]) -> None:
        self.uuids = list(uuids)
        self.pairs = pairs
        self._islands = self._components()

    @classmethod
    def from_nvml(cls, nvml: Nvml, gpus: Sequence[GpuInfo]) -> Topology:
        pairs: dict[tuple[str, str], PairTopology] = {}
        for a, b in itertools.combinations(gpus, 2):
            pairs[(a.uuid, b.uuid)] = nvml.topology(a.index, b.index)
        return cls([g.uuid for g in gpus], pairs)

    def pair(self, a: str, b: str) -> PairTopology:
        t = self.pairs.get((a, b)) or self.pairs.get((b, a))
        return t if t is not None else PairTopology(nvlinks=0, ancestor=50)

    def score(self, a: str, b: str) -> int:
        if a == b:
            return 2 * _NVLINK_BASE  # two replicas of one GPU: the same device
        return link_score(self.pair(a, b))

    def _components(self) -> list[list[str]]:
        seen: set[str] = set()
        islands: list[list[str]] = []
        for start in self.uuids:
            if start in seen:
                continue
            group, todo = [], [start]
            seen.add(start)
            while todo:
                u = todo.pop()
                group.append(u)
                for v in self.uuids:
                    if v not in seen and self.pair(u, v).nvlinks > 0:
                        seen.add(v)
                        todo.append(v)
            islands.append(sorted(group, key=self.uuids.index))
        return islands

    def islands(self) -> list[list[str]]:
        """NVLink-connected groups of GPUs (a GPU without NVLink is an island of one)."""
        return [list(i) for i in self._islands]

    def island_of(self, uuid: str) -> int:
        return next(n for n, isl in enumerate(self._islands) if uuid in isl)


def _set_score(ids: Sequence[str], topo: Topology) -> int:
    return sum(topo.score(base_uuid(a), base_uuid(b)) for a, b in itertools.combinations(ids, 2))


def _leftover(chosen: set[str], available: Sequence[str], topo: Topology) -> int:
    """How concentrated the free GPUs stay: whole free islands score highest."""
    left: dict[int, int] = {}
    for d in available:
        if d not in chosen:
            n = topo.island_of(base_uuid(d))
            left[n] = left.get(n, 0) + 1
    return sum(c * c for c in left.values())


def preferred_allocation(available: Sequence[str], must_include: Sequence[str], size: int, topo: Topology) -> list[str]:
    """The ``size`` ids to prefer: ``must_include`` plus the best-connected of ``available``."""
    must = list(dict.fromkeys(must_include))
    rest = [d for d in dict.fromkeys(available) if d not in set(must)]
    need = size - len(must)
    if need <= 0:
        return must[:size]
    if need >= len(rest):
        return must + rest
    if any(REPLICA_SEP in d for d in rest):
        return must + _spread_replicas(rest, need)
    pool = list(dict.fromkeys([*must, *rest]))
    if math.comb(len(rest), need) <= EXHAUSTIVE_LIMIT:
        best: tuple[int, int] | None = None
        pick: list[str] = []
        for combo in itertools.combinations(rest, need):
            ids = must + list(combo)
            key = (_set_score(ids, topo), _leftover(set(ids), pool, topo))
            if best is None or key > best:
                best, pick = key, ids
        return pick
    # Greedy: grow the set by the device with the best links to what is already chosen.
    chosen = list(must)
    if not chosen:
        chosen.append(rest[0])
    while len(chosen) < size:
        cands = [d for d in rest if d not in chosen]
        chosen.append(
            max(cands, key=lambda d: (sum(topo.score(base_uuid(d), base_uuid(c)) for c in chosen), -cands.index(d)))
        )
    return chosen


def _spread_replicas(rest: Sequence[str], need: int) -> list[str]:
    """Time-sliced ids: take from the GPUs with the most free replicas, one at a time."""
    by_gpu: dict[str, list[str]] = {}
    for d in rest:
        by_gpu.setdefault(base_uuid(d), []).append(d)
    out: list[str] = []
    while len(out) < need:
        gpu = max(by_gpu, key=lambda g: len(by_gpu[g]))
        out.append(by_gpu[gpu].pop(0))
        if not by_gpu[gpu]:
            del by_gpu[gpu]
    return out


# ---------------------------------------------------------------------------------------------
# Allocate


CONTROL_DEVICES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools")


@dataclass(frozen=True)
class DevicePaths:
    """Where the host's device nodes are. On the fake, ``dev_root`` is a temp dir of plain files."""

    dev_root: str = "/dev"
    exists: Callable[[str], bool] = os.path.exists

    def specs(self, minors: Sequence[int]) -> list[pb.DeviceSpec]:
        names = [f"nvidia{m}" for m in minors] + list(CONTROL_DEVICES)
        out = []
        for name in names:
            host = os.path.join(self.dev_root, name)
            if self.exists(host):
                out.append(pb.DeviceSpec(container_path=f"/dev/{name}", host_path=host, permissions="rw"))
        return out


class UnknownDeviceError(ValueError):
    pass


def allocate_response(
    ids: Sequence[str], gpus: Sequence[GpuInfo], paths: DevicePaths, replicas: int = 1
) -> pb.ContainerAllocateResponse:
    by_uuid = {g.uuid: g for g in gpus}
    uuids: list[str] = []
    for d in ids:
        u = base_uuid(d)
        if u not in by_uuid:
            raise UnknownDeviceError(f"unknown device id {d!r}")
        if u not in uuids:
            uuids.append(u)  # two replicas of one GPU still name it once
    visible = ",".join(uuids)
    resp = pb.ContainerAllocateResponse(
        envs={"NVIDIA_VISIBLE_DEVICES": visible, "CUDA_VISIBLE_DEVICES": visible},
        devices=paths.specs([by_uuid[u].minor for u in uuids]),
    )
    if replicas > 1:
        resp.annotations[SHARING_ANNOTATION] = f"time-slicing replicas={replicas} (unisolated)"
    return resp
