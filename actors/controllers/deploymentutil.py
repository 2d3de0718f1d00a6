"""kube's deploymentutil: the arithmetic of a rollout and the Deployment status it yields.

Pure functions over Deployments and ReplicaSets (no I/O), shared by the Deployment controller
and its tests.
"""

from __future__ import annotations

import math
from datetime import datetime

from kray.actors.framework.reconciler import get_condition, set_condition
from kray.crds.apps import AVAILABLE, PROGRESSING, Deployment, DeploymentStatus, IntOrString, ReplicaSet

REVISION = "deployment.kubernetes.io/revision"


def scaled_value(value: IntOrString | None, total: int, round_up: bool) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    pct = int(value.rstrip("%")) * total / 100
    return math.ceil(pct) if round_up else math.floor(pct)


def surge_and_unavailable(d: Deployment) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) resolved against replicas; never both 0 (kube's fenceposts)."""
    ru = d.spec.strategy.rolling_update
    if d.spec.strategy.type != "RollingUpdate" or ru is None:
        return 0, 0
    surge = scaled_value(ru.max_surge, d.spec.replicas, True)
    unavailable = scaled_value(ru.max_unavailable, d.spec.replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, min(unavailable, d.spec.replicas)


def revision_of(rs: ReplicaSet) -> int:
    try:
        return int((rs.metadata.annotations or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def spec_replicas(rss: list[ReplicaSet]) -> int:
    return sum(rs.spec.replicas for rs in rss)


def available(rs: ReplicaSet) -> int:
    # Capped by spec: pods beyond it are already being deleted.
    return min(rs.status.available_replicas or 0, rs.spec.replicas) if rs.status else 0


def synced(rs: ReplicaSet) -> bool:
    """The RS controller has seen the RS's latest spec: its status counts can be trusted."""
    observed = rs.status.observed_generation if rs.status else None
    return observed is not None and observed >= (rs.metadata.generation or 0)


def is_complete(d: Deployment, status: DeploymentStatus) -> bool:
    """Every replica updated and available: the rollout is done."""
    r = d.spec.replicas
    return status.updated_replicas == r and status.replicas == r and status.available_replicas == r


def compute_status(
    d: Deployment, rss: list[ReplicaSet], new_rs: ReplicaSet | None, created: bool, now: datetime
) -> DeploymentStatus:
    """The Deployment's status from its ReplicaSets, with Available and Progressing conditions
    (a Progressing=ReplicaSetUpdated that has not moved for progressDeadlineSeconds times out)."""
    _, max_unavailable = surge_and_unavailable(d)
    avail = sum(available(r) for r in rss)
    status = DeploymentStatus(
        observed_generation=d.metadata.generation,
        replicas=sum(r.status.replicas if r.status else 0 for r in rss),
        updated_replicas=(new_rs.status.replicas if new_rs and new_rs.status else 0),
        ready_replicas=sum((r.status.ready_replicas or 0) if r.status else 0 for r in rss),
        available_replicas=avail,
        unavailable_replicas=max(0, d.spec.replicas - avail),
        conditions=[c.model_copy() for c in (d.status.conditions or [])] if d.status else None,
        collision_count=d.status.collision_count if d.status else None,
    )
    if avail >= d.spec.replicas - max_unavailable:
        set_condition(
            status, AVAILABLE, "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", now=now
        )
    else:
        set_condition(
            status,
            AVAILABLE,
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now=now,
        )
    rs_name = new_rs.name if new_rs else d.name
    if d.spec.paused:
        set_condition(status, PROGRESSING, "Unknown", "DeploymentPaused", "Deployment is paused", now=now)
    elif is_complete(d, status):
        set_condition(
            status,
            PROGRESSING,
            "True",
            "NewReplicaSetAvailable",
            f'ReplicaSet "{rs_name}" has successfully progressed.',
            now=now,
        )
    elif created:
        set_condition(
            status, PROGRESSING, "True", "NewReplicaSetCreated", f'Created new replica set "{rs_name}"', now=now
        )
    else:
        prev = d.status if d.status else DeploymentStatus()
        progressed = (prev.updated_replicas, prev.available_replicas, prev.replicas) != (
            status.updated_replicas,
            status.available_replicas,
            status.replicas,
        )
        cond = get_condition(status, PROGRESSING)
        last = cond.last_transition_time if cond else None
        if (
            cond is not None
            and cond.reason in ("ReplicaSetUpdated", "NewReplicaSetCreated")
            and not progressed
            and last
        ):
            if (now - last).total_seconds() > d.spec.progress_deadline_seconds:
                set_condition(
                    status,
                    PROGRESSING,
                    "False",
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{rs_name}" has timed out progressing.',
                    now=now,
                )
        elif progressed or cond is None or cond.status != "True" or cond.reason != "ReplicaSetUpdated":
            # Progress resets the deadline: a fresh transition time marks it.
            status.conditions = [c for c in status.conditions or [] if c.type != PROGRESSING] or None
            set_condition(
                status, PROGRESSING, "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.', now=now
            )
    return status
