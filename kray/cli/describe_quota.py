"""``kray describe quota NAME``: kubectl's page for a ResourceQuota.

Name, namespace, the scopes with what each selects, then the ``Resource  Used  Hard`` table over
status.hard (sorted, as kubectl), aligned the way kubectl's tabwriter aligns it (two spaces
between columns, the labels above sharing the first column).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kray.client import Client, ResourceRef

Obj = dict[str, Any]

# kubectl's helpTextForResourceQuotaScope.
SCOPE_HELP = {
    "Terminating": "Matches all pods that have an active deadline. These pods have a limited lifespan on a node "
    "before being actively terminated by the system.",
    "NotTerminating": "Matches all pods that do not have an active deadline. These pods usually include long "
    "running pods whose container command is not expected to terminate.",
    "BestEffort": "Matches all pods that do not have resource requirements set. These pods have a best effort "
    "quality of service.",
    "NotBestEffort": "Matches all pods that have at least one resource requirement set. These pods have a "
    "burstable or guaranteed quality of service.",
}


def tabbed(rows: list[list[str]]) -> list[str]:
    """Go's tabwriter (padding 2): every cell but a row's last is padded to its column's width."""
    widths: dict[int, int] = {}
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell))
    return ["".join(c.ljust(widths[i] + 2) for i, c in enumerate(row[:-1])) + row[-1] for row in rows]


def quota_rows(obj: Obj) -> list[list[str]]:
    """The page as rows of cells (pure: easy to test); a one-cell row is a line of its own."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    rows = [["Name:", str(meta.get("name", ""))], ["Namespace:", str(meta.get("namespace", ""))]]
    scopes = sorted(spec.get("scopes") or [])
    if scopes:
        rows.append(["Scopes:", ", ".join(scopes)])
        rows += [[f" * {SCOPE_HELP[s]}"] for s in scopes if s in SCOPE_HELP]
    expressions = (spec.get("scopeSelector") or {}).get("matchExpressions") or []
    if expressions:
        rows.append(["Scope Selector:", ""])
        for e in expressions:
            values = ", ".join(e.get("values") or [])
            rows.append([f"  {e.get('scopeName', '')} {e.get('operator', '')}", f"[{values}]" if values else ""])
    rows += [["Resource", "Used", "Hard"], ["--------", "----", "----"]]
    hard, used = status.get("hard") or {}, status.get("used") or {}
    rows += [[name, str(used.get(name, "0")), str(hard[name])] for name in sorted(hard)]
    return rows


def render_quota(obj: Obj) -> str:
    # A one-cell row (scope help) has no tab: like tabwriter, it ends the alignment block.
    lines: list[str] = []
    block: list[list[str]] = []
    for row in [*quota_rows(obj), []]:
        if len(row) > 1:
            block.append(row)
            continue
        lines += tabbed(block)
        block = []
        if row:
            lines.append(row[0])
    return "\n".join(line.rstrip() for line in lines)


def describe_quota(client: Client, ref: ResourceRef, obj: Obj) -> str:
    return render_quota(obj)
