"""``kray patch|label|annotate|wait|cordon|uncordon|drain`` against a real API server over HTTP.

Outputs, error lines and exit codes are kubectl's; bad input must write nothing (checked by the
object's resourceVersion staying put).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cli_it import kray

from kray.client import Client
from kray.crds import Node, Pod

Obj = dict[str, Any]


def make_pod(
    client: Client, ns: str, name: str, node: str | None = None, volumes: list[Obj] | None = None, **meta: Any
) -> Obj:
    spec: Obj = {"containers": [{"name": "main", "image": "busybox"}, {"name": "side", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    if volumes:
        spec["volumes"] = volumes
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, **meta}, "spec": spec}
    return client.create_raw(body)


def pod(client: Client, ns: str, name: str) -> Obj:
    return client.get_raw(Pod, name, ns)


def rv(obj: Obj) -> str:
    return str(obj["metadata"]["resourceVersion"])


def later(action: Callable[[], object], delay: float = 0.3) -> threading.Thread:
    """Run ``action`` after ``delay`` in the background (while the CLI is waiting)."""
    thread = threading.Thread(target=lambda: (time.sleep(delay), action()), daemon=True)
    thread.start()
    return thread


# ---- patch ----


def test_patch_strategic_by_default_merges_containers_by_name(client: Client, ns: str) -> None:
    make_pod(client, ns, "web")
    r = kray("patch", "pod", "web", "-n", ns, "-p", '{"spec":{"containers":[{"name":"side","image":"busybox:2"}]}}')
    assert (r.exit_code, r.stdout) == (0, "pod/web patched\n")
    images = {c["name"]: c["image"] for c in pod(client, ns, "web")["spec"]["containers"]}
    assert images == {"main": "busybox", "side": "busybox:2"}  # a merge patch would have dropped "main"

    again = kray("patch", "pod/web", "-n", ns, "-p", "spec: {containers: [{name: side, image: 'busybox:2'}]}")
    assert (again.exit_code, again.stdout) == (0, "pod/web patched (no change)\n")


def test_patch_merge_and_json_types(client: Client, ns: str) -> None:
    make_pod(client, ns, "web")
    r = kray("patch", "pod", "web", "-n", ns, "--type", "merge", "-p", '{"metadata":{"labels":{"gpu":"h200"}}}')
    assert r.stdout == "pod/web patched\n"
    ops = '[{"op":"replace","path":"/metadata/labels/gpu","value":"a100"}]'
    assert kray("patch", "pod", "web", "-n", ns, "--type=json", "-p", ops).stdout == "pod/web patched\n"
    assert pod(client, ns, "web")["metadata"]["labels"] == {"gpu": "a100"}
    assert kray("patch", "pod", "web", "-n", ns, "--type=merge", "-p", "{}", "-o", "name").stdout == "pod/web\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "{not: [closed"], "error: unable to parse '{not: [closed': expected ',' or ']'"),
        (["--type", "json", "-p", '{"a":1}'], "a json patch must be a list of operations"),
        (["--type", "json", "-p", '[{"path":"/a"}]'], "'op' and 'path' are required"),
        (["-p", "[1]"], "must be a JSON object"),
        ([], "must specify --patch or --patch-file"),
    ],
)
def test_patch_bad_input_writes_nothing(client: Client, ns: str, args: list[str], message: str) -> None:
    before = rv(make_pod(client, ns, "web"))
    r = kray("patch", "pod", "web", "-n", ns, *args)
    assert r.exit_code != 0
    assert message in r.stderr and r.stderr.startswith("error:") and len(r.stderr.splitlines()) == 1
    assert rv(pod(client, ns, "web")) == before


def test_patch_missing_object_and_failing_json_patch(client: Client, ns: str) -> None:
    r = kray("patch", "pod", "nope", "-n", ns, "-p", "{}")
    assert (r.exit_code, r.stderr) == (1, 'error: pods "nope" not found\n')
    make_pod(client, ns, "web")
    r = kray("patch", "pod", "web", "-n", ns, "--type=json", "-p", '[{"op":"remove","path":"/spec/missing"}]')
    assert r.exit_code == 1 and "does not exist" in r.stderr


# ---- label / annotate ----


def test_label_set_overwrite_remove(client: Client, ns: str) -> None:
    make_pod(client, ns, "web", labels={"app": "web"})
    assert kray("label", "pod", "web", "gpu=h200", "-n", ns).stdout == "pod/web labeled\n"
    assert kray("label", "pods", "web", "gpu=h200", "-n", ns).stdout == "pod/web not labeled\n"

    before = rv(pod(client, ns, "web"))
    refused = kray("label", "pod/web", "gpu=a100", "-n", ns)
    assert refused.exit_code == 1
    assert refused.stderr == "error: 'gpu' already has a value (h200), and --overwrite is false\n"
    assert rv(pod(client, ns, "web")) == before

    assert kray("label", "pod/web", "gpu=a100", "--overwrite", "-n", ns).stdout == "pod/web labeled\n"
    r = kray("label", "pod", "web", "app-", "absent-", "-n", ns)
    assert r.stdout == 'label "absent" not found.\npod/web labeled\n'
    assert pod(client, ns, "web")["metadata"]["labels"] == {"gpu": "a100"}
    assert kray("label", "pod", "web", "--list", "-n", ns).stdout == "gpu=a100\n"


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["Bad Key=v"], "error: invalid label key 'Bad Key': name part must consist of"),
        (["example.com/x/y=v"], "error: invalid label key 'example.com/x/y'"),
        (["ok=bad value!"], "error: invalid label value: 'ok=bad value!': a valid label must be"),
        (["a=b=c"], "error: invalid label spec: a=b=c"),
        (["a=1", "a-"], "error: can not both modify and remove a label in the same command"),
    ],
)
def test_label_bad_input_fails_before_any_request(client: Client, ns: str, pairs: list[str], message: str) -> None:
    before = rv(make_pod(client, ns, "web"))
    r = kray("label", "pod", "web", *pairs, "-n", ns)
    assert r.exit_code == 1 and r.stderr.startswith(message), r.stderr
    assert rv(pod(client, ns, "web")) == before


def test_label_by_selector_and_all_plans_everything_before_writing(client: Client, ns: str) -> None:
    make_pod(client, ns, "a", labels={"role": "worker"})
    make_pod(client, ns, "b", labels={"role": "worker", "gpu": "bad"})
    make_pod(client, ns, "c", labels={"role": "master"})
    # b refuses, so a must not be written either.
    r = kray("label", "pods", "-l", "role=worker", "gpu=ok", "-n", ns)
    assert r.exit_code == 1 and "'gpu' already has a value (bad)" in r.stderr
    assert "gpu" not in pod(client, ns, "a")["metadata"]["labels"]

    r = kray("label", "pods", "-l", "role=worker", "gpu=ok", "--overwrite", "-n", ns)
    assert sorted(r.stdout.splitlines()) == ["pod/a labeled", "pod/b labeled"]
    r = kray("label", "pods", "--all", "team=ml", "-n", ns)
    assert sorted(r.stdout.splitlines()) == ["pod/a labeled", "pod/b labeled", "pod/c labeled"]
    assert kray("label", "pods", "team=ml", "-n", ns).exit_code == 1  # neither names, -l nor --all
    assert "no name was specified" in kray("label", "pods", "team=ml", "-n", ns).stderr


def test_label_stale_resource_version_is_a_conflict(client: Client, ns: str) -> None:
    old = rv(make_pod(client, ns, "web"))
    kray("label", "pod", "web", "x=1", "-n", ns)
    r = kray("label", "pod", "web", "y=2", "--resource-version", old, "-n", ns)
    assert r.exit_code == 1 and r.stderr.startswith("error: ")
    assert "y" not in pod(client, ns, "web")["metadata"]["labels"]


def test_annotate(client: Client, ns: str) -> None:
    make_pod(client, ns, "web", annotations={"owner": "alice"})
    assert kray("annotate", "pod", "web", "note=a=b c", "-n", ns).stdout == "pod/web annotated\n"
    assert pod(client, ns, "web")["metadata"]["annotations"]["note"] == "a=b c"  # values may hold '='
    r = kray("annotate", "pod", "web", "owner=bob", "-n", ns)
    assert r.exit_code == 1
    assert r.stderr == (
        "error: --overwrite is false but found the following declared annotation(s): "
        "'owner' already has a value (alice)\n"
    )
    assert kray("annotate", "pod", "web", "owner=bob", "--overwrite", "-n", ns).exit_code == 0
    assert kray("annotate", "pod", "web", "owner-", "-n", ns).stdout == "pod/web annotated\n"
    assert pod(client, ns, "web")["metadata"]["annotations"] == {"note": "a=b c"}
    assert "invalid annotation key" in kray("annotate", "pod", "web", "b@d=1", "-n", ns).stderr


# ---- wait ----


def set_status(client: Client, ns: str, name: str, status: Obj) -> None:
    client.patch_raw(Pod, name, {"status": status}, ns, "merge", subresource="status")


def test_wait_for_condition_watches_until_met(client: Client, ns: str) -> None:
    make_pod(client, ns, "web")
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    thread = later(lambda: set_status(client, ns, "web", ready))
    r = kray("wait", "pod/web", "--for=condition=Ready", "--timeout=10s", "-n", ns)
    thread.join()
    assert (r.exit_code, r.stdout) == (0, "pod/web condition met\n")
    assert kray("wait", "pod", "web", "--for", "condition=ready=TRUE", "-n", ns).exit_code == 0  # case-insensitive


def test_wait_times_out_with_kubectls_message(client: Client, ns: str) -> None:
    make_pod(client, ns, "web")
    started = time.monotonic()
    r = kray("wait", "pod/web", "--for=condition=Ready", "--timeout=1s", "-n", ns)
    assert (r.exit_code, r.stderr) == (1, "error: timed out waiting for the condition on pods/web\n")
    assert 0.9 < time.monotonic() - started < 5


def test_wait_for_condition_ends_when_the_object_is_deleted(client: Client, ns: str) -> None:
    make_pod(client, ns, "web")
    thread = later(lambda: client.delete_raw(Pod, "web", ns))
    r = kray("wait", "pod/web", "--for=condition=Ready", "--timeout=10s", "-n", ns)
    thread.join()
    assert (r.exit_code, r.stderr) == (1, 'error: pods "web" not found\n')


def test_wait_for_jsonpath_and_delete(client: Client, ns: str) -> None:
    make_pod(client, ns, "web", labels={"app": "web"})
    thread = later(lambda: set_status(client, ns, "web", {"phase": "Running"}))
    r = kray("wait", "pods", "-l", "app=web", "--for=jsonpath={.status.phase}=Running", "--timeout=10s", "-n", ns)
    thread.join()
    assert (r.exit_code, r.stdout) == (0, "pod/web condition met\n")

    thread = later(lambda: client.delete_raw(Pod, "web", ns))
    r = kray("wait", "pod/web", "--for=delete", "--timeout=10s", "-n", ns)
    thread.join()
    assert (r.exit_code, r.stdout) == (0, "pod/web condition met\n")
    gone = kray("wait", "pod/web", "--for=delete", "-n", ns)  # already gone: success, nothing printed
    assert (gone.exit_code, gone.stdout) == (0, "")


def test_wait_for_create(client: Client, ns: str) -> None:
    thread = later(lambda: make_pod(client, ns, "late"))
    r = kray("wait", "pod/late", "--for=create", "--timeout=10s", "-n", ns)
    thread.join()
    assert (r.exit_code, r.stdout) == (0, "pod/late condition met\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pod/web", "--for=ready"], "error: unrecognized condition: 'ready'"),
        (["pod/web", "--for=condition=Ready", "--timeout=30x"], 'error: invalid duration "30x" for --timeout'),
        (["pod/web", "--for=jsonpath={.status.phase}="], "error: jsonpath wait format"),
        (["pods", "--for=delete"], "error: resource(s) were provided, but no name was specified"),
        (["pods", "-l", "app=none", "--for=condition=Ready"], "error: no matching resources found"),
        (["pod/nope", "--for=condition=Ready"], 'error: pods "nope" not found'),
    ],
)
def test_wait_bad_input(ns: str, args: list[str], message: str) -> None:
    r = kray("wait", *args, "-n", ns)
    assert r.exit_code == 1 and r.stderr.startswith(message), r.stderr


# ---- cordon / uncordon / drain ----


@pytest.fixture
def node(client: Client) -> str:
    name = f"n-{uuid.uuid4().hex[:8]}"
    client.create_raw({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"pool": name}}})
    return name


def unschedulable(client: Client, node: str) -> bool:
    return bool(client.get_raw(Node, node).get("spec", {}).get("unschedulable"))


def test_cordon_uncordon(client: Client, node: str) -> None:
    assert kray("cordon", node).stdout == f"node/{node} cordoned\n"
    assert unschedulable(client, node)
    assert kray("cordon", node).stdout == f"node/{node} already cordoned\n"
    assert kray("uncordon", "-l", f"pool={node}").stdout == f"node/{node} uncordoned\n"
    assert not unschedulable(client, node)
    assert kray("uncordon", node).stdout == f"node/{node} already uncordoned\n"
    # Marking a node with a failing GPU: labels work on cluster-scoped kinds too.
    assert kray("label", "node", node, "nvidia.com/gpu.health=failed").stdout == f"node/{node} labeled\n"
    assert client.get_raw(Node, node)["metadata"]["labels"]["nvidia.com/gpu.health"] == "failed"
    missing = kray("cordon", f"{node}-nope")
    assert (missing.exit_code, missing.stderr) == (1, f'error: nodes "{node}-nope" not found\n')


def owned_by(kind: str) -> Obj:
    return {"apiVersion": "apps/v1", "kind": kind, "name": "owner", "uid": str(uuid.uuid4()), "controller": True}


def test_drain_refuses_bare_pods_then_force_deletes(client: Client, ns: str, node: str) -> None:
    make_pod(client, ns, "replica", node, ownerReferences=[owned_by("ReplicaSet")])
    make_pod(client, ns, "bare", node)
    make_pod(client, ns, "elsewhere", "some-other-node")

    r = kray("drain", node)
    assert r.exit_code == 1
    assert r.stdout == f"node/{node} cordoned\n"
    assert r.stderr.splitlines() == [
        f'error: unable to drain node "{node}" due to error: cannot delete Pods declare no controller '
        f"(use --force to override): {ns}/bare, continuing command...",
        "There are pending nodes to be drained:",
        f" {node}",
        f"error: cannot delete Pods declare no controller (use --force to override): {ns}/bare",
    ]
    assert unschedulable(client, node)
    assert len(client.list_raw(Pod, ns).items) == 3  # refused before deleting anything

    # --disable-eviction: deletes, so this tests the pod filters alone (eviction: test_cli_drain_eviction.py).
    r = kray("drain", node, "--force", "--grace-period", "0", "--timeout", "10s", "--disable-eviction")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"node/{node} already cordoned"
    assert sorted(r.stdout.splitlines()[1:-1]) == ["pod/bare deleted", "pod/replica deleted"]
    assert r.stdout.splitlines()[-1] == f"node/{node} drained"
    assert r.stderr == f"Warning: deleting Pods that declare no controller: {ns}/bare\n"
    assert [p["metadata"]["name"] for p in client.list_raw(Pod, ns).items] == ["elsewhere"]


def test_drain_daemonsets_mirror_pods_and_emptydir(client: Client, ns: str, node: str) -> None:
    make_pod(client, ns, "agent", node, ownerReferences=[owned_by("DaemonSet")])
    make_pod(client, ns, "static", node, annotations={"kubernetes.io/config.mirror": "x"})
    emptydir = [{"name": "tmp", "emptyDir": {}}]
    make_pod(client, ns, "scratch", node, emptydir, ownerReferences=[owned_by("ReplicaSet")])

    r = kray("drain", node)
    assert r.exit_code == 1
    assert f"cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): {ns}/agent" in r.stderr
    assert f"cannot delete Pods with local storage (use --delete-emptydir-data to override): {ns}/scratch" in r.stderr

    r = kray("drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--disable-eviction")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[1:] == ["pod/scratch deleted", f"node/{node} drained"]
    assert f"ignoring DaemonSet-managed Pods: {ns}/agent" in r.stderr
    assert sorted(p["metadata"]["name"] for p in client.list_raw(Pod, ns).items) == ["agent", "static"]


def test_drain_bad_input(node: str) -> None:
    r = kray("drain", node, "--timeout", "soon")
    message = 'error: invalid duration "soon" for --timeout: use a number with a unit, e.g. 30s, 2m, 1h\n'
    assert (r.exit_code, r.stderr) == (1, message)
    assert kray("drain").stderr.startswith("error: resource(s) were provided, but no name was specified")


def test_drain_times_out_while_a_pod_lingers(client: Client, ns: str, node: str) -> None:
    # A finalizer keeps the deleted pod around (as a slow kubelet would): drain must wait, then give up.
    make_pod(client, ns, "slow", node, ownerReferences=[owned_by("ReplicaSet")], finalizers=["example.com/hold"])
    started = time.monotonic()
    r = kray("drain", node, "--timeout", "1s")
    assert 0.9 < time.monotonic() - started < 5
    assert r.exit_code == 1
    assert r.stderr.splitlines()[-1] == "error: drain did not complete within 1s"
    assert "pod/slow deleted" not in r.stdout
    client.patch_raw(Pod, "slow", {"metadata": {"finalizers": None}}, ns, "merge")  # let it go
