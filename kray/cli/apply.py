"""``kray apply -f`` and ``kray create -f``.

Both check every document before writing any: parse, map apiVersion/kind to a served resource,
namespace consistency, and model validation where a local model exists. A mistake in the
third document therefore leaves the first two unapplied rather than half the file live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from .common import CliError, ref_for_manifest
from .manifests import Manifest, load_manifests

if TYPE_CHECKING:
    from kray.client import Client, ResourceRef

CRD_GROUP = "apiextensions.k8s.io"


@dataclass
class Planned:
    manifest: Manifest
    ref: ResourceRef

    @property
    def label(self) -> str:
        return f"{self.ref.kind_name}/{self.manifest.name}"


def _crd_refs(manifests: list[Manifest]) -> dict[tuple[str, str], ResourceRef]:
    """Resources defined by CustomResourceDefinitions in the same batch, so their instances can
    be checked before the CRD exists on the server (kubectl would refuse them)."""
    from kray.client import ResourceRef

    refs = {}
    for m in manifests:
        obj = m.obj
        is_crd = obj.get("kind") == "CustomResourceDefinition"
        if not is_crd or not str(obj.get("apiVersion")).startswith(CRD_GROUP):
            continue
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        for v in spec.get("versions") or []:
            if not (spec.get("group") and names.get("kind") and names.get("plural") and v.get("name")):
                continue
            ref = ResourceRef(
                group=spec["group"],
                version=v["name"],
                plural=names["plural"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                kind=names["kind"],
                singular=names.get("singular") or "",
                short_names=tuple(names.get("shortNames") or ()),
            )
            refs[(ref.api_version, ref.kind)] = ref
    return refs


def _local_model(api_version: str, kind: str) -> Any:
    try:
        import kray.crds  # noqa: F401  (registers the built-in kinds)
        from kray.crds.registry import REGISTRY, UnknownKindError
    except ImportError:
        return None
    try:
        return REGISTRY.get(api_version, kind).model
    except UnknownKindError:
        return None


def _validate_locally(m: Manifest) -> None:
    model = _local_model(m.obj["apiVersion"], m.obj["kind"])
    if model is None:
        return  # a custom resource: only the server knows its schema
    from kray.crds.validation import ValidationFailed, validate_object

    try:
        validate_object(model, m.obj)
    except ValidationFailed as exc:
        raise CliError(f"{m.where}: {exc.message}") from None


def plan(client: Client, manifests: list[Manifest], namespace: str | None, need_name: bool) -> list[Planned]:
    """Check every manifest; raise CliError for the first bad one before anything is written."""
    batch_crds = _crd_refs(manifests)
    planned = []
    for m in manifests:
        api_version, kind = m.obj["apiVersion"], m.obj["kind"]
        if (api_version, kind) in batch_crds:
            ref = batch_crds[(api_version, kind)]
        else:
            try:
                ref = ref_for_manifest(client, api_version, kind)
            except CliError as exc:
                raise CliError(f"{m.where}: {exc}") from None
        meta = m.obj.setdefault("metadata", {})
        if need_name and not meta.get("name"):
            raise CliError(f"{m.where}: {kind} needs metadata.name (generateName works only with create)")
        if ref.namespaced:
            obj_ns = meta.get("namespace")
            if namespace and obj_ns and obj_ns != namespace:
                raise CliError(
                    f'{m.where}: the namespace from the provided object "{obj_ns}" does not match the '
                    f"namespace \"{namespace}\". You must pass '--namespace={obj_ns}' to perform this "
                    "operation."
                )
            meta["namespace"] = obj_ns or namespace or client.namespace
        else:
            meta.pop("namespace", None)
        _validate_locally(m)
        planned.append(Planned(m, ref))
    return planned


def _client_dry_run(client: Client, p: Planned) -> str:
    """What `apply` would do, found by reading only (kubectl's --dry-run=client)."""
    from kray.client import NotFound
    from kray.client.ops import merge_for_apply

    try:
        live = client.get_raw(p.ref, p.manifest.name, p.manifest.obj["metadata"].get("namespace"))
    except NotFound:
        return "created"
    return "unchanged" if merge_for_apply(live, p.manifest.obj) is None else "configured"


def _run(
    files: tuple[str, ...], recursive: bool, namespace: str | None, create_only: bool, dry_run: str = "none"
) -> None:
    from kray.client import ApiError

    from .common import make_client

    manifests = load_manifests(list(files), recursive)
    suffix = {"none": "", "client": " (dry run)", "server": " (server dry run)"}[dry_run]
    with make_client() as client:
        planned = plan(client, manifests, namespace, need_name=not create_only)
        failures = []
        for p in planned:
            try:
                if create_only:
                    created = client.create_raw(p.manifest.obj, p.ref)
                    name = (created.get("metadata") or {}).get("name") or p.manifest.name
                    click.echo(f"{p.ref.kind_name}/{name} created")
                elif dry_run == "client":
                    click.echo(f"{p.label} {_client_dry_run(client, p)}{suffix}")
                else:
                    result = client.apply_raw(p.manifest.obj, p.ref, dry_run=dry_run == "server")
                    click.echo(f"{p.label} {result.action}{suffix}")
            except ApiError as exc:
                # The server disagreed (a check only it can make): report, go on with the rest.
                failures.append(f"{p.manifest.where}: {exc.message}")
            if p.manifest.obj.get("kind") == "CustomResourceDefinition":
                client.invalidate_discovery()
        for msg in failures[:-1]:
            click.echo(f"error: {msg}", err=True)
        if failures:
            raise CliError(failures[-1])


_files = click.option("-f", "--filename", "files", multiple=True, required=True, help="File, directory or - (stdin).")
_recursive = click.option("-R", "--recursive", is_flag=True, help="Descend into directories.")
_namespace = click.option("-n", "--namespace", help="Namespace for objects that do not name one.")


@click.command("apply")
@_files
@_recursive
@_namespace
@click.option(
    "--dry-run",
    type=click.Choice(["none", "client", "server"]),
    default="none",
    help="client: say what would change, reading only; server: the server admits everything and stores nothing.",
)
def apply_cmd(files: tuple[str, ...], recursive: bool, namespace: str | None, dry_run: str) -> None:
    """Create objects, or update them to match the manifests."""
    _run(files, recursive, namespace, create_only=False, dry_run=dry_run)


class _CreateGroup(click.Group):
    """``kray create -f FILE`` on its own; the imperative generators (``kray create secret ...``,
    in kray.cli.create) as subcommands, imported only when one is named or help is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from .create import SUBCOMMANDS

        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        from .create import ALIASES, SUBCOMMANDS

        return SUBCOMMANDS.get(ALIASES.get(cmd_name, cmd_name))


@click.group("create", cls=_CreateGroup, invoke_without_command=True)
@click.option("-f", "--filename", "files", multiple=True, help="File, directory or - (stdin).")
@_recursive
@_namespace
@click.pass_context
def create_cmd(ctx: click.Context, files: tuple[str, ...], recursive: bool, namespace: str | None) -> None:
    """Create objects from manifests (fails for existing ones), or one object from flags."""
    if ctx.invoked_subcommand is not None:
        if files:
            raise click.UsageError("-f/--filename cannot be combined with a subcommand", ctx)
        return
    if not files:  # what click said when -f was a required option
        param = next(p for p in ctx.command.params if p.name == "files")
        raise click.MissingParameter(ctx=ctx, param=param)
    _run(files, recursive, namespace, create_only=True)
