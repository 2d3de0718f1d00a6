"""``kray describe podgroup NAME``: a gang at a glance.

Instead of the generic dump: minMember and the timeout, the phase with what it waits for, the
member counts, then every member pod (phase, node, and why it waits: the scheduler's word from
its PodScheduled condition, which is where a stuck gang says what is missing), and the Events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import printers
from .describe import events_table, header
from .describe_training import _pod_detail

if TYPE_CHECKING:
    from kray.client import Client, ResourceRef

Obj = dict[str, Any]
POD_GROUP_LABEL = "scheduling.kray.io/pod-group"  # what members carry (the scheduler reads it)

# What each phase means to someone whose gang does not start (scheduler-plugins' phases).
PHASE_HINTS = {
    "Pending": "fewer than minMember pods exist",
    "Scheduling": "waiting for the scheduler to place minMember pods at once",
    "Scheduled": "placed; waiting for minMember pods to run",
    "Running": "minMember pods run",
    "Finished": "every pod ended, none failed",
    "Failed": "a pod failed",
}


def _members(client: Client, obj: Obj) -> list[Obj]:
    from kray.client import ApiError

    meta = obj.get("metadata") or {}
    try:
        items = client.list_raw(
            client.resolve("pods"),
            meta.get("namespace") or "default",
            label_selector=f"{POD_GROUP_LABEL}={meta.get('name')}",
        ).items
    except ApiError:
        return []
    return sorted(items, key=lambda p: str((p.get("metadata") or {}).get("name")))


def podgroup_sections(spec: Obj, status: Obj, pods: list[Obj]) -> list[str]:
    """Everything between the header and the events (pure: easy to test)."""
    timeout = spec.get("scheduleTimeoutSeconds")
    lines = [
        f"Min Member:       {spec.get('minMember', 1)}",
        f"Schedule Timeout: {f'{timeout}s' if timeout else '<scheduler default>'}",
    ]
    phase = status.get("phase")
    hint = PHASE_HINTS.get(str(phase), "")
    lines.append(f"Phase:            {phase or printers.NONE}{f' ({hint})' if phase and hint else ''}")
    if status.get("scheduleStartTime"):
        start = status["scheduleStartTime"]
        lines.append(f"Schedule Start:   {start} ({printers.age(start)} ago)")
    counts = ("scheduled", "running", "succeeded", "failed")
    lines.append(f"Members:          {len(pods)} (" + ", ".join(f"{k} {status.get(k) or 0}" for k in counts) + ")")
    if not pods:
        lines.append("Pods:             <none>")
        return lines
    rows = [
        [
            str((p.get("metadata") or {}).get("name")),
            printers.pod_status(p),
            (p.get("spec") or {}).get("nodeName") or printers.NONE,
            " ".join(_pod_detail(p).split()),
        ]
        for p in pods
    ]
    table = printers.format_table(["Name", "Status", "Node", "Detail"], rows)
    return [*lines, "Pods:", *("  " + line for line in table.splitlines())]


def describe_pod_group(client: Client, ref: ResourceRef, obj: Obj) -> str:
    lines = header(ref, obj)
    lines += podgroup_sections(obj.get("spec") or {}, obj.get("status") or {}, _members(client, obj))
    lines += events_table(client, ref, obj)
    return "\n".join(lines)
