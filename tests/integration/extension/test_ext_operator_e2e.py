"""The extension story as a user runs it: `kray up`, apply the TensorBoard CRD, `kray controller
run` the example operator from its folder (shipped to Ray as a working_dir), apply a TensorBoard,
see its children, status and events, then delete it (finalizer) and the controller."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kray.etcd_server import free_port

pytestmark = [pytest.mark.ray, pytest.mark.etcd, pytest.mark.slow]
KRAY = str(Path(sys.executable).with_name("kray"))
OPERATOR_DIR = Path(__file__).resolve().parents[3] / "examples" / "operator"
NAME = "tensorboard-operator"


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KRAY, *args], env=env, capture_output=True, text=True, timeout=timeout)


def ok(args: list[str], env: dict[str, str]) -> str:
    done = run(args, env)
    assert done.returncode == 0, f"kray {' '.join(args)}: {done.stderr}"
    return done.stdout


def until(what: str, check: Callable[[], bool], timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_operator_end_to_end(ray_cluster: str, etcd_endpoint: str, tmp_path: Path) -> None:
    import ray

    env = {**os.environ, "KRAY_CONFIG": str(tmp_path / "config"), "KRAY_STATE_DIR": str(tmp_path / "state")}
    for var in ("KRAY_SERVER", "KRAY_TOKEN", "RAY_ADDRESS"):
        env.pop(var, None)
    up = ["up", "--ray-address", ray_cluster, "--etcd", etcd_endpoint, "--port", str(free_port())]
    try:
        ok(up, env)
        assert "created" in ok(["apply", "-f", str(OPERATOR_DIR / "tensorboard-crd.yaml")], env)
        started = ok(["controller", "run", "tensorboard_operator:build", "--path", str(OPERATOR_DIR)], env)
        assert f"controller/{NAME} started" in started
        again = run(["controller", "run", "tensorboard_operator:build", "--path", str(OPERATOR_DIR)], env)
        assert again.returncode == 1 and "already running" in again.stderr

        assert "tensorboard.example.kray.io/mnist created" in ok(
            ["apply", "-f", str(OPERATOR_DIR / "sample.yaml")], env
        )

        def status() -> dict[str, object]:
            got = run(["get", "tensorboard", "mnist", "-o", "json"], env, timeout=30)
            return dict(json.loads(got.stdout).get("status") or {}) if got.returncode == 0 else {}

        # No nodes in this cluster: the pods stay Pending, so does the TensorBoard.
        until("the operator's status", lambda: status().get("phase") == "Pending")
        assert status()["url"] == "http://mnist.default.svc.cluster.local:6006"
        rs = ok(["get", "rs", "-l", "example.kray.io/tensorboard=mnist", "-o", "name"], env).split()
        assert len(rs) == 1 and rs[0].startswith("replicaset.apps/mnist-")
        assert "6006/TCP" in ok(["get", "svc", "mnist"], env)
        # The built-in ReplicaSet controller makes the operator's pod.
        until("the pod", lambda: "mnist-" in run(["get", "pods", "-o", "name"], env, timeout=30).stdout)

        listed = ok(["get", "tensorboards"], env)
        assert listed.splitlines()[1].split()[0] == "mnist"
        described = ok(["describe", "tensorboard", "mnist"], env)
        assert "Events:" in described and "CreatedReplicaSet" in described and "tensorboard-operator" in described
        events = ok(["get", "events"], env).splitlines()
        assert events[0].split() == ["NAME", "LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        assert any("tensorboard/mnist" in line and "CreatedService" in line for line in events)

        table = ok(["controller", "list"], env).splitlines()
        assert table[0].split() == ["NAME", "REPLICAS", "LEADER", "RECONCILES", "STATUS"]
        row = next(line.split() for line in table if line.startswith(NAME))
        assert row[1:3] == ["1/1", "0"] and row[-1] == "Running"

        # Deleting the TensorBoard waits for the operator's finalizer, which removes the children.
        ok(["delete", "-f", str(OPERATOR_DIR / "sample.yaml")], env)
        until("the TensorBoard to go", lambda: run(["get", "tb", "mnist"], env, timeout=30).returncode == 1)
        assert run(["get", "svc", "mnist"], env).returncode == 1

        # Ray restarts a crashed replica long after `controller run` exited: the shipped code
        # (the job's working_dir package) must still be there for it to import.
        actor = ray.get_actor(f"kray-controller-{NAME}-0", namespace="kray")
        before = ray.get(actor.status.remote(), timeout=10)["identity"]
        ray.kill(actor, no_restart=False)

        def restarted() -> bool:
            try:
                now = ray.get(actor.status.remote(), timeout=5)
            except Exception:
                return False
            assert now["error"] is None, now["error"]
            return bool(now["identity"] != before and now["synced"])

        until("the replica to come back", restarted)

        assert f'controller "{NAME}" deleted' in ok(["controller", "delete", NAME], env)
        assert NAME not in ok(["controller", "list"], env)
        with pytest.raises(ValueError):
            ray.get_actor(f"kray-controller-{NAME}-0", namespace="kray")
    finally:
        run(["controller", "delete", NAME], env)
        down = run(["down"], env)
        assert down.returncode == 0, down.stderr
