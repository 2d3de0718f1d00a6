"""``kray delete KIND NAME... | -f FILE | KIND -l SELECTOR | KIND --all``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .common import CliError, make_client, ref_for_manifest, resolve_kind

if TYPE_CHECKING:
    from kray.client import Client, ResourceRef


def _targets(
    client: Client,
    args: tuple[str, ...],
    files: tuple[str, ...],
    namespace: str | None,
    selector: str | None,
    all_: bool,
) -> list[tuple[ResourceRef, str, str | None]]:
    """(resource, name, namespace) to delete, all resolved before the first delete is sent."""
    if files:
        from .manifests import load_manifests

        if args:
            raise CliError("specify either -f or KIND NAME..., not both")
        out = []
        for m in load_manifests(list(files)):
            ref = ref_for_manifest(client, m.obj["apiVersion"], m.obj["kind"])
            out.append((ref, m.name, (m.obj.get("metadata") or {}).get("namespace") or namespace))
        return out
    if not args:
        raise CliError("you must provide one or more resources by argument or filename (-f)")
    if "/" in args[0]:
        out = []
        for arg in args:
            kind, _, name = arg.partition("/")
            out.append((resolve_kind(client, kind), name, namespace))
        return out
    refs = [resolve_kind(client, k) for k in args[0].split(",") if k]
    names = args[1:]
    if names and (selector or all_):
        raise CliError("names cannot be combined with --selector or --all")
    if names:
        if len(refs) != 1:
            raise CliError("you must specify only one resource type when naming objects")
        return [(refs[0], name, namespace) for name in names]
    if not (selector or all_):
        raise CliError(
            f'resource(s) were provided, but no name was specified (use -l or --all to delete many "{args[0]}")'
        )
    out = []
    for ref in refs:
        for obj in client.list_raw(ref, namespace, label_selector=selector).items:
            meta = obj.get("metadata") or {}
            out.append((ref, str(meta.get("name")), meta.get("namespace")))
    return out


@click.command("delete")
@click.argument("args", nargs=-1)
@click.option("-f", "--filename", "files", multiple=True, help="Delete the objects in these manifests.")
@click.option("-n", "--namespace", help="Namespace (default: default).")
@click.option("-l", "--selector", help="Delete every object of KIND matching this label selector.")
@click.option("--all", "all_", is_flag=True, help="Delete every object of KIND in the namespace.")
@click.option("--ignore-not-found", is_flag=True, help="Treat a missing object as deleted.")
@click.option(
    "--cascade",
    type=click.Choice(["background", "foreground", "orphan"]),
    default="background",
    show_default=True,
    help="How dependents (ownerReferences) are deleted.",
)
def delete_cmd(
    args: tuple[str, ...],
    files: tuple[str, ...],
    namespace: str | None,
    selector: str | None,
    all_: bool,
    ignore_not_found: bool,
    cascade: str,
) -> None:
    """Delete objects by kind and name, by manifest, or by label selector."""
    from kray.client import NotFound

    with make_client() as client:
        targets = _targets(client, args, files, namespace, selector, all_)
        if not targets and (selector or all_):
            click.echo("No resources found", err=True)
        missing = []
        for ref, name, ns in targets:
            try:
                client.delete_raw(ref, name, ns, propagation_policy=cascade.capitalize())
            except NotFound as exc:
                if not ignore_not_found:
                    missing.append(exc.message)
                continue
            click.echo(f'{ref.kind_name} "{name}" deleted')
        for msg in missing[:-1]:
            click.echo(f"error: {msg}", err=True)
        if missing:
            raise CliError(missing[-1])
