"""``kray controller``: argument and code errors fail fast (one ``error:`` line, exit 1) before
any Ray connection; the list view's summary of replica statuses."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kray.cli.controller import controller_actors, default_name, summarize
from kray.cli.main import cli

OPERATOR_DIR = Path(__file__).resolve().parents[3] / "examples" / "operator"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No cluster anywhere: an unreachable server, no recorded Ray address.
    monkeypatch.setattr(sys, "path", list(sys.path))  # check_spec prepends --path
    monkeypatch.setenv("KRAY_SERVER", "http://127.0.0.1:9")
    monkeypatch.setenv("KRAY_TOKEN", "t")
    monkeypatch.setenv("KRAY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def kray(*args: str) -> Result:
    return CliRunner().invoke(cli, ["controller", *args], catch_exceptions=False)


def error_of(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def write_module(tmp_path: Path, name: str, body: str) -> Path:
    folder = tmp_path / "code"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(body)
    return folder


def test_unknown_module_says_so_and_hints_at_path() -> None:
    msg = error_of(kray("run", "no_such_operator_mod:build"))
    assert "cannot import 'no_such_operator_mod'" in msg and "--path" in msg


def test_missing_attribute_and_bad_spec() -> None:
    msg = error_of(kray("run", "tensorboard_operator:nope", "--path", str(OPERATOR_DIR)))
    assert msg == "error: module 'tensorboard_operator' has no attribute 'nope'"
    assert "expected MODULE:ATTR" in error_of(kray("run", "tensorboard_operator"))


def test_bad_name_and_replicas_without_leader_election() -> None:
    spec, path = "tensorboard_operator:build", str(OPERATOR_DIR)
    assert "controller name 'Bad_Name'" in error_of(kray("run", spec, "--path", path, "--name", "Bad_Name"))
    msg = error_of(kray("run", spec, "--path", path, "--replicas", "2", "--no-leader-elect"))
    assert "needs leader election" in msg
    assert kray("run", spec, "--replicas", "0").exit_code == 2  # click's own range check


def test_module_that_fails_to_import(tmp_path: Path) -> None:
    folder = write_module(tmp_path, "ext_broken_op", "raise RuntimeError('no GPU here')\n")
    msg = error_of(kray("run", "ext_broken_op:build", "--path", str(folder)))
    assert msg == "error: importing 'ext_broken_op' failed: RuntimeError: no GPU here"
    folder = write_module(tmp_path, "ext_needs_dep", "import ext_not_installed_dep\n")
    msg = error_of(kray("run", "ext_needs_dep:build", "--path", str(folder)))
    assert "importing 'ext_needs_dep' failed" in msg and "ext_not_installed_dep" in msg


def test_builder_mistakes_are_reported_before_deploying(tmp_path: Path) -> None:
    body = (
        "from kray.api import ControllerBuilder\n"
        "from kray.crds import Resource\n"
        "class Gadget(Resource):\n"
        "    KIND = 'Gadget'\n"
        "    PLURAL = 'gadgets'\n"
        "class R:\n"
        "    async def reconcile(self, request): ...\n"
        "def build(manager):\n"
        "    ControllerBuilder(manager).for_(Gadget).complete(R())\n"
        "def empty(manager):\n"
        "    pass\n"
        "def chatty(manager):\n"
        "    manager.writer.create(None)\n"
    )
    folder = write_module(tmp_path, "ext_bad_builder", body)
    result = kray("run", "ext_bad_builder:build", "--path", str(folder))
    assert error_of(result).startswith("error: invalid controller")
    assert "for_(Gadget): no kind" in result.stderr  # the builder's list of problems follows
    assert "wired no controller" in error_of(kray("run", "ext_bad_builder:empty", "--path", str(folder)))
    assert "do I/O in reconcile()" in error_of(kray("run", "ext_bad_builder:chatty", "--path", str(folder)))


def test_valid_spec_without_a_cluster_fails_at_ray() -> None:
    result = kray("run", "tensorboard_operator:build", "--path", str(OPERATOR_DIR))
    assert "no Ray cluster" in error_of(result)
    assert "warning: could not check the API server's kinds" in result.stderr
    assert "no Ray cluster" in error_of(kray("list"))


def test_delete_refuses_a_builtin_controller() -> None:
    assert "pass --force" in error_of(kray("delete", "replicaset"))


def test_default_name() -> None:
    assert default_name("tensorboard_operator:build") == "tensorboard-operator"
    assert default_name("acme.ops.Model_Cache:Reconciler") == "model-cache"


class FakeRay:
    class util:  # mirrors ray.util
        @staticmethod
        def list_named_actors() -> list[str]:
            return [
                "kray-apiserver",
                "kray-controller-tb-1",
                "kray-controller-tb-0",
                "kray-controller-controller-manager-0",
            ]


def test_controller_actors_groups_replicas_by_name() -> None:
    assert controller_actors(FakeRay) == {
        "controller-manager": [(0, "kray-controller-controller-manager-0")],
        "tb": [(0, "kray-controller-tb-0"), (1, "kray-controller-tb-1")],
    }


def status(leader: bool = False, synced: bool = True, error: str | None = None, n: int = 0) -> dict[str, object]:
    return {"leader": leader, "synced": synced, "error": error, "reconciles": {"tensorboard": n}}


@pytest.mark.parametrize(
    ("replies", "expected"),
    [
        ([status(True, n=3), status(n=0)], {"replicas": "2/2", "leader": "0", "status": "Running", "reconciles": "3"}),
        ([status(), status(True)], {"replicas": "2/2", "leader": "1", "status": "Running", "reconciles": "0"}),
        ([status(), status()], {"replicas": "2/2", "leader": "<none>", "status": "Electing", "reconciles": "0"}),
        ([status(True, synced=False)], {"replicas": "1/1", "leader": "0", "status": "Syncing", "reconciles": "0"}),
        (
            [status(True), None],
            {"replicas": "1/2", "leader": "0", "status": "Degraded (1 not answering)", "reconciles": "0"},
        ),
        (
            [status(error="ImportError('x')")],
            {"replicas": "1/1", "leader": "<none>", "status": "Failed: ImportError('x')", "reconciles": "0"},
        ),
    ],
)
def test_summarize(replies: list[dict[str, object] | None], expected: dict[str, str]) -> None:
    assert summarize(replies) == expected
