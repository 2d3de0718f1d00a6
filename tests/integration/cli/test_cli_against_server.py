"""The ``kray`` CLI against a real API server (MemoryKV): click's CliRunner for breadth, and
real subprocesses for the installed console script, exit codes and latency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cli_it import kray

from kray.client import Client

KRAY = Path(sys.executable).parent / "kray"

POD = """apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {app}}}
spec:
  containers:
  - name: main
    image: {image}
"""
SERVICE = """apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80}]
"""
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: fast}\n"


@pytest.fixture
def ns(cli_env: dict[str, str]) -> str:
    """A fresh namespace per test, so tests never see each other's objects."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    with Client(server=cli_env["KRAY_SERVER"], token=cli_env["KRAY_TOKEN"]) as c:
        c.create_raw({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def write(tmp_path: Path, name: str, *docs: str) -> str:
    path = tmp_path / name
    path.write_text("---\n".join(docs))
    return str(path)


def test_apply_get_describe_delete_roundtrip(ns: str, tmp_path: Path) -> None:
    f = write(tmp_path, "app.yaml", POD.format(name="web", app="web", image="nginx"), SERVICE, CONFIGMAP)
    r = kray("apply", "-f", f, "-n", ns)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == ["pod/web created", "service/web created", "configmap/settings created"]
    assert kray("apply", "-f", f, "-n", ns).stdout.count("unchanged") == 3

    f2 = write(tmp_path, "app2.yaml", POD.format(name="web", app="web", image="nginx:2"))
    assert kray("apply", "-f", f2, "-n", ns).stdout == "pod/web configured\n"

    table = kray("get", "pods", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert table[1].split()[:4] == ["web", "0/1", "Pending", "0"]
    assert kray("get", "po", "-n", ns, "-o", "wide").stdout.splitlines()[0].split()[-2:] == ["IP", "NODE"]
    labelled = kray("get", "pods", "-n", ns, "-L", "app,tier", "--show-labels").stdout.splitlines()
    assert labelled[0].split()[-3:] == ["APP", "TIER", "LABELS"] and labelled[1].split()[-2:] == ["web", "app=web"]
    svc = kray("get", "svc", "web", "-n", ns).stdout.splitlines()
    assert svc[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert "80/TCP" in svc[1]
    both = kray("get", "pods,cm", "-n", ns).stdout
    assert "pod/web" in both and "configmap/settings" in both
    everywhere = kray("get", "pods", "-A").stdout.splitlines()
    assert everywhere[0].split()[:2] == ["NAMESPACE", "NAME"] and any(ns in line for line in everywhere)

    obj = json.loads(kray("get", "pod", "web", "-n", ns, "-o", "json").stdout)
    assert obj["spec"]["containers"][0]["image"] == "nginx:2"
    assert kray("get", "pods", "-n", ns, "-o", "name").stdout == "pod/web\n"
    assert "kind: List" in kray("get", "pods", "-n", ns, "-o", "yaml").stdout
    ip = kray("get", "svc", "web", "-n", ns, "-o", "jsonpath={.spec.clusterIP}").stdout
    assert ip.startswith("10.96."), ip  # the default service CIDR; no newline, as kubectl
    names = kray("get", "pods,svc", "-n", ns, "-o", 'jsonpath={range .items[*]}{.kind}/{.metadata.name}{"\\n"}{end}')
    assert names.stdout == "Pod/web\nService/web\n"
    columns = kray(
        "get", "pods", "-n", ns, "-o", "custom-columns=NAME:.metadata.name,APP:.metadata.labels.app,IP:.status.podIP"
    )
    assert columns.stdout.split("\n")[:2] == ["NAME   APP   IP", "web    web   <none>"]
    bad = kray("get", "pods", "-n", ns, "-o", "jsonpath={range .items[*]}")
    assert bad.exit_code == 2 and "{range} without {end}" in bad.stderr
    assert "allowed formats: wide, yaml, json, name, jsonpath=TEMPLATE" in kray("get", "pods", "-o", "tabel").stderr
    assert kray("get", "pods", "-n", ns, "-l", "app=nope").stderr == f"No resources found in {ns} namespace.\n"

    described = kray("describe", "pod", "web", "-n", ns).stdout
    for needle in ("Name:         web", f"Namespace:    {ns}", "Labels:       app=web", "Image:", "Events:"):
        assert needle in described

    r = kray("delete", "-f", f, "-n", ns)
    assert r.exit_code == 0 and r.stdout.splitlines() == [
        'pod "web" deleted',
        'service "web" deleted',
        'configmap "settings" deleted',
    ]
    assert kray("get", "pods", "-n", ns).stdout == ""


def test_delete_by_selector_and_create(ns: str, tmp_path: Path) -> None:
    docs = [POD.format(name=f"p{i}", app="batch" if i < 2 else "other", image="x") for i in range(3)]
    f = write(tmp_path, "pods.yaml", *docs)
    assert kray("create", "-f", f, "-n", ns).exit_code == 0
    again = kray("create", "-f", f, "-n", ns)
    assert again.exit_code == 1 and "already exists" in again.stderr
    r = kray("delete", "pods", "-l", "app=batch", "-n", ns)
    assert sorted(r.stdout.splitlines()) == ['pod "p0" deleted', 'pod "p1" deleted']
    assert kray("get", "pods", "-n", ns, "-o", "name").stdout == "pod/p2\n"


def test_discovery_commands_and_custom_resources(ns: str, tmp_path: Path) -> None:
    listing = kray("api-resources").stdout.splitlines()
    assert listing[0].split() == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert any(line.split()[:2] == ["pods", "po"] for line in listing)
    assert kray("version").stdout.startswith("Client Version: ")

    group = f"g{uuid.uuid4().hex[:6]}.example.com"
    crd = f"""apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: gizmos.{group}}}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: gizmos, singular: gizmo, kind: Gizmo, shortNames: [gz]}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {{type: object, required: [size], properties: {{size: {{type: integer}}, color: {{type: string}}}}}}
    additionalPrinterColumns:
    - {{name: Size, type: integer, jsonPath: .spec.size}}
    - {{name: Color, type: string, jsonPath: .spec.color, priority: 1}}
    - {{name: Age, type: date, jsonPath: .metadata.creationTimestamp}}
"""
    gizmo = f"apiVersion: {group}/v1\nkind: Gizmo\nmetadata: {{name: g1}}\nspec: {{size: 2}}\n"
    r = kray("apply", "-f", write(tmp_path, "crd.yaml", crd, gizmo), "-n", ns)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[1] == f"gizmo.{group}/g1 created"
    # Printed by the server as a Table with the CRD's columns (priority 1 only with -o wide).
    table = kray("get", "gz", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "SIZE", "AGE"] and table[1].split()[:2] == ["g1", "2"]
    wide = kray("get", "gz", "g1", "-n", ns, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "SIZE", "COLOR", "AGE"] and wide[1].split()[:3] == ["g1", "2", "<none>"]
    everywhere = kray("get", "gz", "-A").stdout.splitlines()
    assert everywhere[0].split()[:2] == ["NAMESPACE", "NAME"] and [ns, "g1", "2"] in [r.split()[:3] for r in everywhere]
    assert kray("get", f"gizmos.{group}", "g1", "-n", ns, "-o", "name").stdout == f"gizmo.{group}/g1\n"
    # The server's schema check (the CLI has no model for Gizmo): its 422 names the field.
    bad = f"apiVersion: {group}/v1\nkind: Gizmo\nmetadata: {{name: g2}}\nspec: {{}}\n"
    r = kray("apply", "-f", "-", "-n", ns, input=bad)
    assert r.exit_code == 1 and r.stderr.startswith("error: <stdin> (document 1, line 1): ")
    assert "spec.size" in r.stderr


BAD_INPUTS: list[tuple[list[str], str, str]] = [
    (
        ["apply", "-f", "{broken}"],
        "(document 2, line 15): invalid YAML: did not find expected ',' or ']' "
        "(while parsing a flow sequence at line 14)",
        "broken",
    ),
    (["apply", "-f", "{bad3}"], 'Pod "bad" is invalid: spec.containers: Required value', "bad3"),
    (["apply", "-f", "{unknown}"], 'no matches for kind "Foo" in version "foo.io/v1"', "unknown"),
    (["get", "foos"], 'the server doesn\'t have a resource type "foos"', ""),
    (["get", "pod", "missing"], 'pods "missing" not found', ""),
    (["describe", "pod", "missing"], 'pods "missing" not found', ""),
    (["delete", "pod", "missing"], 'pods "missing" not found', ""),
]


@pytest.mark.parametrize(("args", "message", "_file"), BAD_INPUTS, ids=[" ".join(a) for a, _, _ in BAD_INPUTS])
def test_bad_input_is_one_error_line_and_nothing_written(
    ns: str, tmp_path: Path, args: list[str], message: str, _file: str
) -> None:
    good = POD.format(name="first", app="a", image="x")
    files = {
        "broken": write(tmp_path, "broken.yaml", good, "apiVersion: v1\nkind: Pod\nmetadata:\n  labels: [x\n"),
        "bad3": write(
            tmp_path,
            "bad3.yaml",
            good,
            CONFIGMAP,
            "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec: {}\n",
        ),
        "unknown": write(tmp_path, "unknown.yaml", good, "apiVersion: foo.io/v1\nkind: Foo\nmetadata: {name: f}\n"),
    }
    r = kray(*[a.format(**files) for a in args], "-n", ns)
    assert r.exit_code == 1
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr
    # Validation happens before any write: document 1 was not applied.
    assert kray("get", "pods,cm", "-n", ns, "-o", "name").stdout == ""


def run_kray(env: dict[str, str], *args: str, **extra: Any) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    return subprocess.run([str(KRAY), *args], env=full_env, capture_output=True, text=True, timeout=60, **extra)


def test_installed_console_script(cli_env: dict[str, str], ns: str) -> None:
    assert KRAY.exists(), "run `.venv/bin/pip install -e .` to install the kray console script"
    applied = run_kray(cli_env, "apply", "-f", "-", "-n", ns, input=POD.format(name="web", app="web", image="x"))
    assert applied.returncode == 0 and applied.stdout == "pod/web created\n", applied.stderr

    timings = []
    for _ in range(5):
        start = time.perf_counter()
        got = run_kray(cli_env, "get", "pods", "-n", ns)
        timings.append(time.perf_counter() - start)
        assert got.returncode == 0 and got.stdout.splitlines()[1].startswith("web ")
    print(f"\n`kray get pods` wall time: best {min(timings) * 1000:.0f} ms, worst {max(timings) * 1000:.0f} ms")

    missing = run_kray(cli_env, "get", "pod", "nope", "-n", ns)
    assert missing.returncode == 1 and missing.stderr == 'error: pods "nope" not found\n'
    down = run_kray({**cli_env, "KRAY_SERVER": "http://127.0.0.1:1"}, "get", "pods")
    assert down.returncode == 1
    assert down.stderr.startswith("error: cannot reach the kray API server at http://127.0.0.1:1")
    no_config = {"KRAY_SERVER": "", "KRAY_TOKEN": "", "KRAY_CONFIG": cli_env["KRAY_CONFIG"] + ".missing"}
    unconfigured = run_kray({**cli_env, **no_config}, "get", "pods")
    assert unconfigured.returncode == 1 and unconfigured.stderr.startswith("error: no kray config at ")
    wrong_token = run_kray({**cli_env, "KRAY_TOKEN": "wrong"}, "get", "pods")
    assert wrong_token.returncode == 1 and wrong_token.stderr.startswith("error: Unauthorized")


def test_get_watch_streams_changes(cli_env: dict[str, str], ns: str) -> None:
    proc = subprocess.Popen(
        [str(KRAY), "get", "pods", "-n", ns, "-w"],
        env={**os.environ, **cli_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # let it list and start watching
        with Client(server=cli_env["KRAY_SERVER"], token=cli_env["KRAY_TOKEN"]) as c:
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w1", "namespace": ns}}
            pod["spec"] = {"containers": [{"name": "c", "image": "x"}]}
            c.create_raw(pod)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.split()[:3] == ["w1", "0/1", "Pending"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
