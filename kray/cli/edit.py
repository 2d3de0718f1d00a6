"""``kray edit KIND/NAME`` (or ``KIND NAME``): change an object in your editor, as kubectl edit.

The object is written as YAML to a temp file and ``$KUBE_EDITOR``, ``$EDITOR`` (or ``vi``) opens
it. On save, the edit is sent as an update carrying the resourceVersion that was read, so a
change made by someone else in the meantime is a Conflict, never overwritten. Saving the file
unchanged (or emptying it) cancels. A bad edit (YAML that does not parse, a field the server
refuses) reopens the editor with the error as a comment on top, as kubectl does; closing it
again unchanged gives up with that error and a non-zero exit.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from typing import Any

import click

from .common import CliError, make_client, one_object, resolve_kind


def _editor() -> list[str]:
    return shlex.split(os.environ.get("KUBE_EDITOR") or os.environ.get("EDITOR") or "vi")


def _comment(error: str) -> str:
    lines = [
        "# Please edit the object below. Lines beginning with a '#' will be ignored,",
        "# and an empty file will abort the edit. If an error occurs while saving this file will be",
        "# reopened with the relevant failures.",
        "#",
    ]
    if error:
        lines += [f"# {line}" for line in error.splitlines()] + ["#"]
    return "\n".join(lines) + "\n"


def _strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def edit_loop(original: dict[str, Any], save: Any, editor: list[str]) -> str:
    """Edit until saved, unchanged or given up; returns what happened ("edited"/"skipped")."""
    import yaml

    from kray.client import ApiError

    body = yaml.safe_dump(original, sort_keys=False)
    error, last = "", None
    while True:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="kray-edit-", delete=False) as f:
            f.write(_comment(error) + body)
            path = f.name
        try:
            if subprocess.run([*editor, path]).returncode != 0:
                raise CliError(f"the editor {' '.join(editor)} exited with an error; nothing was changed")
            with open(path) as edited_file:
                edited = _strip_comments(edited_file.read())
        finally:
            os.unlink(path)
        if not edited.strip():
            raise CliError("Edit cancelled, no valid changes were saved.")
        if edited == last:  # reopened after an error and closed without a change: give up
            raise CliError(error)
        last, body = edited, edited
        try:
            changed = yaml.safe_load(edited)
        except yaml.YAMLError as exc:
            error = f"error: the edited file is not valid YAML: {exc}"
            continue
        if changed == original:
            return "skipped"
        if not isinstance(changed, dict):
            error = "error: the edited file must hold one object (a mapping)"
            continue
        try:
            save(changed)
            return "edited"
        except ApiError as exc:
            error = f"error: {exc.message}"


@click.command("edit")
@click.argument("target", nargs=-1, required=True)
@click.option("-n", "--namespace", default=None, help="Namespace (default: default).")
def edit_cmd(target: tuple[str, ...], namespace: str | None) -> None:
    """Edit an object in $KUBE_EDITOR/$EDITOR and save it back (a conflict is never overwritten)."""
    kind, name = one_object(target)
    from . import printers

    with make_client() as client:
        ref = resolve_kind(client, kind)
        obj = client.get_raw(ref, name, namespace)
        outcome = edit_loop(obj, lambda changed: client.update_raw(changed, ref), _editor())
    if outcome == "skipped":
        click.echo("Edit cancelled, no changes made.")
    else:
        click.echo(f"{printers.object_name(ref, obj)} edited")
