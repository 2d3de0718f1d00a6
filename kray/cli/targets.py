"""Which objects a verb acts on: ``KIND NAME...``, ``KIND/NAME...``, or ``KIND -l SELECTOR|--all``.

Shared by ``patch``, ``label``, ``annotate`` and ``wait``. ``parse_resource_args`` is pure;
``find_objects`` resolves kinds and reads the objects (all before the caller writes anything).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .common import CliError, resolve_kind, split_kinds

if TYPE_CHECKING:
    from kray.client import Client, ResourceRef

Obj = dict[str, Any]


def parse_resource_args(args: list[str] | tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """(kind, names) pairs from ``pods a b``, ``pod/a svc/b`` or ``pods,svc`` (no names)."""
    if not args:
        raise CliError("you must specify the type of resource (e.g. pods, nodes)")
    if "/" in args[0]:
        pairs: dict[str, list[str]] = {}
        for arg in args:
            kind, sep, name = arg.partition("/")
            if not sep or not kind or not name:
                raise CliError(f"there is no need to specify a resource type as a separate argument: {arg}")
            pairs.setdefault(kind, []).append(name)
        return list(pairs.items())
    kinds = split_kinds(args[0])
    if not kinds:
        raise CliError(f"invalid resource type {args[0]!r}")
    names = list(args[1:])
    for name in names:
        if "/" in name:
            raise CliError(f"there is no need to specify a resource type as a separate argument: {name}")
    if names and len(kinds) > 1:
        raise CliError("you must specify only one resource type when naming objects")
    return [(kind, names) for kind in kinds]


@dataclass
class Found:
    """One object a verb will act on, with the resource it belongs to."""

    ref: ResourceRef
    obj: Obj

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str | None:
        return (self.obj.get("metadata") or {}).get("namespace")


def check_selection(pairs: list[tuple[str, list[str]]], selector: str | None, all_: bool) -> None:
    """kubectl's rules: names or ``-l`` or ``--all``, exactly one way of choosing objects."""
    named = any(names for _, names in pairs)
    if named and (selector or all_):
        raise CliError("names cannot be provided when a selector (-l) or --all is specified")
    if selector and all_:
        raise CliError("setting 'all' parameter with a selector (-l) is not allowed")
    if not named and not selector and not all_:
        kinds = ",".join(kind for kind, _ in pairs)
        raise CliError(f'resource(s) were provided, but no name was specified (use -l or --all for every "{kinds}")')


def find_objects(
    client: Client,
    pairs: list[tuple[str, list[str]]],
    namespace: str | None,
    selector: str | None = None,
    all_namespaces: bool = False,
) -> list[Found]:
    """The named objects (a missing one is the command's error), or every object ``selector``
    matches (``None`` with no names: every object of the kind)."""
    found: list[Found] = []
    for kind, names in pairs:
        ref = resolve_kind(client, kind)
        if names:
            found += [Found(ref, client.get_raw(ref, name, namespace)) for name in names]
        else:
            listed = client.list_raw(ref, namespace, all_namespaces=all_namespaces, label_selector=selector)
            found += [Found(ref, obj) for obj in listed.items]
    return found


def display_name(ref: ResourceRef, name: str) -> str:
    """``pod/web`` / ``deployment.apps/web``: kubectl's ``-o name`` form."""
    return f"{ref.kind_name}/{name}"
