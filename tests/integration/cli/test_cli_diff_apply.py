"""`kray apply --dry-run=client|server` and `kray diff` against the real API server: nothing is
written, the answers say what would happen, and diff's exit codes are kubectl's (0 same, 1
different, 2 error)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_it import kray

from kray.client import Client, NotFound


def manifest(tmp_path: Path, ns: str, value: str, name: str = "cfg") -> str:
    path = tmp_path / f"{name}-{value}.yaml"
    path.write_text(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {ns}}}\ndata: {{a: '{value}'}}\n"
    )
    return str(path)


def data(client: Client, ns: str, name: str = "cfg") -> dict[str, str] | None:
    try:
        return client.get_raw(client.resolve("configmaps"), name, ns).get("data")
    except NotFound:
        return None


def test_apply_dry_runs_write_nothing(client: Client, ns: str, tmp_path: Path) -> None:
    first = manifest(tmp_path, ns, "1")
    r = kray("apply", "-f", first, "--dry-run=server")
    assert (r.exit_code, r.stdout) == (0, "configmap/cfg created (server dry run)\n")
    r = kray("apply", "-f", first, "--dry-run=client")
    assert (r.exit_code, r.stdout) == (0, "configmap/cfg created (dry run)\n")
    assert data(client, ns) is None
    assert kray("apply", "-f", first).stdout == "configmap/cfg created\n"
    second = manifest(tmp_path, ns, "2")
    for mode, said in (("server", "configured (server dry run)"), ("client", "configured (dry run)")):
        r = kray("apply", "-f", second, f"--dry-run={mode}")
        assert (r.exit_code, r.stdout) == (0, f"configmap/cfg {said}\n")
    assert kray("apply", "-f", first, "--dry-run=client").stdout == "configmap/cfg unchanged (dry run)\n"
    assert data(client, ns) == {"a": "1"}
    bad = tmp_path / "bad.yaml"  # the server's validation still answers a dry run
    bad.write_text(f"apiVersion: v1\nkind: Service\nmetadata: {{name: s, namespace: {ns}}}\nspec: {{type: Bogus}}\n")
    r = kray("apply", "-f", str(bad), "--dry-run=server")
    assert r.exit_code == 1 and "Bogus" in r.stderr


def test_diff_exit_codes_and_output(client: Client, ns: str, tmp_path: Path) -> None:
    first, second = manifest(tmp_path, ns, "1"), manifest(tmp_path, ns, "2")
    new = kray("diff", "-f", first)  # not there yet: all of it is new
    assert new.exit_code == 1 and f"diff -u -N LIVE/v1.ConfigMap.{ns}.cfg MERGED/v1.ConfigMap.{ns}.cfg" in new.stdout
    assert "+kind: ConfigMap" in new.stdout and "\n-" not in new.stdout.split("+++", 1)[1]
    assert data(client, ns) is None
    kray("apply", "-f", first)
    same = kray("diff", "-f", first)
    assert (same.exit_code, same.stdout) == (0, "")
    changed = kray("diff", "-f", second)
    assert changed.exit_code == 1
    body = changed.stdout.split("+++", 1)[1]
    assert "-  a: '1'" in body and "+  a: '2'" in body
    assert not [line for line in body.splitlines() if line[:1] in "+-" and "resourceVersion" in line]
    assert data(client, ns) == {"a": "1"}  # diff wrote nothing
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("apiVersion: v9\nkind: Nothing\nmetadata: {name: x}\n")
    err = kray("diff", "-f", str(unknown))
    assert err.exit_code == 2 and err.stderr.startswith("error: ")


@pytest.mark.parametrize("var", ["KUBECTL_EXTERNAL_DIFF", "KRAY_EXTERNAL_DIFF"])
def test_external_diff_program(
    client: Client, ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    kray("apply", "-f", manifest(tmp_path, ns, "1"))
    out = tmp_path / "seen"
    script = tmp_path / "differ.sh"
    script.write_text(f'#!/bin/sh\nls "$1" "$2" > {out}; cat "$2"/* >> {out}; exit 1\n')
    script.chmod(0o755)
    monkeypatch.setenv(var, str(script))
    r = kray("diff", "-f", manifest(tmp_path, ns, "2"))
    seen = out.read_text()
    assert r.exit_code == 1 and f"v1.ConfigMap.{ns}.cfg" in seen and "a: '2'" in seen
