"""``kray describe trainingjob NAME``: the page a TrainingJob's user needs.

Instead of the generic dump of the (long) pod templates: one line per replica type, the run
policy, the state with restarts against backoffLimit, per-replica active/succeeded/failed, the
pods of the gang (phase, node, attempt, and why a pod waits or how it ended), conditions with
reasons, and the job's Events.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from . import printers
from .describe import conditions_table, events_table, header

if TYPE_CHECKING:
    from kray.client import Client, ResourceRef

Obj = dict[str, Any]
JOB_NAME_LABEL = "kray.io/job-name"  # what the operator labels every pod of a job with
ATTEMPT_LABEL = "kray.io/job-attempt"
REPLICA_TYPES = ("Master", "Worker")


def job_state(status: Obj) -> str:
    """The condition that holds and changed last (what `kray get tj` prints as STATE)."""
    held = [c for c in status.get("conditions") or [] if c.get("status") == "True"]
    order = ("Created", "Suspended", "Running", "Restarting", "Succeeded", "Failed")
    held.sort(
        key=lambda c: (c.get("lastTransitionTime") or "", order.index(c["type"]) if c.get("type") in order else -1)
    )
    return str(held[-1].get("type", "")) if held else ""


def _indent(table: str) -> list[str]:
    return ["  " + line for line in table.splitlines()]


def _replica_rows(spec: Obj) -> list[list[str]]:
    rows = []
    for rtype, rs in (spec.get("replicaSpecs") or {}).items():
        containers = ((rs.get("template") or {}).get("spec") or {}).get("containers") or [{}]
        main = next((c for c in containers if c.get("name") == "pytorch"), containers[0])
        requests = ((main.get("resources") or {}).get("requests")) or {}
        command = shlex.join([*(main.get("command") or []), *(main.get("args") or [])])
        rows.append(
            [
                rtype,
                str(rs.get("replicas", 1)),
                rs.get("restartPolicy") or "OnFailure",
                main.get("image") or "",
                ",".join(f"{k}={v}" for k, v in sorted(requests.items())) or printers.NONE,
                command if len(command) <= 60 else command[:57] + "...",
            ]
        )
    return rows


def _run_policy(spec: Obj) -> str:
    rp = spec.get("runPolicy") or {}
    parts = [
        f"backoffLimit={rp.get('backoffLimit', 3)}",
        f"cleanPodPolicy={rp.get('cleanPodPolicy', 'Running')}",
    ]
    for key in ("activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        if rp.get(key) is not None:
            parts.append(f"{key}={rp[key]}")
    if rp.get("suspend"):
        parts.append("suspend=true")
    return " ".join(parts)


def _pod_detail(pod: Obj) -> str:
    """Why a pod waits (the scheduler's or the kubelet's word) or how its main container ended."""
    status = pod.get("status") or {}
    scheduled: Obj = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {})
    if scheduled.get("status") == "False" and not (pod.get("spec") or {}).get("nodeName"):
        return f"{scheduled.get('reason') or 'Unschedulable'}: {scheduled.get('message') or ''}".strip()
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if state.get("terminated"):
            term = state["terminated"]
            return f"{cs.get('name')}: exit code {term.get('exitCode')} ({term.get('reason') or 'Terminated'})"
        if (state.get("waiting") or {}).get("message"):
            return f"{cs.get('name')}: {state['waiting']['message']}"
    return ""


def _pods(client: Client, obj: Obj) -> list[Obj]:
    from kray.client import ApiError

    meta = obj.get("metadata") or {}
    try:
        pods_ref = client.resolve("pods")
        items = client.list_raw(
            pods_ref, meta.get("namespace") or "default", label_selector=f"{JOB_NAME_LABEL}={meta.get('name')}"
        ).items
    except ApiError:
        return []
    uid = meta.get("uid")
    # Only pods this job controls: a job of the same name made earlier is not this one.
    return sorted(
        (
            p
            for p in items
            if not uid or any(o.get("uid") == uid for o in (p.get("metadata") or {}).get("ownerReferences") or [])
        ),
        key=lambda p: str((p.get("metadata") or {}).get("name")),
    )


def training_sections(spec: Obj, status: Obj, pods: list[Obj]) -> list[str]:
    """Everything between the header and the conditions (pure: easy to test)."""
    lines = ["Replicas:"]
    lines += _indent(
        printers.format_table(
            ["Type", "Replicas", "Restart Policy", "Image", "Requests", "Command"], _replica_rows(spec)
        )
    )
    lines.append(f"Run Policy:       {_run_policy(spec)}")
    lines.append(f"Nproc Per Node:   {spec.get('nprocPerNode', 1)}   Master Port: {spec.get('masterPort', 23456)}")
    lines.append(f"State:            {job_state(status) or printers.NONE}")
    limit = (spec.get("runPolicy") or {}).get("backoffLimit", 3)
    lines.append(f"Restarts:         {status.get('restarts') or 0} (backoffLimit {limit})")
    for key, label in (
        ("startTime", "Start Time:"),
        ("completionTime", "Completion Time:"),
        ("masterAddr", "Master Addr:"),
    ):
        if status.get(key):
            lines.append(f"{label:<18}{status[key]}")
    counts = status.get("replicaStatuses") or {}
    if counts:
        rows = [
            [rtype, *(str((counts.get(rtype) or {}).get(k) or 0) for k in ("active", "succeeded", "failed"))]
            for rtype in [*REPLICA_TYPES, *sorted(set(counts) - set(REPLICA_TYPES))]
            if rtype in counts
        ]
        lines.append("Replica Statuses:")
        lines += _indent(printers.format_table(["Type", "Active", "Succeeded", "Failed"], rows))
    if pods:
        rows = [
            [
                str((p.get("metadata") or {}).get("name")),
                printers.pod_status(p),
                (p.get("spec") or {}).get("nodeName") or printers.NONE,
                ((p.get("metadata") or {}).get("labels") or {}).get(ATTEMPT_LABEL, ""),
                " ".join(_pod_detail(p).split()),
            ]
            for p in pods
        ]
        lines.append("Pods:")
        lines += _indent(printers.format_table(["Name", "Status", "Node", "Attempt", "Detail"], rows))
    else:
        lines.append("Pods:             <none>")
    return lines


def describe_training_job(client: Client, ref: ResourceRef, obj: Obj) -> str:
    status = obj.get("status") or {}
    lines = header(ref, obj)
    lines += training_sections(obj.get("spec") or {}, status, _pods(client, obj))
    lines += conditions_table(status.get("conditions"))
    lines += events_table(client, ref, obj)
    return "\n".join(lines)
