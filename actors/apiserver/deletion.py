"""Graceful deletion rules of kube-apiserver's generic registry, as pure functions of the object.

Split out of ``handlers`` (whose ``Handlers._grace_seconds``/``_mark_deleting`` delegate here) so
the rules that decide *how* an object goes away live together: whether finalizers still hold it,
how long a pod's grace period is, and how an object is marked with deletionTimestamp instead of
being removed at once. ``Handlers.delete`` and eviction apply them inside their CAS loops.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from kray.crds.meta import Resource
from kray.crds.registry import KindInfo

DEFAULT_POD_GRACE = 30


def is_core_kind(info: KindInfo, kind: str) -> bool:
    return info.group == "" and info.kind == kind


def pending_finalizers(info: KindInfo, data: dict[str, Any]) -> bool:
    if (data.get("metadata") or {}).get("finalizers"):
        return True
    # A namespace also waits for spec.finalizers (emptied through /finalize by its controller).
    return is_core_kind(info, "Namespace") and bool((data.get("spec") or {}).get("finalizers"))


def deletion_due(info: KindInfo, obj: Resource, data: dict[str, Any]) -> bool:
    """An update removed the last finalizer of an object whose deletion has no grace left."""
    meta = obj.metadata
    if meta.deletion_timestamp is None or meta.deletion_grace_period_seconds:
        return False  # a graceful pod waits for its kubelet's final DELETE
    return not pending_finalizers(info, data)


def pod_grace_seconds(info: KindInfo, data: dict[str, Any], requested: int | None, graceful_pods: bool) -> int:
    """Kubernetes' graceful deletion applies to pods that a kubelet may be running."""
    if not (graceful_pods and is_core_kind(info, "Pod")):
        return 0
    spec, status = data.get("spec") or {}, data.get("status") or {}
    if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
        return 0  # nothing runs it (unscheduled) or it already ended: delete at once
    if requested is not None:
        return max(requested, 0)
    grace = spec.get("terminationGracePeriodSeconds")
    return DEFAULT_POD_GRACE if grace is None else int(grace)


def mark_deleting(
    info: KindInfo, data: dict[str, Any], current: Resource, grace: int, now: datetime
) -> Resource | None:
    """``current`` (as wire ``data``) marked for deletion; None when it already is, unchanged."""
    meta = data["metadata"]
    old_grace = current.metadata.deletion_grace_period_seconds
    if current.metadata.deletion_timestamp is not None:
        shorter = old_grace is not None and grace < old_grace
        if not shorter and data["metadata"].get("finalizers") == current.metadata.finalizers:
            return None
        if not shorter:
            grace = old_grace or 0
    meta["deletionTimestamp"] = now + timedelta(seconds=grace)
    meta["deletionGracePeriodSeconds"] = grace
    if meta.get("finalizers") is None:
        meta.pop("finalizers", None)
    if is_core_kind(info, "Namespace"):
        data["status"] = {**(data.get("status") or {}), "phase": "Terminating"}
    obj = info.model.model_validate(data)
    obj.metadata.resource_version = current.metadata.resource_version
    return obj
