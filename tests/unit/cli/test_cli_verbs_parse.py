"""The pure parts of ``kray patch|label|annotate|wait|drain``: argument parsing, kubectl's rules
for label/annotation changes, durations, ``--for`` conditions and drain's pod filters."""

from __future__ import annotations

from typing import Any

import pytest

from kray.cli.common import CliError
from kray.cli.label import MetaEdit, _Planned, _write, parse_edit, plan_change, split_resources_and_pairs
from kray.cli.node import plan_drain
from kray.cli.patch import parse_patch
from kray.cli.targets import Found, parse_resource_args
from kray.cli.wait import WaitFor, is_met, parse_duration, parse_for
from kray.client import Conflict, ResourceRef

# ---- resources and pairs ----


def test_parse_resource_args() -> None:
    assert parse_resource_args(["pods", "a", "b"]) == [("pods", ["a", "b"])]
    assert parse_resource_args(["pod/a", "svc/b", "pod/c"]) == [("pod", ["a", "c"]), ("svc", ["b"])]
    assert parse_resource_args(["pods,svc"]) == [("pods", []), ("svc", [])]
    for bad in (["pod/a", "b"], ["pods", "svc/b"], ["pods,svc", "a"], []):
        with pytest.raises(CliError):
            parse_resource_args(bad)


def test_split_resources_and_pairs_follows_kubectl() -> None:
    assert split_resources_and_pairs(["pods", "web", "a=1", "b-"], "label") == (["pods", "web"], ["a=1", "b-"])
    assert split_resources_and_pairs(["pod/web", "a="], "label") == (["pod/web"], ["a="])
    with pytest.raises(CliError, match="all resources must be specified before label changes: other"):
        split_resources_and_pairs(["pods", "a=1", "other"], "label")


def test_parse_edit_labels_and_annotations() -> None:
    assert parse_edit(["a=1", "b-", "c="], "labels") == MetaEdit("labels", {"a": "1", "c": ""}, ("b",))
    assert parse_edit(["note=x=y"], "annotations").assign == {"note": "x=y"}
    assert parse_edit(["Example.com/Owner=x"], "annotations").assign == {"Example.com/Owner": "x"}
    with pytest.raises(CliError, match="invalid label spec: note=x=y"):
        parse_edit(["note=x=y"], "labels")
    with pytest.raises(CliError, match="invalid label key 'a b'"):
        parse_edit(["a b=1"], "labels")
    with pytest.raises(CliError, match="invalid label key 'bad key'"):
        parse_edit(["bad key-"], "labels")
    with pytest.raises(CliError, match="invalid label value: 'k=" + "x" * 64):
        parse_edit(["k=" + "x" * 64], "labels")
    with pytest.raises(CliError, match="at least one annotation update is required"):
        parse_edit([], "annotations")


def test_plan_change_overwrite_rules() -> None:
    edit = MetaEdit("labels", {"gpu": "a100", "same": "1"}, ("old", "absent"))
    current = {"gpu": "h200", "same": "1", "old": "x"}
    with pytest.raises(CliError) as refused:
        plan_change(current, edit, overwrite=False)
    assert str(refused.value) == "'gpu' already has a value (h200), and --overwrite is false"
    assert plan_change(current, edit, overwrite=True) == ({"gpu": "a100", "old": None}, ["absent"])
    two = MetaEdit("labels", {"a": "1", "b": "2"})
    with pytest.raises(CliError, match=r"^\[.*'a' already.*'b' already.*\]$"):
        plan_change({"a": "0", "b": "0"}, two, overwrite=False)
    # kubectl lets annotate replace the change-cause without --overwrite.
    cause = MetaEdit("annotations", {"kubernetes.io/change-cause": "new"})
    assert plan_change({"kubernetes.io/change-cause": "old"}, cause, overwrite=False)[0] == {
        "kubernetes.io/change-cause": "new"
    }


class _RacingClient:
    """Answers the first patch with a Conflict and the re-read with what a concurrent writer left."""

    def __init__(self, after_race: dict[str, Any]) -> None:
        self.after_race = after_race
        self.patches: list[Any] = []

    def patch_raw(self, ref: ResourceRef, name: str, patch: Any, namespace: str | None, patch_type: str) -> None:
        self.patches.append(patch)
        if len(self.patches) == 1:
            raise Conflict(409, "Conflict", "the object has been modified")

    def get_raw(self, ref: ResourceRef, name: str, namespace: str | None) -> dict[str, Any]:
        return self.after_race


PODS = ResourceRef("", "v1", "pods", True, "Pod")


def _planned(labels: dict[str, str], resource_version: str, edit: MetaEdit) -> _Planned:
    obj = {"metadata": {"name": "web", "namespace": "ns", "resourceVersion": resource_version, "labels": labels}}
    changes, missing = plan_change(labels, edit, overwrite=False)
    return _Planned(Found(PODS, obj), changes, missing)


def test_label_write_replans_after_a_conflict() -> None:
    edit = MetaEdit("labels", {"gpu": "h200"})
    racing = _RacingClient({"metadata": {"name": "web", "resourceVersion": "8", "labels": {"team": "ml"}}})
    assert _write(racing, _planned({}, "7", edit), edit, False, None) is True  # type: ignore[arg-type]
    assert [p["metadata"]["resourceVersion"] for p in racing.patches] == ["7", "8"]

    # The concurrent writer set the same key: the re-plan refuses instead of overwriting it.
    racing = _RacingClient({"metadata": {"name": "web", "resourceVersion": "8", "labels": {"gpu": "a100"}}})
    with pytest.raises(CliError, match="'gpu' already has a value \\(a100\\)"):
        _write(racing, _planned({}, "7", edit), edit, False, None)  # type: ignore[arg-type]

    # A --resource-version the user gave is a precondition: no retry.
    racing = _RacingClient({})
    with pytest.raises(Conflict):
        _write(racing, _planned({}, "7", edit), edit, False, "5")  # type: ignore[arg-type]
    assert racing.patches[0]["metadata"]["resourceVersion"] == "5"


# ---- patch ----


def test_parse_patch() -> None:
    assert parse_patch('{"a": 1}', "strategic") == {"a": 1}
    assert parse_patch("spec: {replicas: 2}", "merge") == {"spec": {"replicas": 2}}
    assert parse_patch('[{"op": "remove", "path": "/a"}]', "json") == [{"op": "remove", "path": "/a"}]
    for text, kind in (("[1]", "merge"), ("{}", "json"), ("{a: [", "strategic"), ('[{"op": "add"}]', "json")):
        with pytest.raises(CliError):
            parse_patch(text, kind)


# ---- wait ----


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("2m", 120), ("1h", 3600), ("1m30s", 90), ("500ms", 0.5), ("0", 0), ("-1s", -1), ("1.5h", 5400)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["30", "30x", "s", "", "1d", "m5"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(CliError, match="invalid duration"):
        parse_duration(text)


def test_parse_for() -> None:
    assert parse_for("delete") == WaitFor("delete")
    assert parse_for("condition=Ready") == WaitFor("condition", "Ready", "true")
    assert parse_for("condition=Ready=false") == WaitFor("condition", "Ready", "false")
    assert parse_for("jsonpath={.status.phase}=Running") == WaitFor("jsonpath", "{.status.phase}", "Running")
    assert parse_for("jsonpath=.status.phase=Running") == WaitFor("jsonpath", ".status.phase", "Running")
    filtered = parse_for('jsonpath={.status.conditions[?(@.type=="Ready")].status}=True')
    assert filtered == WaitFor("jsonpath", '{.status.conditions[?(@.type=="Ready")].status}', "True")
    assert parse_for("jsonpath={.status.podIP}") == WaitFor("jsonpath", "{.status.podIP}", None)
    for bad in ("ready", "condition=", "jsonpath=", "jsonpath={.a}=", "jsonpath={.a b}=1"):
        with pytest.raises(CliError):
            parse_for(bad)


def test_is_met() -> None:
    obj = {
        "metadata": {"generation": 2},
        "spec": {"suspend": True},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "Stale", "status": "True", "observedGeneration": 1},
            ],
        },
    }
    assert is_met(obj, WaitFor("condition", "ready", "true"))
    assert not is_met(obj, WaitFor("condition", "Ready", "false"))
    assert not is_met(obj, WaitFor("condition", "Stale", "true"))  # observed an older generation
    assert not is_met(obj, WaitFor("condition", "Missing", "true"))
    assert is_met(obj, WaitFor("jsonpath", "{.status.phase}", "Running"))
    assert is_met(obj, WaitFor("jsonpath", "{.spec.suspend}", "true"))
    assert is_met(obj, WaitFor("jsonpath", "{.status.phase}", None))
    assert not is_met(obj, WaitFor("jsonpath", "{.status.podIP}", None))
    assert is_met(None, WaitFor("delete")) and not is_met(obj, WaitFor("delete"))
    assert is_met(obj, WaitFor("create")) and not is_met(None, WaitFor("create"))
    with pytest.raises(CliError, match="nested object"):
        is_met(obj, WaitFor("jsonpath", "{.status}", "x"))


# ---- drain ----


def _pod(name: str, owner: str | None = None, phase: str = "Running", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", **extra}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": "o", "uid": "u", "controller": True}]
    spec: dict[str, Any] = {"volumes": [{"name": "v", "emptyDir": {}}]} if name.startswith("scratch") else {}
    return {"metadata": meta, "spec": spec, "status": {"phase": phase}}


def test_plan_drain_filters() -> None:
    pods = [
        _pod("rs", "ReplicaSet"),
        _pod("ds", "DaemonSet"),
        _pod("mirror", annotations={"kubernetes.io/config.mirror": "x"}),
        _pod("bare"),
        _pod("done", phase="Succeeded"),
        _pod("scratch", "Job"),
    ]
    strict = plan_drain(pods, ignore_daemonsets=False, delete_emptydir_data=False, force=False)
    assert strict.errors == {
        "DaemonSet-managed Pods (use --ignore-daemonsets to ignore)": ["ns/ds"],
        "Pods declare no controller (use --force to override)": ["ns/bare"],
        "Pods with local storage (use --delete-emptydir-data to override)": ["ns/scratch"],
    }
    assert strict.error_text().startswith("[cannot delete DaemonSet-managed Pods")

    lenient = plan_drain(pods, ignore_daemonsets=True, delete_emptydir_data=True, force=True)
    assert not lenient.errors
    assert [p["metadata"]["name"] for p in lenient.delete] == ["rs", "bare", "done", "scratch"]
    assert lenient.warning_text() == (
        "ignoring DaemonSet-managed Pods: ns/ds; deleting Pods that declare no controller: ns/bare; "
        "deleting Pods with local storage: ns/scratch"
    )
    only_bare = plan_drain([_pod("bare")], ignore_daemonsets=False, delete_emptydir_data=False, force=False)
    assert only_bare.error_text() == "cannot delete Pods declare no controller (use --force to override): ns/bare"
