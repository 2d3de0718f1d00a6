"""Pure helpers of the DaemonSet controller (kube's ``pkg/controller/daemon/util`` and friends).

- which nodes should run a daemon pod (``node_should_run``: nodeName, nodeSelector, required node
  affinity and NoSchedule/NoExecute taints, with the default DaemonSet tolerations added),
- the pod for a node (``new_daemon_pod``: tolerations, the revision labels, and required node
  affinity pinned to the node through ``matchFields metadata.name``, so the default scheduler
  places it there),
- which node a daemon pod is for (``target_node_name``) and whether it is up to date,
- the failed-pod back-off and the create/delete expectations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from kray.actors.framework.ports import Clock
from kray.crds.apps_daemonset import CONTROLLER_REVISION_HASH, POD_TEMPLATE_GENERATION, DaemonSet
from kray.crds.core import Node, Pod, Toleration
from kray.crds.core.pod import PodSpec, PodTemplateSpec
from kray.crds.core.scheduling import (
    Affinity,
    NodeAffinity,
    NodeSelector,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    tolerates_all,
)
from kray.crds.meta import ObjectMeta

from .podutil import pod_from_template
from .replicaset import Expectations, _Expected

log = logging.getLogger(__name__)

NODE_NAME_FIELD = "metadata.name"  # metav1.ObjectNameField
NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
DISK_PRESSURE = "node.kubernetes.io/disk-pressure"
MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
PID_PRESSURE = "node.kubernetes.io/pid-pressure"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"


# ---- tolerations and node eligibility ----


def default_tolerations(host_network: bool) -> list[Toleration]:
    """What ``AddOrUpdateDaemonPodTolerations`` adds: daemons survive node problems."""
    tolerations = [
        Toleration(key=NOT_READY, operator="Exists", effect="NoExecute"),
        Toleration(key=UNREACHABLE, operator="Exists", effect="NoExecute"),
        Toleration(key=DISK_PRESSURE, operator="Exists", effect="NoSchedule"),
        Toleration(key=MEMORY_PRESSURE, operator="Exists", effect="NoSchedule"),
        Toleration(key=PID_PRESSURE, operator="Exists", effect="NoSchedule"),
        Toleration(key=UNSCHEDULABLE, operator="Exists", effect="NoSchedule"),
    ]
    if host_network:
        tolerations.append(Toleration(key=NETWORK_UNAVAILABLE, operator="Exists", effect="NoSchedule"))
    return tolerations


def _same_toleration(a: Toleration, b: Toleration) -> bool:
    """``Toleration.MatchToleration``: key, operator, value and effect (not tolerationSeconds)."""
    return (a.key or "", a.operator, a.value or "", a.effect or "") == (
        b.key or "",
        b.operator,
        b.value or "",
        b.effect or "",
    )


def add_daemon_tolerations(spec: PodSpec) -> None:
    """Add (or replace a matching one with) each default toleration, as ``AddOrUpdateTolerationInPodSpec``."""
    tolerations = list(spec.tolerations or [])
    for toleration in default_tolerations(bool(spec.host_network)):
        for i, existing in enumerate(tolerations):
            if _same_toleration(existing, toleration):
                tolerations[i] = toleration  # e.g. a not-ready toleration with seconds becomes infinite
                break
        else:
            tolerations.append(toleration)
    spec.tolerations = tolerations


def daemon_tolerations(ds: DaemonSet) -> list[Toleration]:
    spec = ds.spec.template.spec.model_copy(deep=True)
    add_daemon_tolerations(spec)
    return list(spec.tolerations or [])


def _matches_node(spec: PodSpec, node: Node) -> bool:
    labels = node.metadata.labels or {}
    if any(labels.get(k) != v for k, v in (spec.node_selector or {}).items()):
        return False
    na = spec.affinity.node_affinity if spec.affinity else None
    required = na.required_during_scheduling_ignored_during_execution if na else None
    return required is None or required.matches(labels, {NODE_NAME_FIELD: node.name})


def node_should_run(node: Node, ds: DaemonSet) -> tuple[bool, bool]:
    """``NodeShouldRunDaemonPod``: (should a daemon pod be created here, may an existing one stay).

    A node that tolerates the pod's NoExecute taints but not a NoSchedule one keeps its pod but
    gets no new one; a node being deleted likewise (its pods go with it)."""
    spec = ds.spec.template.spec
    if spec.node_name and spec.node_name != node.name:
        return False, False
    if not _matches_node(spec, node):
        return False, False
    tolerations = daemon_tolerations(ds)
    taints = node.spec.taints or []
    if not tolerates_all(tolerations, taints, ("NoSchedule", "NoExecute")):
        return False, tolerates_all(tolerations, taints, ("NoExecute",))
    if node.metadata.deletion_timestamp is not None:
        return False, True
    return True, True


# ---- the pod for a node ----


def pin_to_node(affinity: Affinity | None, node_name: str) -> Affinity:
    """``ReplaceDaemonSetPodNodeNameNodeAffinity``: required node affinity selecting just ``node_name``.

    Existing required terms are replaced: the controller has already checked that the node
    matches them, and an ORed term could otherwise let the pod land elsewhere."""
    selector = NodeSelector(
        node_selector_terms=[
            NodeSelectorTerm(
                match_fields=[NodeSelectorRequirement(key=NODE_NAME_FIELD, operator="In", values=[node_name])]
            )
        ]
    )
    affinity = affinity.model_copy(deep=True) if affinity is not None else Affinity()
    if affinity.node_affinity is None:
        affinity.node_affinity = NodeAffinity()
    affinity.node_affinity.required_during_scheduling_ignored_during_execution = selector
    return affinity


def template_generation(ds: DaemonSet) -> int | None:
    return ds.metadata.generation


def new_daemon_pod(ds: DaemonSet, node_name: str, revision_hash: str) -> Pod:
    """The pod to create for ``node_name`` (``CreatePodTemplate`` plus the node affinity)."""
    template: PodTemplateSpec = ds.spec.template.model_copy(deep=True)
    template.metadata = template.metadata or ObjectMeta()
    labels = dict(template.metadata.labels or {})
    generation = template_generation(ds)
    if generation is not None:
        labels[POD_TEMPLATE_GENERATION] = str(generation)
    labels[CONTROLLER_REVISION_HASH] = revision_hash
    template.metadata.labels = labels
    add_daemon_tolerations(template.spec)
    template.spec.affinity = pin_to_node(template.spec.affinity, node_name)
    return pod_from_template(template, ds, f"{ds.name}-")


def target_node_name(pod: Pod) -> str | None:
    """``GetTargetNodeName``: the bound node, else the one its required node affinity pins."""
    if pod.spec.node_name:
        return pod.spec.node_name
    na = pod.spec.affinity.node_affinity if pod.spec.affinity else None
    required = na.required_during_scheduling_ignored_during_execution if na else None
    for term in required.node_selector_terms if required else []:
        for req in term.match_fields or []:
            if req.key == NODE_NAME_FIELD and req.operator == "In" and len(req.values or []) == 1:
                return (req.values or [""])[0]
    return None


def is_pod_updated(pod: Pod, revision_hash: str, generation: int | None) -> bool:
    """``IsPodUpdated``: the pod carries the current template hash (or template generation)."""
    labels = pod.metadata.labels or {}
    generation_matches = generation is not None and labels.get(POD_TEMPLATE_GENERATION) == str(generation)
    hash_matches = bool(revision_hash) and labels.get(CONTROLLER_REVISION_HASH) == revision_hash
    return hash_matches or generation_matches


def creation_order(pod: Pod) -> tuple[int, datetime, str]:
    """``podByCreationTimestampAndPhase``: scheduled pods first, then oldest, then by name."""
    created = pod.metadata.creation_timestamp or datetime.max
    if created.tzinfo is not None:
        created = created.replace(tzinfo=None)
    return (0 if pod.spec.node_name else 1, created, pod.name)


# ---- failed-pod back-off (client-go's flowcontrol.Backoff) ----


@dataclass
class _Entry:
    delay: float
    last_update: float


class Backoff:
    """Per-key exponential back-off: ``initial`` doubling up to ``maximum`` seconds.

    Kube's DaemonSet controller keys it by DaemonSet uid and node, so a kubelet that keeps
    rejecting a daemon pod is not hot-looped against."""

    def __init__(self, clock: Clock, initial: float = 1.0, maximum: float = 900.0) -> None:
        self.clock = clock
        self.initial = initial
        self.maximum = maximum
        self._entries: dict[str, _Entry] = {}

    def get(self, key: str) -> float:
        e = self._entries.get(key)
        return e.delay if e else 0.0

    def next(self, key: str) -> None:
        now = self.clock.monotonic()
        e = self._entries.get(key)
        if e is None or now - e.last_update > 2 * self.maximum:
            self._entries[key] = _Entry(self.initial, now)
        else:
            self._entries[key] = _Entry(min(e.delay * 2, self.maximum), now)

    def in_backoff_since_update(self, key: str) -> bool:
        e = self._entries.get(key)
        return e is not None and self.clock.monotonic() - e.last_update < e.delay

    def forget_prefix(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]


# ---- expectations ----


class DaemonSetExpectations(Expectations):
    """The ReplicaSet controller's expectations, set for creates and deletes at once (kube's
    ``SetExpectations(key, adds, dels)``) and fed by the pods DaemonSets control."""

    owner_kind = DaemonSet.KIND

    def expect(self, key: str, adds: int, deletes: list[str]) -> None:
        self._by_key[key] = _Expected(adds, set(deletes), self.clock.monotonic())
