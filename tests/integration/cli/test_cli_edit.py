"""`kray edit` against a real API server, with scripted editors: an edit is saved with the
resourceVersion read; no change cancels; a bad edit reopens with the error; a concurrent change
is a conflict, never overwritten."""

from __future__ import annotations

import stat
import sys
import uuid
from pathlib import Path

import pytest
from cli_it import kray

from kray.client import Client


def editor(tmp_path: Path, script: str) -> str:
    path = tmp_path / f"editor-{uuid.uuid4().hex[:6]}.sh"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


@pytest.fixture
def ns(cli_env: dict[str, str]) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    with Client(server=cli_env["KRAY_SERVER"], token=cli_env["KRAY_TOKEN"]) as c:
        c.create_raw({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        c.create_raw({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": name},
                      "data": {"mode": "slow"}})  # fmt: skip
    return name


def read(cli_env: dict[str, str], ns: str) -> dict:
    with Client(server=cli_env["KRAY_SERVER"], token=cli_env["KRAY_TOKEN"]) as c:
        return c.get_raw(c.resolve("configmaps"), "cfg", ns)


def test_edit_saves_cancels_and_reports(
    cli_env: dict[str, str], ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDITOR", editor(tmp_path, 'sed -i "s/mode: slow/mode: fast/" "$1"'))
    r = kray("edit", "configmap/cfg", "-n", ns)
    assert (r.exit_code, r.stdout) == (0, "configmap/cfg edited\n"), r.output
    assert read(cli_env, ns)["data"] == {"mode": "fast"}

    monkeypatch.setenv("EDITOR", editor(tmp_path, "true"))  # saved as it was
    assert kray("edit", "cm", "cfg", "-n", ns).stdout == "Edit cancelled, no changes made.\n"

    # An invalid edit reopens with the error on top; this editor then gives up unchanged.
    seen = tmp_path / "seen.yaml"
    break_name = 'sed -i "s/^  name: cfg/  name: Not_Valid/" "$1"'
    script = f'if [ -e {seen} ]; then cp "$1" {seen}.2; else {break_name}; cp "$1" {seen}; fi'
    monkeypatch.setenv("EDITOR", editor(tmp_path, script))
    r = kray("edit", "configmap/cfg", "-n", ns)
    assert r.exit_code == 1 and "error:" in r.stderr
    reopened = (tmp_path / "seen.yaml.2").read_text()
    assert reopened.startswith("# Please edit the object below") and "# error: " in reopened
    assert read(cli_env, ns)["data"] == {"mode": "fast"}  # nothing written


def test_edit_never_overwrites_a_concurrent_change(
    cli_env: dict[str, str], ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While "the user" edits, someone else changes the object: the save is a Conflict.
    other = (
        f'{sys.executable} -c "import httpx; '
        f"httpx.patch('{cli_env['KRAY_SERVER']}/api/v1/namespaces/{ns}/configmaps/cfg', "
        f"headers={{'Authorization': 'Bearer {cli_env['KRAY_TOKEN']}', "
        "'Content-Type': 'application/merge-patch+json'}, "
        "json={'data': {'mode': 'theirs'}}).raise_for_status()\""
    )
    mine = 'sed -i "s/mode: slow/mode: mine/" "$1"'
    script = f"if [ -e {tmp_path}/once ]; then exit 0; fi; touch {tmp_path}/once; {other}; {mine}"
    monkeypatch.setenv("EDITOR", editor(tmp_path, script))
    r = kray("edit", "configmap/cfg", "-n", ns)
    assert r.exit_code == 1 and "the object has been modified" in r.stderr, r.output
    assert read(cli_env, ns)["data"] == {"mode": "theirs"}
