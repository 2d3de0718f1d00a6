"""``kray describe KIND NAME...``: one readable page per object, with its events."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import click

from . import printers
from .common import CliError, make_client, resolve_kind

if TYPE_CHECKING:
    from kray.client import Client, ResourceRef

Obj = dict[str, Any]
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def _title(key: str) -> str:
    """'containerPort' -> 'Container Port', as kubectl describe prints unknown fields."""
    text = _CAMEL.sub(r" \1", key)
    return text[:1].upper() + text[1:]


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "<none>" if value is None or value == "" else str(value)


def render(value: Any, indent: int = 0) -> list[str]:
    """A nested structure as indented 'Key: value' lines (lists of maps as '-' items)."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        # Values of one map start in one column, as in kubectl describe.
        width = max((len(_title(k)) for k in value), default=0) + 3
        for key, item in value.items():
            label = f"{_title(key)}:"
            if isinstance(item, (dict, list)) and item:
                if isinstance(item, list) and all(not isinstance(i, (dict, list)) for i in item):
                    lines.append(f"{pad}{label:<{width}}{', '.join(_scalar(i) for i in item)}")
                else:
                    lines.append(f"{pad}{label}")
                    lines.extend(render(item, indent + 2))
            else:
                shown = "<none>" if isinstance(item, (dict, list)) else _scalar(item)
                lines.append(f"{pad}{label:<{width}}{shown}")
    elif isinstance(value, list):
        for item in value:
            sub = render(item, indent + 2)
            if sub:
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(f"{pad}{_scalar(value)}")
    return lines


def _mapping(label: str, values: dict[str, str] | None) -> list[str]:
    if not values:
        return [f"{label}<none>"]
    pairs = [f"{k}={v}" for k, v in sorted(values.items())]
    return [f"{label}{pairs[0]}", *(" " * len(label) + p for p in pairs[1:])]


def _events_for(client: Client, obj: Obj, ref: ResourceRef) -> list[Obj] | None:
    """Events whose involvedObject is this object; None when the server has no events."""
    from kray.client import ApiError, UnknownResource

    meta = obj.get("metadata") or {}
    try:
        events_ref = client.resolve("events")
        items = client.list_raw(events_ref, meta.get("namespace") or "default").items
    except (UnknownResource, ApiError):
        return None
    uid, name, kind = meta.get("uid"), meta.get("name"), obj.get("kind") or ref.kind

    def matches(ev: Obj) -> bool:
        inv = ev.get("involvedObject") or {}
        if uid and inv.get("uid"):
            return bool(inv["uid"] == uid)
        return bool(inv.get("name") == name and inv.get("kind") == kind)

    found = [e for e in items if matches(e)]
    return sorted(found, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))


def header(ref: ResourceRef, obj: Obj) -> list[str]:
    """Name, namespace, labels, annotations, kind, age, owners: the top of every page."""
    meta = obj.get("metadata") or {}
    label_w = "Annotations:  "
    lines = [f"{'Name:':<{len(label_w)}}{meta.get('name', '')}"]
    if ref.namespaced:
        lines.append(f"{'Namespace:':<{len(label_w)}}{meta.get('namespace', '')}")
    lines += _mapping(f"{'Labels:':<{len(label_w)}}", meta.get("labels"))
    lines += _mapping(label_w, meta.get("annotations"))
    lines.append(f"API Version:  {obj.get('apiVersion', ref.api_version)}")
    lines.append(f"Kind:         {obj.get('kind', ref.kind)}")
    created = meta.get("creationTimestamp")
    if created:
        lines.append(f"Created:      {created} ({printers.age(created)} ago)")
    if meta.get("deletionTimestamp"):
        lines.append(f"Deleting:     since {meta['deletionTimestamp']}")
    for owner in meta.get("ownerReferences") or []:
        lines.append(f"Controlled By:  {owner.get('kind')}/{owner.get('name')}")
    return lines


def conditions_table(conditions: list[Obj] | None) -> list[str]:
    if not conditions:
        return []
    rows = [
        [str(c.get("type", "")), str(c.get("status", "")), c.get("reason") or "", c.get("message") or ""]
        for c in conditions
    ]
    table = printers.format_table(["Type", "Status", "Reason", "Message"], rows)
    return ["Conditions:", *("  " + line for line in table.splitlines())]


def events_table(client: Client, ref: ResourceRef, obj: Obj) -> list[str]:
    events = _events_for(client, obj, ref)
    if not events:
        return ["Events:       <none>"]
    rows = [
        [
            e.get("type") or "",
            e.get("reason") or "",
            printers.age(e.get("lastTimestamp") or e.get("eventTime")),
            ((e.get("source") or {}).get("component") or e.get("reportingComponent") or ""),
            " ".join(str(e.get("message") or "").split()),
        ]
        for e in events
    ]
    table = printers.format_table(["Type", "Reason", "Age", "From", "Message"], rows)
    return ["Events:", *("  " + line for line in table.splitlines())]


def describe(client: Client, ref: ResourceRef, obj: Obj) -> str:
    if (ref.group, ref.plural) == ("kray.io", "trainingjobs"):
        from .describe_training import describe_training_job

        return describe_training_job(client, ref, obj)
    if (ref.group, ref.plural) == ("scheduling.kray.io", "podgroups"):
        from .describe_podgroup import describe_pod_group

        return describe_pod_group(client, ref, obj)
    if (ref.group, ref.plural) == ("", "resourcequotas"):
        from .describe_quota import describe_quota

        return describe_quota(client, ref, obj)
    if (ref.group, ref.plural) == ("", "nodes"):
        from .describe_node import describe_node

        return describe_node(client, ref, obj)
    lines = header(ref, obj)
    if ref.group == "" and ref.plural == "pods":
        lines.append(f"Status:       {printers.pod_status(obj)}")
    for section in ("spec", "data"):
        if obj.get(section):
            lines.append(f"{_title(section)}:")
            lines += render(obj[section], 2)
    status = dict(obj.get("status") or {})
    conditions = status.pop("conditions", None)
    if status:
        lines.append("Status Details:" if ref.plural == "pods" else "Status:")
        lines += render(status, 2)
    lines += conditions_table(conditions)
    lines += events_table(client, ref, obj)
    return "\n".join(lines)


@click.command("describe")
@click.argument("kind")
@click.argument("names", nargs=-1)
@click.option("-n", "--namespace", help="Namespace (default: default).")
@click.option("-l", "--selector", help="Describe every object matching this label selector.")
def describe_cmd(kind: str, names: tuple[str, ...], namespace: str | None, selector: str | None) -> None:
    """Show details of objects and their events."""
    if "/" in kind:
        kind, _, first = kind.partition("/")
        names = (first, *names)
    with make_client() as client:
        ref = resolve_kind(client, kind)
        if names:
            objs = [client.get_raw(ref, name, namespace) for name in names]
        else:
            objs = client.list_raw(ref, namespace, label_selector=selector).items
            if not objs:
                raise CliError(f"no {ref.plural} found")
        click.echo("\n\n".join(describe(client, ref, obj) for obj in objs))
