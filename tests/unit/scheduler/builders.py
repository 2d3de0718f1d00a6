"""Test builders: nodes and pods with the fields the scheduler reads, in one line each."""

from __future__ import annotations

from typing import Any

from kray.actors.scheduler.fakes import FakeBinder, RecordingReporter
from kray.actors.scheduler.ports import FakeClock
from kray.actors.scheduler.profile import Profile
from kray.actors.scheduler.scheduler import Scheduler
from kray.actors.scheduler.sharding import Shard
from kray.crds import Node, Pod
from kray.crds.scheduling import POD_GROUP_LABEL, PodGroup

GPU = "nvidia.com/gpu"


def node(
    name: str,
    cpu: str | int = 8,
    memory: str = "32Gi",
    gpu: int = 0,
    pods: int = 110,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, Any]] | None = None,
    unschedulable: bool = False,
) -> Node:
    alloc: dict[str, Any] = {"cpu": str(cpu), "memory": memory, "pods": str(pods)}
    if gpu:
        alloc[GPU] = str(gpu)
    return Node.model_validate(
        {
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {"allocatable": alloc, "capacity": alloc},
        }
    )


def pod(
    name: str,
    cpu: str | int | None = None,
    memory: str | None = None,
    gpu: int = 0,
    namespace: str = "default",
    labels: dict[str, str] | None = None,
    group: str | None = None,
    priority: int | None = None,
    node_name: str | None = None,
    **spec: Any,
) -> Pod:
    requests: dict[str, Any] = {}
    if cpu is not None:
        requests["cpu"] = str(cpu)
    if memory is not None:
        requests["memory"] = memory
    if gpu:
        requests[GPU] = str(gpu)
    labels = dict(labels or {})
    if group:
        labels[POD_GROUP_LABEL] = group
    body: dict[str, Any] = {
        "containers": [{"name": "main", "image": "train:1", "resources": {"requests": requests}}],
        **spec,
    }
    if priority is not None:
        body["priority"] = priority
    if node_name:
        body["nodeName"] = node_name
    return Pod.model_validate({"metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": body})


def pod_group(name: str, min_member: int, timeout: int | None = None, namespace: str = "default") -> PodGroup:
    return PodGroup.model_validate(
        {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"minMember": min_member, "scheduleTimeoutSeconds": timeout},
        }
    )


def make_scheduler(
    binder: FakeBinder | None = None,
    nodes: list[Node] | None = None,
    clock: FakeClock | None = None,
    profile: Profile | None = None,
    shard: Shard | None = None,
    seed: int = 0,
    profiles: list[Profile] | None = None,
) -> tuple[Scheduler, FakeBinder, RecordingReporter, FakeClock]:
    """A scheduler wired to a FakeBinder whose watch events feed its cache."""
    binder = binder or FakeBinder()
    clock = clock or FakeClock()
    reporter = RecordingReporter()
    s = Scheduler(binder, reporter, clock, profile, shard, evictor=binder, seed=seed, profiles=profiles)
    connect(binder, s)
    for n in nodes or []:
        binder.add_node(n)
        s.on_node_add(n)
    return s, binder, reporter, clock


def connect(binder: FakeBinder, s: Scheduler) -> None:
    def listen(kind: str, p: Pod) -> None:
        if kind == "bound":
            s.on_pod_update(p)
        else:
            s.on_pod_delete(p)

    binder.listeners.append(listen)
