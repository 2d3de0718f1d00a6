"""kubectl-style output: aligned tables per kind, ages, ``-o yaml|json|name``.

Works on plain dicts (the wire form) so ``kray get`` never builds pydantic models: that keeps
the CLI fast and lets it print kinds it has no model for (custom resources).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from kray.client.paths import ResourceRef

Obj = dict[str, Any]
NONE = "<none>"


def human_duration(seconds: float) -> str:
    """kubectl's HumanDuration: 45s, 5m30s, 47m, 3h20m, 26h, 3d5h, 45d, 2y100d."""
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if h < 24 * 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y{d % 365}d" if d % 365 else f"{d // 365}y"


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def age(value: str | None, now: datetime | None = None) -> str:
    ts = parse_time(value)
    if ts is None:
        return "<unknown>"
    return human_duration(((now or datetime.now(timezone.utc)) - ts).total_seconds())


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _age(obj: Obj) -> str:
    return age(_meta(obj).get("creationTimestamp"))


# --- per-kind columns --------------------------------------------------------------------


def pod_status(pod: Obj) -> str:
    """The STATUS column: the most telling container state, like kubectl's printPod."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Pending"
    for cs in status.get("initContainerStatuses") or []:
        state = cs.get("state") or {}
        term = state.get("terminated")
        if term and term.get("exitCode", 0) == 0:
            continue
        if term:
            reason = "Init:" + (term.get("reason") or f"ExitCode:{term.get('exitCode')}")
        elif (state.get("waiting") or {}).get("reason") not in (None, "PodInitializing"):
            reason = "Init:" + state["waiting"]["reason"]
        else:
            reason = "Init:0/1" if not cs.get("ready") else reason
        break
    else:
        for cs in reversed(status.get("containerStatuses") or []):
            state = cs.get("state") or {}
            waiting, term = state.get("waiting"), state.get("terminated")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif term and term.get("reason"):
                reason = term["reason"]
            elif term:
                sig = term.get("signal")
                reason = f"Signal:{sig}" if sig else f"ExitCode:{term.get('exitCode', 0)}"
    if _meta(pod).get("deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def _pod_row(pod: Obj, wide: bool) -> list[str]:
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or []) or len(statuses)
    ready = sum(1 for cs in statuses if cs.get("ready"))
    restarts = sum(int(cs.get("restartCount") or 0) for cs in statuses)
    row = [f"{ready}/{total}", pod_status(pod), str(restarts), _age(pod)]
    if wide:
        row += [status.get("podIP") or NONE, (pod.get("spec") or {}).get("nodeName") or NONE]
    return row


def _node_row(node: Obj, wide: bool) -> list[str]:
    status = node.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Unknown" if ready is None else ("Ready" if ready.get("status") == "True" else "NotReady")
    if (node.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    prefix = "node-role.kubernetes.io/"
    roles = sorted(k[len(prefix) :] for k in (_meta(node).get("labels") or {}) if k.startswith(prefix))
    version = (status.get("nodeInfo") or {}).get("kubeletVersion") or ""
    row = [state, ",".join(r for r in roles if r) or NONE, _age(node), version]
    if wide:
        addrs = status.get("addresses") or []
        internal = next((a.get("address") for a in addrs if a.get("type") == "InternalIP"), None)
        row.append(internal or NONE)
    return row


def _service_ports(spec: Obj) -> str:
    ports = []
    for p in spec.get("ports") or []:
        node_port = f":{p['nodePort']}" if p.get("nodePort") else ""
        ports.append(f"{p.get('port')}{node_port}/{p.get('protocol') or 'TCP'}")
    return ",".join(ports) or NONE


def _service_row(svc: Obj, wide: bool) -> list[str]:
    spec, status = svc.get("spec") or {}, svc.get("status") or {}
    ingress = (status.get("loadBalancer") or {}).get("ingress") or []
    external = [i.get("ip") or i.get("hostname") for i in ingress] + list(spec.get("externalIPs") or [])
    svc_type = spec.get("type") or "ClusterIP"
    if not external and svc_type == "LoadBalancer":
        external = ["<pending>"]
    row = [
        svc_type,
        spec.get("clusterIP") or NONE,
        ",".join(e for e in external if e) or NONE,
        _service_ports(spec),
        _age(svc),
    ]
    if wide:
        selector = spec.get("selector") or {}
        row.append(",".join(f"{k}={v}" for k, v in selector.items()) or NONE)
    return row


def _namespace_row(ns: Obj, wide: bool) -> list[str]:
    return [(ns.get("status") or {}).get("phase") or "Active", _age(ns)]


def _deployment_row(d: Obj, wide: bool) -> list[str]:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    desired = spec.get("replicas", 1)
    return [
        f"{status.get('readyReplicas') or 0}/{desired}",
        str(status.get("updatedReplicas") or 0),
        str(status.get("availableReplicas") or 0),
        _age(d),
    ]


def _replicaset_row(rs: Obj, wide: bool) -> list[str]:
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    return [
        str(spec.get("replicas", 1)),
        str(status.get("replicas") or 0),
        str(status.get("readyReplicas") or 0),
        _age(rs),
    ]


def _data_row(obj: Obj, wide: bool) -> list[str]:
    return [str(len(obj.get("data") or {}) + len(obj.get("binaryData") or {})), _age(obj)]


def _secret_row(obj: Obj, wide: bool) -> list[str]:
    return [obj.get("type") or "Opaque", *_data_row(obj, wide)]


def _event_row(ev: Obj, wide: bool) -> list[str]:
    involved = ev.get("involvedObject") or {}
    last = ev.get("lastTimestamp") or ev.get("eventTime") or _meta(ev).get("creationTimestamp")
    return [
        age(last),
        ev.get("type") or "",
        ev.get("reason") or "",
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        " ".join(str(ev.get("message") or "").split()),
    ]


def _job_row(job: Obj, wide: bool) -> list[str]:
    """kubectl's STATUS, COMPLETIONS (succeeded/completions), DURATION, AGE."""
    spec, status = job.get("spec") or {}, job.get("status") or {}
    true = {c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"}
    state = next((t for t in ("Complete", "Failed", "Suspended") if t in true), "Running")
    completions = spec.get("completions")
    done = f"{status.get('succeeded') or 0}/{completions if completions is not None else 1}"
    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    elapsed = ((end or datetime.now(timezone.utc)) - start).total_seconds() if start else None
    duration = human_duration(elapsed) if elapsed is not None else ""
    return [state, done, duration, _age(job)]


def _endpoints_row(ep: Obj, wide: bool) -> list[str]:
    """kubectl's ENDPOINTS: ip:port pairs, the first three then ``+ N more...``."""
    pairs = []
    for subset in ep.get("subsets") or []:
        ports = [p.get("port") for p in subset.get("ports") or []] or [None]
        for addr in subset.get("addresses") or []:
            pairs += [f"{addr.get('ip')}:{port}" if port is not None else str(addr.get("ip")) for port in ports]
    shown = ",".join(pairs[:3]) + (f" + {len(pairs) - 3} more..." if len(pairs) > 3 else "")
    return [shown or "<none>", _age(ep)]


def _generic_row(obj: Obj, wide: bool) -> list[str]:
    return [_age(obj)]


Row = Callable[[Obj, bool], list[str]]
# (group, plural) -> (columns after NAME, extra wide columns, row function)
COLUMNS: dict[tuple[str, str], tuple[list[str], list[str], Row]] = {
    ("", "pods"): (["READY", "STATUS", "RESTARTS", "AGE"], ["IP", "NODE"], _pod_row),
    ("", "nodes"): (["STATUS", "ROLES", "AGE", "VERSION"], ["INTERNAL-IP"], _node_row),
    ("", "services"): (["TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], ["SELECTOR"], _service_row),
    ("", "namespaces"): (["STATUS", "AGE"], [], _namespace_row),
    ("", "configmaps"): (["DATA", "AGE"], [], _data_row),
    ("", "secrets"): (["TYPE", "DATA", "AGE"], [], _secret_row),
    ("", "events"): (["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], [], _event_row),
    ("apps", "deployments"): (["READY", "UP-TO-DATE", "AVAILABLE", "AGE"], [], _deployment_row),
    ("apps", "replicasets"): (["DESIRED", "CURRENT", "READY", "AGE"], [], _replicaset_row),
    ("batch", "jobs"): (["STATUS", "COMPLETIONS", "DURATION", "AGE"], [], _job_row),
    ("", "endpoints"): (["ENDPOINTS", "AGE"], [], _endpoints_row),
}


# (group, plural) -> the NAME cell, where kubectl prints more than the name ("x (default)").
NAMES: dict[tuple[str, str], Callable[[Obj], str]] = {}


def table_rows(
    ref: ResourceRef,
    items: list[Obj],
    wide: bool = False,
    with_namespace: bool = False,
    kind_prefix: bool = False,
) -> tuple[list[str], list[list[str]]]:
    """Header and rows for ``kray get``; ``kind_prefix`` names rows ``pod/web`` (several kinds)."""
    columns, wide_columns, row = COLUMNS.get((ref.group, ref.plural), (["AGE"], [], _generic_row))
    header = ["NAME", *columns, *(wide_columns if wide else [])]
    if with_namespace:
        header.insert(0, "NAMESPACE")
    rows = []
    named = NAMES.get((ref.group, ref.plural))
    for obj in items:
        name = named(obj) if named else str(_meta(obj).get("name", ""))
        cells = [f"{ref.kind_name}/{name}" if kind_prefix else name, *row(obj, wide)]
        if with_namespace:
            cells.insert(0, str(_meta(obj).get("namespace") or ""))
        rows.append(cells)
    return header, rows


def format_table(header: list[str] | None, rows: list[list[str]], widths: list[int] | None = None) -> str:
    """Columns padded to the widest cell plus three spaces, like kubectl's tabwriter."""
    all_rows = ([header] if header else []) + rows
    if not all_rows:
        return ""
    ncols = max(len(r) for r in all_rows)
    w = widths or [max(len(r[i]) for r in all_rows if i < len(r)) for i in range(ncols)]
    lines = []
    for r in all_rows:
        cells = [c.ljust(w[i]) if i < len(r) - 1 else c for i, c in enumerate(r)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def column_widths(header: list[str], rows: list[list[str]]) -> list[int]:
    all_rows = [header, *rows]
    return [max(len(r[i]) for r in all_rows if i < len(r)) for i in range(len(header))]


# --- -o yaml|json|name -------------------------------------------------------------------


def as_list(items: list[Obj]) -> Obj:
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}


def to_json(obj: Obj) -> str:
    return json.dumps(obj, indent=4)


def to_yaml(obj: Obj) -> str:
    import yaml  # only -o yaml pays for it

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return str(yaml.dump(obj, Dumper=dumper, sort_keys=False, default_flow_style=False)).rstrip("\n")


def object_name(ref: ResourceRef, obj: Obj) -> str:
    return f"{ref.kind_name}/{_meta(obj).get('name', '')}"


def has_printer(ref: ResourceRef) -> bool:
    """Whether ``kray get`` prints this kind itself (else it asks the server for a Table)."""
    return (ref.group, ref.plural) in COLUMNS


def _server_cell(value: Any, column: Obj) -> str:
    if value is None:
        return "<none>"
    if column.get("type") == "date" and isinstance(value, str):
        return age(value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def server_table_rows(
    ref: ResourceRef,
    columns: list[Obj],
    rows: list[Obj],
    wide: bool = False,
    with_namespace: bool = False,
    kind_prefix: bool = False,
) -> tuple[list[str], list[list[str]]]:
    """Header and rows from a server-printed meta.k8s.io/v1 Table (priority > 0: only wide)."""
    shown = [i for i, c in enumerate(columns) if wide or not c.get("priority")]
    header = [str(columns[i].get("name", "")).upper() for i in shown]
    if with_namespace:
        header.insert(0, "NAMESPACE")
    out = []
    for row in rows:
        cells = list(row.get("cells") or [])
        line = [_server_cell(cells[i] if i < len(cells) else None, columns[i]) for i in shown]
        if kind_prefix and shown and shown[0] == 0:
            line[0] = f"{ref.kind_name}/{line[0]}"
        if with_namespace:
            line.insert(0, str(((row.get("object") or {}).get("metadata") or {}).get("namespace") or ""))
        out.append(line)
    return header, out


from . import printers_more  # noqa: E402,F401  (registers the columns of the kinds it prints)
