"""``kray get``: list or fetch objects, print them as kubectl would, optionally watch."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from . import printers, templates
from .common import CliError, make_client, resolve_kind, split_kinds

if TYPE_CHECKING:
    from kray.client import Client, ResourceRef

Obj = dict[str, Any]


def _targets(client: Client, kinds: str, names: tuple[str, ...]) -> list[tuple[ResourceRef, list[str]]]:
    """(resource, names) pairs from ``pods a b``, ``pods,svc`` or ``pod/a svc/b``."""
    if "/" in kinds:
        pairs: dict[str, list[str]] = {}
        for arg in (kinds, *names):
            kind, sep, name = arg.partition("/")
            if not sep or not name:
                raise CliError(f"there is no need to specify a resource type as a separate argument: {arg}")
            pairs.setdefault(kind, []).append(name)
        return [(resolve_kind(client, k), n) for k, n in pairs.items()]
    kind_list = split_kinds(kinds)
    if names and len(kind_list) > 1:
        raise CliError("you must specify only one resource type when naming objects")
    return [(resolve_kind(client, k), list(names)) for k in kind_list]


def _fetch(
    client: Client,
    ref: ResourceRef,
    names: list[str],
    namespace: str | None,
    all_namespaces: bool,
    selector: str | None,
    field_selector: str | None,
    as_table: bool = False,
) -> tuple[list[Obj], str, list[str], list[Obj] | None]:
    """Objects (or, ``as_table``, the server's Table rows), the list's resourceVersion (to watch
    from), not-found messages, and the Table's column definitions."""
    from kray.client import NotFound

    if as_table:
        columns: list[Obj] = []
        if not names:
            table = client.table(
                ref, namespace, all_namespaces=all_namespaces, label_selector=selector, field_selector=field_selector
            )
            rv = str((table.get("metadata") or {}).get("resourceVersion", ""))
            return table.get("rows") or [], rv, [], table.get("columnDefinitions") or []
        rows: list[Obj] = []
        missing: list[str] = []
        for name in names:
            try:
                table = client.table(ref, namespace, name=name)
            except NotFound as exc:
                missing.append(exc.message)
                continue
            rows += table.get("rows") or []
            columns = table.get("columnDefinitions") or columns
        return rows, "", missing, columns
    if not names:
        result = client.list_raw(
            ref,
            namespace,
            all_namespaces=all_namespaces,
            label_selector=selector,
            field_selector=field_selector,
        )
        return result.items, result.resource_version, [], None
    items, missing = [], []
    for name in names:
        try:
            items.append(client.get_raw(ref, name, namespace))
        except NotFound as exc:
            missing.append(exc.message)
    return items, "", missing, None


FORMATS = ("wide", "yaml", "json", "name", "jsonpath=TEMPLATE", "custom-columns=SPEC")
_DOCUMENT_OUTPUTS = ("yaml", "json", "name", "jsonpath", "custom-columns")


def _check_output(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """-o as kubectl takes it; a template is parsed here so a bad one fails before any request."""
    if value is None:
        return None
    kind, sep, arg = value.partition("=")
    if kind in ("wide", "yaml", "json", "name") and not sep:
        return value
    try:
        if kind == "jsonpath" and sep:
            templates.parse(arg)
            return value
        if kind == "custom-columns" and sep:
            templates.parse_columns(arg)
            return value
    except templates.TemplateError as exc:
        raise click.BadParameter(str(exc)) from None
    raise click.BadParameter(f"unable to match a printer for {value!r}; allowed formats: {', '.join(FORMATS)}")


def _print_objects(output: str, blocks: list[tuple[ResourceRef, list[Obj]]], single: bool) -> None:
    everything = [obj for _, objs in blocks for obj in objs]
    kind, _, arg = output.partition("=")
    if kind == "custom-columns":
        columns = templates.parse_columns(arg)
        rows = [templates.column_cells(columns, obj) for obj in everything]
        click.echo(printers.format_table([h for h, _ in columns], rows))
        return
    if output == "name":
        for ref, objs in blocks:
            for obj in objs:
                click.echo(printers.object_name(ref, obj))
        return
    doc = everything[0] if single and len(everything) == 1 else printers.as_list(everything)
    if kind == "jsonpath":
        click.echo(templates.render(arg, doc), nl=False)  # kubectl adds no newline either
        return
    click.echo(printers.to_json(doc) if output == "json" else printers.to_yaml(doc))


@click.command("get")
@click.argument("kinds")
@click.argument("names", nargs=-1)
@click.option("-n", "--namespace", help="Namespace (default: default).")
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option("-l", "--selector", help="Label selector, e.g. app=web,tier!=db.")
@click.option("--field-selector", help="Field selector, e.g. status.phase=Running.")
@click.option("-o", "--output", callback=_check_output, metavar="FORMAT", help=f"Output format: {', '.join(FORMATS)}.")
@click.option("-w", "--watch", is_flag=True, help="After listing, watch for changes.")
@click.option("--show-labels", is_flag=True, help="A last column with all labels.")
@click.option("-L", "--label-columns", multiple=True, help="A column per label key (comma-separated or repeated).")
def get_cmd(
    kinds: str,
    names: tuple[str, ...],
    namespace: str | None,
    all_namespaces: bool,
    selector: str | None,
    field_selector: str | None,
    output: str | None,
    watch: bool,
    show_labels: bool,
    label_columns: tuple[str, ...],
) -> None:
    """Display one or many resources (KIND[,KIND] [NAME...] or KIND/NAME...)."""
    keys = [k.strip() for value in label_columns for k in value.split(",") if k.strip()]
    with make_client() as client:
        targets = _targets(client, kinds, names)
        all_namespaces = all_namespaces and not any(n for _, n in targets)
        blocks: list[tuple[ResourceRef, list[Obj]]] = []
        server_columns: dict[int, list[Obj]] = {}  # block index -> Table columns (server-printed kinds)
        missing: list[str] = []
        resource_version = ""
        for ref, ref_names in targets:
            # Kinds kray has no printer for (custom resources) print as the server's Table, with
            # the columns their definition declares, as kubectl does.
            as_table = output in (None, "wide") and not printers.has_printer(ref)
            items, resource_version, not_found, columns = _fetch(
                client, ref, ref_names, namespace, all_namespaces, selector, field_selector, as_table
            )
            if columns is not None:
                server_columns[len(blocks)] = columns
            blocks.append((ref, items))
            missing += not_found
        if output is not None and output.partition("=")[0] in _DOCUMENT_OUTPUTS:
            if any(objs for _, objs in blocks):
                _print_objects(output, blocks, single=bool(names) or "/" in kinds)
        elif not missing or any(objs for _, objs in blocks):
            labels = LabelColumns(keys, show_labels)
            _print_tables(
                blocks, output == "wide", all_namespaces, namespace or client.namespace, server_columns, labels
            )
        if missing:
            # Print what was found, then every miss; the last one is the command's error.
            for msg in missing[:-1]:
                click.echo(f"error: {msg}", err=True)
            raise CliError(missing[-1])
        if watch:
            if len(targets) != 1:
                raise CliError("you may only specify a single resource type when watching")
            ref, ref_names = targets[0]
            _watch(
                client,
                ref,
                ref_names,
                namespace,
                all_namespaces,
                selector,
                field_selector,
                output,
                resource_version,
            )


class LabelColumns:
    """kubectl's ``-L key`` (a column per key) and ``--show-labels`` (a LABELS column, last)."""

    def __init__(self, keys: list[str], show_all: bool) -> None:
        self.keys, self.show_all = keys, show_all

    def extend(self, header: list[str], rows: list[list[str]], items: list[Obj]) -> None:
        if not self.keys and not self.show_all:
            return
        header += [k.rsplit("/", 1)[-1].upper() for k in self.keys] + (["LABELS"] if self.show_all else [])
        for row, item in zip(rows, items, strict=False):
            meta = item.get("metadata") or (item.get("object") or {}).get("metadata") or {}
            labels: dict[str, str] = meta.get("labels") or {}
            row += [labels.get(k, "") for k in self.keys]
            if self.show_all:
                row.append(",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>")


def _print_tables(
    blocks: list[tuple[ResourceRef, list[Obj]]],
    wide: bool,
    all_namespaces: bool,
    namespace: str,
    server_columns: dict[int, list[Obj]],
    labels: LabelColumns | None = None,
) -> None:
    printed = False
    several = len(blocks) > 1
    for i, (ref, items) in enumerate(blocks):
        if not items:
            continue
        with_ns = all_namespaces and ref.namespaced
        if i in server_columns:
            header, rows = printers.server_table_rows(ref, server_columns[i], items, wide, with_ns, several)
        else:
            header, rows = printers.table_rows(ref, items, wide, with_ns, several)
        if labels is not None:
            labels.extend(header, rows, items)
        if printed:
            click.echo("")
        click.echo(printers.format_table(header, rows))
        printed = True
    if not printed:
        namespaced = any(ref.namespaced for ref, _ in blocks)
        where = f" in {namespace} namespace" if namespaced and not all_namespaces else ""
        click.echo(f"No resources found{where}.", err=True)


def _watch(
    client: Client,
    ref: ResourceRef,
    names: list[str],
    namespace: str | None,
    all_namespaces: bool,
    selector: str | None,
    field_selector: str | None,
    output: str | None,
    resource_version: str,
) -> None:
    """Stream changes as rows (or documents), starting after what was just printed (the list's
    resourceVersion; for named objects, from now, which replays their current state)."""
    if names:
        by_name = f"metadata.name={names[0]}"
        field_selector = f"{field_selector},{by_name}" if field_selector else by_name
    events = client.watch_raw(
        ref,
        namespace,
        all_namespaces=all_namespaces,
        resource_version=resource_version or None,
        label_selector=selector,
        field_selector=field_selector,
    )
    widths: list[int] | None = None
    try:
        for event in events:
            if event.type not in ("ADDED", "MODIFIED", "DELETED"):
                continue
            obj = event.object
            if output in ("json", "yaml"):
                click.echo(json.dumps(obj) if output == "json" else printers.to_yaml(obj) + "\n---")
            elif output == "name":
                click.echo(printers.object_name(ref, obj))
            elif output and output.startswith("jsonpath="):
                click.echo(templates.render(output.removeprefix("jsonpath="), obj))
            elif output and output.startswith("custom-columns="):
                columns = templates.parse_columns(output.removeprefix("custom-columns="))
                click.echo(printers.format_table(None, [templates.column_cells(columns, obj)]))
            else:
                header, rows = printers.table_rows(ref, [obj], output == "wide", all_namespaces and ref.namespaced)
                # Keep columns steady across events: never narrower than the first row printed.
                new = printers.column_widths(header, rows)
                widths = [max(a, b) for a, b in zip(widths, new, strict=False)] if widths else new
                click.echo(printers.format_table(None, rows, widths))
            sys.stdout.flush()
    except KeyboardInterrupt:
        return
