"""``kray patch KIND NAME -p PATCH [--type strategic|merge|json]`` (also ``KIND/NAME``).

The API server accepts all three of Kubernetes' patch content types, strategic merge patch
included (schema-less: lists of objects with a ``name`` merge by name), for every kind, custom
resources too; so, as in kubectl, strategic is the default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from .common import CliError, make_client, resolve_kind
from .targets import display_name, parse_resource_args

if TYPE_CHECKING:
    from kray.client.paths import PatchType

PATCH_TYPES = ("strategic", "merge", "json")


def parse_patch(text: str, patch_type: str) -> Any:
    """The patch document from JSON or YAML text (kubectl takes both); checked for its type's shape
    so a malformed patch fails before any request."""
    try:
        doc = json.loads(text)
    except ValueError:
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            # A MarkedYAMLError's ``problem`` is the useful part ("expected ',' or ']'...").
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise CliError(f"unable to parse {text!r}: {problem}") from None
    if patch_type == "json":
        if not isinstance(doc, list) or not all(isinstance(op, dict) for op in doc):
            raise CliError(f"unable to parse {text!r}: a json patch must be a list of operations")
        for i, op in enumerate(doc):
            if "op" not in op or "path" not in op:
                raise CliError(f"invalid json patch operation [{i}]: 'op' and 'path' are required")
    elif not isinstance(doc, dict):
        raise CliError(f"unable to parse {text!r}: a {patch_type} merge patch must be a JSON object")
    return doc


def _read_patch(patch: str | None, patch_file: str | None) -> str:
    if patch is not None and patch_file is not None:
        raise CliError("--patch and --patch-file are mutually exclusive")
    if patch_file is not None:
        try:
            return Path(patch_file).read_text()
        except OSError as exc:
            raise CliError(f"unable to read --patch-file {patch_file}: {exc.strerror or exc}") from None
    if patch is None or not patch.strip():
        raise CliError("must specify --patch or --patch-file containing the contents of the patch")
    return patch


@click.command("patch")
@click.argument("target", nargs=-1, required=True)
@click.option("-p", "--patch", help="The patch to apply (JSON or YAML).")
@click.option("--patch-file", help="A file holding the patch.")
@click.option(
    "--type",
    "patch_type",
    type=click.Choice(PATCH_TYPES),
    default="strategic",
    show_default=True,
    help="strategic merge patch (kray's is schema-less: lists of objects merge by their name), "
    "JSON merge patch (RFC 7386) or JSON patch (RFC 6902).",
)
@click.option("--subresource", type=click.Choice(["status"]), help="Patch this subresource instead.")
@click.option("-n", "--namespace", help="Namespace (default: default).")
@click.option("-o", "--output", type=click.Choice(["name", "json", "yaml"]), help="Print the patched object.")
def patch_cmd(
    target: tuple[str, ...],
    patch: str | None,
    patch_file: str | None,
    patch_type: str,
    subresource: str | None,
    namespace: str | None,
    output: str | None,
) -> None:
    """Update fields of one object with a strategic merge, JSON merge or JSON patch."""
    pairs = parse_resource_args(target)
    if len(pairs) != 1 or len(pairs[0][1]) != 1:
        raise CliError("patch needs exactly one object: KIND NAME (or KIND/NAME)")
    kind, (name,) = pairs[0]
    doc = parse_patch(_read_patch(patch, patch_file), patch_type)
    with make_client() as client:
        ref = resolve_kind(client, kind)
        before = client.get_raw(ref, name, namespace)
        after = client.patch_raw(ref, name, doc, namespace, cast("PatchType", patch_type), subresource)
    if output in ("json", "yaml"):
        from . import printers

        click.echo(printers.to_json(after) if output == "json" else printers.to_yaml(after))
        return
    shown = display_name(ref, name)
    if output == "name":
        click.echo(shown)
        return
    # The server writes nothing (and keeps the resourceVersion) when a patch changes nothing.
    unchanged = _resource_version(before) == _resource_version(after)
    click.echo(f"{shown} patched{' (no change)' if unchanged else ''}")


def _resource_version(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")
