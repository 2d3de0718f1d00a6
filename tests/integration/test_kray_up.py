"""`kray up` / `kray down` as a user runs them, joined to the session's Ray cluster and etcd.

Also the fault case: the API server actor is killed, Ray restarts it, and it serves the same
objects again from etcd, still handing out ClusterIPs from the ``--service-cidr`` it was given.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from kray.etcd_server import free_port
from tests.leftovers import default_prefix_netns

pytestmark = [pytest.mark.ray, pytest.mark.etcd, pytest.mark.slow]
KRAY = str(Path(sys.executable).with_name("kray"))
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello.yaml"


WEB_DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: busybox:latest, command: [sleep, "3600"]}]
"""

WEB_SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  selector: {app: web}
  ports: [{port: 80}]
"""
SERVICE_CIDR = "10.97.213.0/24"  # not the default: shows the flag reaches the (restarted) API server


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KRAY, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_up_apply_get_restart_down(ray_cluster: str, etcd_endpoint: str, tmp_path: Path) -> None:
    import ray

    from kray.controlplane import APISERVER_ACTOR, RAY_NAMESPACE

    env = {
        **os.environ,
        "KRAY_CONFIG": str(tmp_path / "config"),
        "KRAY_STATE_DIR": str(tmp_path / "state"),
    }
    env.pop("KRAY_SERVER", None)
    env.pop("KRAY_TOKEN", None)
    netns_before = default_prefix_netns()
    port = free_port()
    up_args = ["up", "--ray-address", ray_cluster, "--etcd", etcd_endpoint, "--port", str(port),
               "--service-cidr", SERVICE_CIDR]  # fmt: skip
    try:
        first = run(up_args, env)
        assert first.returncode == 0, first.stderr
        assert f"http://127.0.0.1:{port}" in first.stdout
        assert (tmp_path / "config").exists()
        # Idempotent: a second `kray up` keeps the same server and token.
        token_before = (tmp_path / "config").read_text()
        again = run(up_args, env)
        assert again.returncode == 0, again.stderr
        assert (tmp_path / "config").read_text() == token_before

        applied = run(["apply", "-f", str(EXAMPLE)], env)
        assert applied.returncode == 0, applied.stderr
        assert "pod/hello created" in applied.stdout
        listed = run(["get", "pods", "-n", "demo"], env)
        assert listed.returncode == 0 and "hello" in listed.stdout

        # The Deployment and ReplicaSet controllers that `kray up` deployed turn a Deployment into Pods.
        deploy = tmp_path / "web.yaml"
        deploy.write_text(WEB_DEPLOYMENT)
        assert run(["apply", "-f", str(deploy)], env).returncode == 0
        deadline = time.monotonic() + 60
        names: list[str] = []
        while time.monotonic() < deadline and len(names) != 2:
            got = run(["get", "pods", "-n", "demo", "-l", "app=web", "-o", "name"], env, timeout=30)
            names = got.stdout.split()
            time.sleep(0.5)
        assert len(names) == 2 and all(n.startswith("pod/web-") for n in names), names

        # Kill the API server's process; Ray restarts the actor, which serves again from etcd.
        actor = ray.get_actor(APISERVER_ACTOR, namespace=RAY_NAMESPACE)
        ray.kill(actor, no_restart=False)
        deadline = time.monotonic() + 60
        answered = None
        while time.monotonic() < deadline:
            answered = run(["get", "pod", "hello", "-n", "demo", "-o", "name"], env, timeout=30)
            if answered.returncode == 0:
                break
            time.sleep(0.5)
        assert answered is not None and answered.returncode == 0, answered.stderr if answered else ""
        assert answered.stdout.strip() == "pod/hello"
        service = tmp_path / "svc.yaml"
        service.write_text(WEB_SERVICE)
        assert run(["apply", "-f", str(service)], env).returncode == 0
        ip = run(["get", "service", "web", "-n", "demo", "-o", "jsonpath={.spec.clusterIP}"], env).stdout.strip()
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(SERVICE_CIDR), ip

        unauth = httpx.get(f"http://127.0.0.1:{port}/api/v1/namespaces/demo/pods", timeout=5)
        assert unauth.status_code == 401
        assert unauth.json()["kind"] == "Status"
    finally:
        down = run(["down"], env)
        assert down.returncode == 0, down.stderr
    left = default_prefix_netns() - netns_before
    assert not left, f"`kray down` left pod network namespaces: {sorted(left)}"
    with pytest.raises(ValueError):
        ray.get_actor(APISERVER_ACTOR, namespace=RAY_NAMESPACE)
    # The joined Ray cluster and the user's etcd are left running.
    assert httpx.get(f"{etcd_endpoint}/health", timeout=5).status_code == 200
