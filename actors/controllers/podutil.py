"""Pod helpers the workload controllers share: readiness, availability, delete order, template hash.

Semantics follow Kubernetes' ``podutil`` and ``controller`` packages: a pod is *active* until it
ends (Succeeded/Failed) or starts deleting; *ready* when its Ready condition is True; *available*
when it has been ready for ``minReadySeconds``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from kray.actors.framework.reconciler import controller_of, set_controller_reference
from kray.crds.core import Pod
from kray.crds.core.pod import PodTemplateSpec
from kray.crds.meta import ObjectMeta, Resource

POD_TEMPLATE_HASH = "pod-template-hash"
# rand.SafeEncodeString's alphabet: no vowels (no words), no 0/1/3 (no confusables).
_SAFE = "bcdfghjklmnpqrstvwxz2456789"
_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def is_active(pod: Pod) -> bool:
    phase = pod.status.phase if pod.status else None
    return phase not in ("Succeeded", "Failed") and pod.metadata.deletion_timestamp is None


def ready_since(pod: Pod) -> datetime | None:
    """When the pod last became Ready; None if it is not ready (or the time is unknown)."""
    cond = pod.status.condition("Ready") if pod.status else None
    if cond is None or cond.status != "True":
        return None
    return cond.last_transition_time


def is_ready(pod: Pod) -> bool:
    cond = pod.status.condition("Ready") if pod.status else None
    return cond is not None and cond.status == "True"


def is_available(pod: Pod, min_ready_seconds: int, now: datetime) -> bool:
    if not is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = ready_since(pod)
    if since is None or since.tzinfo is None:
        return False
    return (now - since).total_seconds() >= min_ready_seconds


def _ts(value: datetime | None) -> float:
    return value.timestamp() if value is not None and value.tzinfo is not None else float("-inf")


def delete_rank(pod: Pod) -> tuple[Any, ...]:
    """Sort key: smaller is deleted first (Kubernetes' ``ActivePods.Less``).

    Unscheduled before scheduled, Pending before Unknown before Running, not ready before
    ready, ready for less time before longer, more restarts first, newer before older.
    """
    status = pod.status
    phase = (status.phase if status else None) or "Pending"
    ready = is_ready(pod)
    restarts = sum(c.restart_count for c in (status.container_statuses or [])) if status else 0
    return (
        1 if pod.spec.node_name else 0,
        _PHASE_RANK.get(phase, 0),
        1 if ready else 0,
        # "ready for less time" first; an unknown ready time counts as the least.
        (-_ts(ready_since(pod)) if ready_since(pod) else float("-inf")) if ready else 0.0,
        -restarts,
        -_ts(pod.metadata.creation_timestamp),
        pod.name,  # deterministic among equals
    )


def pods_to_delete(pods: list[Pod], count: int) -> list[Pod]:
    return sorted(pods, key=delete_rank)[: max(0, count)]


def controller_uid(obj: Resource) -> str | None:
    ref = controller_of(obj)
    return ref.uid if ref is not None else None


def pod_from_template(template: PodTemplateSpec, owner: Resource, generate_name: str) -> Pod:
    """A new pod for ``owner`` (its controller reference set) from its template."""
    meta = template.metadata or ObjectMeta()
    pod = Pod(
        metadata=ObjectMeta(
            generate_name=generate_name,
            namespace=owner.metadata.namespace,
            labels=dict(meta.labels or {}) or None,
            annotations=dict(meta.annotations or {}) or None,
        ),
        spec=template.spec.model_copy(deep=True),
    )
    set_controller_reference(owner, pod)
    return pod


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template: PodTemplateSpec, collision_count: int | None = None) -> str:
    """A short stable name suffix for a pod template (like ``ComputeHash``: fnv32a, safe-encoded).

    ``collision_count`` is mixed in so a Deployment can step past a name already taken by a
    ReplicaSet with a different template.
    """
    data = json.dumps(template.to_dict(), sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    return "".join(_SAFE[int(c) % len(_SAFE)] for c in str(_fnv32a(data)))


def template_without_hash(template: PodTemplateSpec | None) -> dict[str, Any]:
    """The template's wire form with the pod-template-hash label removed (for comparisons)."""
    if template is None:
        return {}
    data = template.to_dict()
    labels = (data.get("metadata") or {}).get("labels")
    if labels and POD_TEMPLATE_HASH in labels:
        labels = {k: v for k, v in labels.items() if k != POD_TEMPLATE_HASH}
        data["metadata"]["labels"] = labels or None
        if not labels:
            del data["metadata"]["labels"]
    if data.get("metadata") == {}:
        del data["metadata"]  # no metadata and empty metadata are the same template
    return data


def equal_ignore_hash(a: PodTemplateSpec | None, b: PodTemplateSpec | None) -> bool:
    return template_without_hash(a) == template_without_hash(b)
