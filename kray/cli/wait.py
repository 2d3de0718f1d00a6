"""``kray wait (KIND NAME | KIND/NAME | KIND -l SELECTOR) --for=...``: block until objects reach a state.

``--for=delete``, ``--for=create``, ``--for=condition=Ready[=true]`` and
``--for=jsonpath='{.status.phase}'=Running``, as kubectl takes them. Each object is read once
and then watched (field-selected by name, from the resourceVersion read), so nothing polls;
a watch the server ends (its timeoutSeconds, a compaction) is followed by a fresh read. One
deadline (``--timeout``, default 30s) covers every object, as in kubectl.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import click

from .common import CliError, make_client, resolve_kind
from .targets import check_selection, display_name, find_objects, parse_resource_args

if TYPE_CHECKING:
    from kray.client import Client, ResourceRef

Obj = dict[str, Any]
Outcome = Literal["met", "already-gone", "timeout"]

_GO_DURATION = re.compile(r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
A_WEEK = 7 * 24 * 3600.0  # kubectl's stand-in for "forever" when --timeout is negative


def parse_duration(text: str, flag: str = "--timeout") -> float:
    """Seconds from a Go duration (``30s``, ``2m``, ``1h30m``, ``500ms``, ``0``), as kubectl's flags take them."""
    value = text.strip()
    if value in ("0", "+0", "-0"):
        return 0.0
    if not _GO_DURATION.fullmatch(value):
        raise CliError(f'invalid duration "{text}" for {flag}: use a number with a unit, e.g. 30s, 2m, 1h')
    seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(value))
    return -seconds if value.startswith("-") else seconds


@dataclass(frozen=True)
class WaitFor:
    """A parsed ``--for``: ``what`` is delete, create, condition or jsonpath."""

    what: str
    name: str = ""  # the condition type, or the JSONPath expression
    value: str | None = None  # the wanted condition status / JSONPath value (None: the path exists)


def _split_jsonpath(text: str) -> tuple[str, str | None]:
    """``{.a.b}=v`` -> (``{.a.b}``, ``v``): the first '=' outside braces, brackets and quotes."""
    depth, quote = 0, ""
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "{[(":
            depth += 1
        elif char in "}])":
            depth -= 1
        elif char == "=" and depth == 0:
            return text[:i], text[i + 1 :]
    return text, None


def parse_for(text: str) -> WaitFor:
    if text.lower() in ("delete", "create"):
        return WaitFor(text.lower())
    kind, sep, rest = text.partition("=")
    if kind == "condition" and sep and rest:
        name, has_value, value = rest.partition("=")
        if not name:
            raise CliError(f"unrecognized condition: {text!r}")
        return WaitFor("condition", name, value if has_value else "true")
    if kind == "jsonpath" and sep and rest:
        expr, wanted = _split_jsonpath(rest.strip())
        if not expr.strip() or wanted == "":
            raise CliError(f"jsonpath wait format must be --for=jsonpath='{{.status.field}}'=VALUE, not {text!r}")
        from kray.crds.jsonpath import JsonPathError, compile_path

        try:
            compile_path(expr)
        except JsonPathError as exc:
            raise CliError(f"--for: {exc}") from None
        return WaitFor("jsonpath", expr.strip(), wanted)
    raise CliError(f"unrecognized condition: {text!r}")


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # as Go prints it: {.spec.suspend}=true
    return str(value)


def is_met(obj: Obj | None, wait_for: WaitFor) -> bool:
    """Whether ``obj`` (None: absent) is in the wanted state."""
    if wait_for.what == "delete":
        return obj is None
    if obj is None:
        return False
    if wait_for.what == "create":
        return True
    if wait_for.what == "condition":
        generation = (obj.get("metadata") or {}).get("generation")
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if str(cond.get("type", "")).lower() != wait_for.name.lower():
                continue
            observed = cond.get("observedGeneration")
            if observed is not None and generation is not None and observed < generation:
                return False  # the condition describes an older spec (kubectl checks this too)
            return str(cond.get("status", "")).lower() == str(wait_for.value).lower()
        return False
    from kray.crds.jsonpath import evaluate

    values = evaluate(wait_for.name, obj)
    if not values:
        return False
    if any(isinstance(v, dict | list) for v in values):
        raise CliError(f"jsonpath {wait_for.name} leads to a nested object or list, which cannot be compared")
    return wait_for.value is None or all(_as_text(v) == wait_for.value for v in values)


def wait_for_object(
    client: Client, ref: ResourceRef, name: str, namespace: str | None, wait_for: WaitFor, deadline: float
) -> Outcome:
    """Read, then watch one object until it is in the wanted state or the deadline passes."""
    from kray.client import Gone

    by_name = f"metadata.name={name}"
    first_read = True
    while True:
        listed = client.list_raw(ref, namespace, field_selector=by_name)
        obj = listed.items[0] if listed.items else None
        if obj is None and wait_for.what in ("condition", "jsonpath"):
            raise CliError(f'{ref.resource} "{name}" not found')
        if is_met(obj, wait_for):
            return "already-gone" if first_read and obj is None else "met"
        first_read = False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout"
        events = client.watch_raw(
            ref,
            namespace,
            resource_version=listed.resource_version or None,
            field_selector=by_name,
            timeout_seconds=max(1, math.ceil(remaining)),
        )
        try:
            for event in events:
                if event.type == "DELETED":
                    if wait_for.what == "delete":
                        return "met"
                    if wait_for.what != "create":
                        raise CliError(f'{ref.resource} "{name}" not found')
                elif event.type in ("ADDED", "MODIFIED") and is_met(event.object, wait_for):
                    return "met"
                if time.monotonic() >= deadline:
                    return "timeout"
        except Gone:
            pass  # the resourceVersion was compacted away: read again
        if time.monotonic() >= deadline:
            return "timeout"


@click.command("wait")
@click.argument("target", nargs=-1, required=True)
@click.option(
    "--for",
    "for_",
    required=True,
    metavar="CONDITION",
    help="delete, create, condition=NAME[=VALUE] or jsonpath='{.path}'=VALUE.",
)
@click.option("--timeout", default="30s", show_default=True, help="How long to wait (0: check once; <0: a week).")
@click.option("-l", "--selector", help="Wait for every object of KIND matching this label selector.")
@click.option("--all", "all_", is_flag=True, help="Wait for every object of KIND in the namespace.")
@click.option("-A", "--all-namespaces", is_flag=True, help="With -l or --all: across all namespaces.")
@click.option("-n", "--namespace", help="Namespace (default: default).")
def wait_cmd(
    target: tuple[str, ...],
    for_: str,
    timeout: str,
    selector: str | None,
    all_: bool,
    all_namespaces: bool,
    namespace: str | None,
) -> None:
    """Wait for objects to be deleted, created, or to reach a condition or a field value."""
    wait_for = parse_for(for_)
    seconds = parse_duration(timeout)
    deadline = time.monotonic() + (A_WEEK if seconds < 0 else seconds)
    pairs = parse_resource_args(target)
    check_selection(pairs, selector, all_)
    with make_client() as client:
        if any(names for _, names in pairs):
            # Named objects are waited for even when absent (--for=create/delete): no reads here.
            targets = [(resolve_kind(client, kind), name, namespace) for kind, names in pairs for name in names]
        else:
            found = find_objects(client, pairs, namespace, selector, all_namespaces)
            if not found and wait_for.what != "delete":
                raise CliError("no matching resources found")
            targets = [(f.ref, f.name, f.namespace) for f in found]
        for ref, name, ns in targets:
            outcome = wait_for_object(client, ref, name, ns, wait_for, deadline)
            if outcome == "timeout":
                raise CliError(f"timed out waiting for the condition on {ref.plural}/{name}")
            if outcome == "met":  # kubectl prints nothing for an object that was already gone
                click.echo(f"{display_name(ref, name)} condition met")
