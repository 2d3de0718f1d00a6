"""``kray label`` and ``kray annotate``: set (``k=v``) and remove (``k-``) metadata keys, kubectl's way.

An existing key keeps its value unless ``--overwrite``; keys and values are checked with the API
server's own validators before any request. Each object is written with a JSON merge patch that
carries the resourceVersion it was planned from, so a concurrent change is a Conflict, never
silently overwritten: the object is then read again and the rules applied to what is there now.
Every object is planned before the first write, so one refusal writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from .common import CliError, make_client
from .targets import Found, check_selection, display_name, find_objects, parse_resource_args

if TYPE_CHECKING:
    from kray.client import Client

CHANGE_CAUSE = "kubernetes.io/change-cause"  # kubectl lets annotate overwrite it without --overwrite
_CONFLICT_RETRIES = 5


@dataclass(frozen=True)
class MetaEdit:
    """What one command asks for: ``section`` is the metadata map, ``labels`` or ``annotations``."""

    section: str
    assign: dict[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()

    @property
    def noun(self) -> str:
        return "label" if self.section == "labels" else "annotation"


def split_resources_and_pairs(args: tuple[str, ...] | list[str], pair_type: str) -> tuple[list[str], list[str]]:
    """kubectl's GetResourcesAndPairs: resources first, then ``k=v`` / ``k-`` arguments."""
    resources: list[str] = []
    pairs: list[str] = []
    for arg in args:
        is_pair = ("=" in arg and not arg.startswith("=")) or (arg.endswith("-") and arg != "-")
        if is_pair:
            pairs.append(arg)
        elif pairs:
            raise CliError(f"all resources must be specified before {pair_type} changes: {arg}")
        else:
            resources.append(arg)
    return resources, pairs


def _key_errors(key: str, noun: str) -> list[str]:
    from kray.crds.validation import is_qualified_name

    # Annotation keys are checked lower-cased, as the API server does (validate_annotations).
    return is_qualified_name(key.lower() if noun == "annotation" else key)


def parse_edit(pairs: list[str], field_name: str) -> MetaEdit:
    """``k=v`` and ``k-`` arguments as a MetaEdit; the first bad key or value is the error."""
    noun = "label" if field_name == "labels" else "annotation"
    if not pairs:
        raise CliError(f"at least one {noun} update is required")
    assign: dict[str, str] = {}
    remove: list[str] = []
    for spec in pairs:
        if "=" in spec:
            # Label values may not contain '='; annotation values may (kubectl splits once).
            parts = spec.split("=") if noun == "label" else spec.split("=", 1)
            if len(parts) != 2 or not parts[0]:
                raise CliError(f"invalid {noun} spec: {spec}")
            key, value = parts
            if noun == "label":
                from kray.crds.validation import is_valid_label_value

                if errs := is_valid_label_value(value):
                    raise CliError(f"invalid label value: {spec!r}: {'; '.join(errs)}")
            assign[key] = value
        else:
            key = spec[:-1]
            remove.append(key)
        if errs := _key_errors(key, noun):
            raise CliError(f"invalid {noun} key {key!r}: {'; '.join(errs)}")
    if any(key in assign for key in remove):
        raise CliError(
            f"can not both modify and remove {'a label' if noun == 'label' else 'an annotation'} in the same command"
        )
    return MetaEdit(field_name, assign, tuple(remove))


def plan_change(current: dict[str, str], edit: MetaEdit, overwrite: bool) -> tuple[dict[str, str | None], list[str]]:
    """The merge-patch map (``None`` removes a key) and the keys to remove that are absent.

    Without ``overwrite`` a key that already holds a different value is refused, with kubectl's message.
    """
    if not overwrite:
        clashes = [
            f"'{key}' already has a value ({current[key]})"
            for key, value in sorted(edit.assign.items())
            if key in current and current[key] != value and not (edit.noun == "annotation" and key == CHANGE_CAUSE)
        ]
        if clashes and edit.noun == "label":
            messages = [f"{c}, and --overwrite is false" for c in clashes]
            raise CliError(messages[0] if len(messages) == 1 else f"[{', '.join(messages)}]")
        if clashes:
            raise CliError(f"--overwrite is false but found the following declared annotation(s): {'; '.join(clashes)}")
    changes: dict[str, str | None] = {k: v for k, v in edit.assign.items() if current.get(k) != v}
    missing = [key for key in edit.remove if key not in current]
    changes.update({key: None for key in edit.remove if key in current})
    return changes, missing


@dataclass
class _Planned:
    target: Found
    changes: dict[str, str | None]
    missing: list[str]


def _plan(target: Found, edit: MetaEdit, overwrite: bool) -> _Planned:
    current = (target.obj.get("metadata") or {}).get(edit.section) or {}
    changes, missing = plan_change(dict(current), edit, overwrite)
    return _Planned(target, changes, missing)


def _write(client: Client, planned: _Planned, edit: MetaEdit, overwrite: bool, resource_version: str | None) -> bool:
    """Send the planned change; on a lost race re-read and re-plan. Whether anything changed."""
    from kray.client import Conflict

    target = planned.target
    for attempt in range(_CONFLICT_RETRIES):
        if not planned.changes:
            return False
        rv = resource_version or (target.obj.get("metadata") or {}).get("resourceVersion")
        patch: dict[str, Any] = {"metadata": {"resourceVersion": rv, edit.section: planned.changes}}
        try:
            client.patch_raw(target.ref, target.name, patch, target.namespace, "merge")
            return True
        except Conflict:
            # A --resource-version the user named is a precondition: report it, never retry.
            if resource_version or attempt == _CONFLICT_RETRIES - 1:
                raise
        fresh = Found(target.ref, client.get_raw(target.ref, target.name, target.namespace))
        planned = _plan(fresh, edit, overwrite)
        target = fresh
    raise AssertionError("unreachable")


def _run(
    args: tuple[str, ...],
    field_name: str,
    overwrite: bool,
    selector: str | None,
    all_: bool,
    all_namespaces: bool,
    namespace: str | None,
    resource_version: str | None,
    list_: bool = False,
) -> None:
    resources, pairs = split_resources_and_pairs(args, "label" if field_name == "labels" else "annotation")
    targets = parse_resource_args(resources)
    check_selection(targets, selector, all_)
    edit = MetaEdit(field_name) if list_ and not pairs else parse_edit(pairs, field_name)
    with make_client() as client:
        found = find_objects(client, targets, namespace, selector, all_namespaces)
        if not found:
            raise CliError("no objects passed to " + ("label" if field_name == "labels" else "annotate"))
        if list_:
            for target in found:
                for key, value in sorted(((target.obj.get("metadata") or {}).get(field_name) or {}).items()):
                    click.echo(f"{key}={value}")
            return
        plans = [_plan(target, edit, overwrite) for target in found]  # all refusals before any write
        for planned in plans:
            for key in planned.missing:
                click.echo(f'{edit.noun} "{key}" not found.')
            changed = _write(client, planned, edit, overwrite, resource_version)
            shown = display_name(planned.target.ref, planned.target.name)
            if field_name == "labels":
                click.echo(f"{shown} {'labeled' if changed else 'not labeled'}")
            else:
                click.echo(f"{shown} annotated")  # kubectl says so even when nothing changed


def _common_options(func: Any) -> Any:
    options = [
        click.argument("args", nargs=-1, required=True),
        click.option("--overwrite", is_flag=True, help="Allow replacing a key's existing value."),
        click.option("-l", "--selector", help="Act on every object of KIND matching this label selector."),
        click.option("--all", "all_", is_flag=True, help="Act on every object of KIND in the namespace."),
        click.option("-A", "--all-namespaces", is_flag=True, help="With -l or --all: across all namespaces."),
        click.option("-n", "--namespace", help="Namespace (default: default)."),
        click.option("--resource-version", help="Write only if the object is still at this resourceVersion."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command("label")
@_common_options
@click.option("--list", "list_", is_flag=True, help="Print the objects' labels instead of changing them.")
def label_cmd(
    args: tuple[str, ...],
    overwrite: bool,
    selector: str | None,
    all_: bool,
    all_namespaces: bool,
    namespace: str | None,
    resource_version: str | None,
    list_: bool,
) -> None:
    """Update the labels of objects: KIND NAME k=v k2- (or KIND/NAME, or KIND -l SELECTOR|--all)."""
    _run(args, "labels", overwrite, selector, all_, all_namespaces, namespace, resource_version, list_)


@click.command("annotate")
@_common_options
@click.option("--list", "list_", is_flag=True, help="Print the objects' annotations instead of changing them.")
def annotate_cmd(
    args: tuple[str, ...],
    overwrite: bool,
    selector: str | None,
    all_: bool,
    all_namespaces: bool,
    namespace: str | None,
    resource_version: str | None,
    list_: bool,
) -> None:
    """Update the annotations of objects: KIND NAME k=v k2- (or KIND/NAME, or KIND -l SELECTOR|--all)."""
    _run(args, "annotations", overwrite, selector, all_, all_namespaces, namespace, resource_version, list_)
