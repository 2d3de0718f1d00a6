"""``kray diff -f FILE``: what ``kray apply -f FILE`` would change, as kubectl diff shows it.

For every manifest the live object is compared with what the server says it would store after
the apply (the same create-or-merge, sent with ``dryRun=All``: defaulting, validation and
admission run, nothing is written). The output is ``diff -u -N`` between a LIVE and a MERGED
copy of each object as YAML, ``metadata.managedFields`` masked. As kubectl: exit 0 when nothing
would change, 1 when something would, 2 or more on an error. ``KUBECTL_EXTERNAL_DIFF`` (or
``KRAY_EXTERNAL_DIFF``) names a program to run on the two folders instead, as kubectl does.
"""

from __future__ import annotations

import difflib
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import click
import yaml

from .apply import Planned, plan
from .manifests import load_manifests

DIFF_ERROR = 2


def _yaml(obj: dict[str, Any] | None) -> str:
    if obj is None:
        return ""
    obj = dict(obj)
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    obj["metadata"] = meta
    # Sorted keys: the server may answer the fields of a dry run in another order than it
    # stores them, and only values should show as changes.
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False)


def _file_name(p: Planned) -> str:
    """kubectl's name for an object's file: group.version.Kind.namespace.name."""
    ref, meta = p.ref, p.manifest.obj.get("metadata") or {}
    parts = [ref.api_version.replace("/", "."), ref.kind, meta.get("namespace") or "", p.manifest.name]
    return ".".join(x for x in parts if x)


def _pairs(files: tuple[str, ...], recursive: bool, namespace: str | None) -> list[tuple[str, str, str]]:
    """(file name, live YAML, merged YAML) per manifest."""
    from kray.client import NotFound
    from kray.client.ops import merge_for_apply

    from .common import make_client

    out = []
    manifests = load_manifests(list(files), recursive)
    with make_client() as client:
        for p in plan(client, manifests, namespace, need_name=True):
            ns = p.manifest.obj["metadata"].get("namespace")
            # What apply would do (create, or PUT the merge), sent as a dry run: one read, at
            # most one write, and nothing written when the live object already matches.
            obj = p.manifest.obj
            try:
                live: dict[str, Any] | None = client.get_raw(p.ref, p.manifest.name, ns)
            except NotFound:
                live = None
            if live is None:
                merged = client.create_raw(obj, p.ref, dry_run=True)
            else:
                change = merge_for_apply(live, obj)
                merged = live if change is None else client.update_raw(change, p.ref, dry_run=True)
            out.append((_file_name(p), _yaml(live), _yaml(merged)))
    return out


def _external(program: str, pairs: list[tuple[str, str, str]]) -> int:
    with tempfile.TemporaryDirectory(prefix="kray-diff-") as tmp:
        live_dir, merged_dir = Path(tmp) / "LIVE", Path(tmp) / "MERGED"
        for folder, index in ((live_dir, 1), (merged_dir, 2)):
            folder.mkdir()
            for pair in pairs:
                (folder / pair[0]).write_text(pair[index])
        return subprocess.run([*shlex.split(program), str(live_dir), str(merged_dir)]).returncode


@click.command("diff")
@click.option("-f", "--filename", "files", multiple=True, required=True, help="File, directory or - (stdin).")
@click.option("-R", "--recursive", is_flag=True, help="Descend into directories.")
@click.option("-n", "--namespace", help="Namespace for objects that do not name one.")
def diff_cmd(files: tuple[str, ...], recursive: bool, namespace: str | None) -> None:
    """Show what applying the manifests would change (exit 1 when something would)."""
    from .common import user_error_message

    try:
        pairs = _pairs(files, recursive, namespace)
    except Exception as exc:  # as kubectl: an error is exit 2 or more, never "differences" (1)
        message = user_error_message(exc)
        if message is None:
            raise
        click.echo(f"error: {message}", err=True)
        raise click.exceptions.Exit(DIFF_ERROR) from None
    program = os.environ.get("KUBECTL_EXTERNAL_DIFF") or os.environ.get("KRAY_EXTERNAL_DIFF")
    if program:
        raise click.exceptions.Exit(_external(program, pairs))
    changed = False
    for name, live, merged in pairs:
        lines = list(
            difflib.unified_diff(
                live.splitlines(keepends=True), merged.splitlines(keepends=True), f"LIVE/{name}", f"MERGED/{name}"
            )
        )
        if lines:
            changed = True
            click.echo(f"diff -u -N LIVE/{name} MERGED/{name}")
            click.echo("".join(lines), nl=False)
    raise click.exceptions.Exit(1 if changed else 0)
