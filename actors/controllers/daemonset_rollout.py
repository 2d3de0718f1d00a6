"""Pure planning of the DaemonSet controller: the rolling update and the status counts.

``plan_rolling_update`` is kube's ``rollingUpdate``: without surge it deletes just enough pods of
an old revision to stay within maxUnavailable (the manage pass then recreates them); with
maxSurge it creates the new pod first and deletes the old one once the new one is available.
``compute_status`` is ``updateDaemonSetStatus``'s arithmetic.
"""

from __future__ import annotations

from datetime import datetime

from kray.crds.apps_daemonset import DaemonSet, DaemonSetStatus
from kray.crds.core import Node, Pod

from .daemonset_util import creation_order, is_pod_updated, node_should_run, template_generation
from .podutil import is_available, is_ready

NodePods = dict[str, list[Pod]]


def updated_and_old(ds: DaemonSet, pods: list[Pod], revision: str) -> tuple[Pod | None, Pod | None, bool]:
    """``findUpdatedPodsOnNode``: the node's one live new-revision pod and one old one (False if more)."""
    new = old = None
    generation = template_generation(ds)
    for pod in pods:
        if pod.metadata.deletion_timestamp is not None:
            continue
        if is_pod_updated(pod, revision, generation):
            if new is not None:
                return None, None, False
            new = pod
        else:
            if old is not None:
                return None, None, False
            old = pod
    return new, old, True


def plan_rolling_update(
    ds: DaemonSet, nodes: list[Node], by_node: NodePods, revision: str, now: datetime
) -> tuple[list[Pod], list[str]]:
    """(pods to delete, nodes to create a pod on) for one step of a RollingUpdate."""
    wanted = {n.name: node_should_run(n, ds)[0] for n in nodes}
    desired = sum(1 for v in wanted.values() if v)
    per_node: NodePods = {name: list(by_node.get(name, [])) for name, run in wanted.items() if run}
    for name, pods in by_node.items():
        per_node.setdefault(name, pods)
    max_unavailable, max_surge = ds.spec.max_unavailable_and_surge(desired)
    min_ready = ds.spec.min_ready_seconds

    if max_surge == 0:
        unavailable = 0
        replace: list[Pod] = []
        candidates: list[Pod] = []
        for name in sorted(per_node):
            new, old, ok = updated_and_old(ds, per_node[name], revision)
            if not ok or (new is None) == (old is None):
                unavailable += 1  # the manage pass sorts this node out; it counts as unavailable
            elif new is not None:
                unavailable += 0 if is_available(new, min_ready, now) else 1
            elif old is not None:
                if not is_available(old, min_ready, now):
                    replace.append(old)  # unavailable anyway: replacing it costs nothing
                elif unavailable < max_unavailable:
                    candidates.append(old)
        room = max(0, min(max_unavailable - unavailable, len(candidates)))
        return replace + candidates[:room], []

    delete: list[Pod] = []
    not_wanted: list[Pod] = []  # available old pods on nodes the DaemonSet has left
    allowed: list[str] = []  # nodes whose old pod is unavailable: replace at once
    candidate_nodes: list[str] = []
    surging = available = 0
    for name in sorted(per_node):
        new, old, ok = updated_and_old(ds, per_node[name], revision)
        if not ok:
            surging += 1
            continue
        live = old if old is not None else new
        if live is not None and is_available(live, min_ready, now):
            available += 1
        if old is None:
            continue  # nothing to replace; the manage pass creates where missing
        if new is None:
            if not is_available(old, min_ready, now):
                if wanted.get(name, False):
                    allowed.append(name)
                else:
                    delete.append(old)
            elif not wanted.get(name, False):
                not_wanted.append(old)
            elif surging < max_surge:
                candidate_nodes.append(name)
        elif not is_available(new, min_ready, now):
            surging += 1  # waiting for the new pod to become available
        else:
            delete.append(old)
    # With surge the owner expects full availability: a pod on a node left behind goes only
    # once enough pods elsewhere are available.
    delete += not_wanted[: min(max(available - desired, 0), len(not_wanted))]
    room = max(0, min(max_surge - surging, len(candidate_nodes)))
    return delete, allowed + candidate_nodes[:room]


def compute_status(
    ds: DaemonSet, nodes: list[Node], by_node: NodePods, revision: str, now: datetime
) -> DaemonSetStatus:
    """The counts of ``updateDaemonSetStatus`` (observedGeneration and conditions kept as they are)."""
    desired = current = misscheduled = ready = available = updated = 0
    generation = template_generation(ds)
    for node in nodes:
        should_run, _ = node_should_run(node, ds)
        pods = by_node.get(node.name) or []
        if not should_run:
            misscheduled += 1 if pods else 0
            continue
        desired += 1
        if not pods:
            continue
        current += 1
        pod = min(pods, key=creation_order)
        if is_ready(pod):
            ready += 1
            available += 1 if is_available(pod, ds.spec.min_ready_seconds, now) else 0
        updated += 1 if is_pod_updated(pod, revision, generation) else 0
    return (ds.status or DaemonSetStatus()).model_copy(
        update={
            "desired_number_scheduled": desired,
            "current_number_scheduled": current,
            "number_misscheduled": misscheduled,
            "number_ready": ready,
            "updated_number_scheduled": updated,
            "number_available": available,
            "number_unavailable": desired - available,
        }
    )
