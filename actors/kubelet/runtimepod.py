"""What the runtime holds for one Pod: its sandboxes and containers, found by the pod-uid label
(so a restarted kubelet sees exactly what its predecessor started)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import grpc

from kray.runtime.cri import api_pb2 as pb

from .ports import CONTAINER_KIND, CONTAINER_NAME, POD_UID, CriPort


@dataclass
class RuntimePod:
    uid: str
    sandboxes: list[pb.PodSandbox] = field(default_factory=list)  # newest attempt first
    # container name -> its instances, oldest attempt first
    containers: dict[str, list[pb.ContainerStatus]] = field(default_factory=dict)
    init_names: set[str] = field(default_factory=set)

    def ready_sandbox(self) -> pb.PodSandbox | None:
        return next((s for s in self.sandboxes if s.state == pb.SANDBOX_READY), None)

    def latest(self, name: str) -> pb.ContainerStatus | None:
        items = self.containers.get(name)
        return items[-1] if items else None

    def previous(self, name: str) -> pb.ContainerStatus | None:
        items = self.containers.get(name) or []
        return items[-2] if len(items) >= 2 else None

    def running(self) -> list[pb.ContainerStatus]:
        return [c for items in self.containers.values() for c in items if c.state == pb.CONTAINER_RUNNING]

    def all(self) -> list[pb.ContainerStatus]:
        return [c for items in self.containers.values() for c in items]

    def empty(self) -> bool:
        return not self.sandboxes and not self.containers

    def next_attempt(self, name: str) -> int:
        last = self.latest(name)
        return last.metadata.attempt + 1 if last is not None else 0


async def inspect(cri: CriPort, uid: str) -> RuntimePod:
    sel = {POD_UID: uid}
    sandboxes = await cri.list_pod_sandbox(pb.PodSandboxFilter(label_selector=sel))
    rp = RuntimePod(uid, sorted(sandboxes, key=lambda s: (s.metadata.attempt, s.created_at), reverse=True))
    by_name: dict[str, list[pb.ContainerStatus]] = defaultdict(list)
    for c in await cri.list_containers(pb.ContainerFilter(label_selector=sel)):
        try:
            st = await cri.container_status(c.id)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                continue  # removed between the list and the status: gone
            raise
        name = c.labels.get(CONTAINER_NAME, c.metadata.name)
        by_name[name].append(st)
        if c.labels.get(CONTAINER_KIND) == "init":
            rp.init_names.add(name)
    rp.containers = {n: sorted(v, key=lambda s: (s.metadata.attempt, s.created_at)) for n, v in by_name.items()}
    return rp


async def runtime_pod_uids(cri: CriPort) -> set[str]:
    """Every pod uid the runtime holds anything for (sandboxes or containers)."""
    uids = {s.labels.get(POD_UID, "") for s in await cri.list_pod_sandbox()}
    uids |= {c.labels.get(POD_UID, "") for c in await cri.list_containers()}
    uids.discard("")
    return uids


async def snapshot(cri: CriPort) -> dict[str, tuple[tuple[str, int], ...]]:
    """pod uid -> ((id, state), ...) of its sandboxes and containers: what the PLEG compares."""
    out: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for s in await cri.list_pod_sandbox():
        out[s.labels.get(POD_UID, "")].append((s.id, int(s.state)))
    for c in await cri.list_containers():
        out[c.labels.get(POD_UID, "")].append((c.id, int(c.state)))
    out.pop("", None)
    return {k: tuple(sorted(v)) for k, v in out.items()}
