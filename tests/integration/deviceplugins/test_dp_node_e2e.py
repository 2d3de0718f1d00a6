"""GPU device plugins end to end on one real node: `kray up --fake-gpus 4` (real etcd, real Ray,
the kubelet's device manager and the GPU plugin actor over real gRPC, real crun containers).

- the Node advertises ``nvidia.com/gpu: 4``, carries the GPU labels and has a NodeDevices object;
- a Pod asking for 2 GPUs (selecting the GPU model by label) sees exactly two UUIDs in its
  ``NVIDIA_VISIBLE_DEVICES`` (its own ``env`` output, read with `kray logs`);
- a Pod asking for 3 stays Pending: ``Insufficient nvidia.com/gpu``;
- XID 79 on one of the first Pod's GPUs lowers allocatable to 3, records Events on the Node and
  the Pod and sets the Pod's ``kray.io/GPUHealthy`` condition False; the GPU coming back sets it
  True again;
- `kray down` leaves no netns, veth or bridge behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kray.etcd_server import free_port

pytestmark = [pytest.mark.ray, pytest.mark.etcd, pytest.mark.root, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]
KRAY = str(Path(sys.executable).with_name("kray"))
GPU = "nvidia.com/gpu"
PRODUCT = "NVIDIA-H100-80GB-HBM3"  # FakeNvml.dgx's model, as a label value

if os.geteuid() != 0:
    pytest.skip("needs root: containers use namespaces and cgroups", allow_module_level=True)


def kray(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KRAY, *args], env=env, capture_output=True, text=True, timeout=timeout)


def get_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    got = kray(env, "get", *args, "-o", "json")
    return json.loads(got.stdout) if got.returncode == 0 and got.stdout.strip() else {}


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def in_etcd(endpoint: str, key: str) -> bool:
    """Whether etcd holds ``key`` (read past the API server, which `kray down` removed)."""
    import base64

    import httpx

    body = {"key": base64.b64encode(key.encode()).decode()}
    return bool(httpx.post(f"{endpoint}/v3/kv/range", json=body, timeout=5).json().get("kvs"))


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c["type"] == type_), {})


def test_fake_gpus_on_a_real_node(
    ray_cluster: str, private_etcd_endpoint: str, node_root: Path, tmp_path: Path
) -> None:
    import ray

    from kray.deviceplugins.actor import RAY_NAMESPACE, actor_name

    node = f"gpu-{uuid.uuid4().hex[:6]}"
    prefix = f"kg{uuid.uuid4().hex[:4]}"
    env = {**os.environ, "KRAY_CONFIG": str(tmp_path / "config"), "KRAY_STATE_DIR": str(tmp_path / "state")}
    for var in ("KRAY_SERVER", "KRAY_TOKEN"):
        env.pop(var, None)
    up = kray(
        env, "up", "--ray-address", ray_cluster, "--etcd", private_etcd_endpoint, "--port", str(free_port()),
        "--node-name", node, "--pod-cidr", "10.251.20.0/24", "--node-root", str(node_root),
        "--net-prefix", prefix, "--fake-gpus", "4",
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr
        assert f"{GPU}: 4 advertised" in up.stderr, up.stderr
        status = get_json(env, "node", node)["status"]
        assert str(status["capacity"][GPU]) == "4" and str(status["allocatable"][GPU]) == "4"
        labels = wait_for(
            "GPU labels",
            lambda: (lambda m: m if m.get("nvidia.com/gpu.product") else None)(
                get_json(env, "node", node)["metadata"].get("labels", {})
            ),
        )
        assert labels["nvidia.com/gpu.product"] == PRODUCT
        assert labels["nvidia.com/gpu.count"] == "4" and labels["nvidia.com/gpu.memory"] == "81920"
        devices = get_json(env, "nodedevices", node)
        uuids = [d["name"] for d in devices["spec"]["devices"]]
        assert len(uuids) == 4 and all(d["health"] == "Healthy" for d in devices["spec"]["devices"])

        image = subprocess.run(
            ["bash", str(ROOT / "scripts/build_test_image.sh"), str(tmp_path / "busybox.tar")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert kray(env, "image", "import", image.stdout.strip(), "--name", "busybox:latest").returncode == 0
        manifest = tmp_path / "pods.yaml"
        manifest.write_text(PODS.replace("PRODUCT", PRODUCT))
        applied = kray(env, "apply", "-f", str(manifest))
        assert applied.returncode == 0, applied.stderr

        # Two GPUs, seen inside the container.
        def visible() -> list[str] | None:
            out = kray(env, "logs", "two-gpus").stdout
            line = next((ln for ln in out.splitlines() if ln.startswith("NVIDIA_VISIBLE_DEVICES=")), None)
            return line.split("=", 1)[1].split(",") if line else None

        seen = wait_for("two-gpus to print its env", visible, timeout=60)
        assert len(seen) == 2 and set(seen) <= set(uuids), seen
        pod = get_json(env, "pod", "two-gpus")
        assert pod["spec"]["nodeName"] == node and pod["status"]["phase"] == "Running"

        # Three do not fit beside it.
        def pending_reason() -> str | None:
            cond = condition(get_json(env, "pod", "three-gpus"), "PodScheduled")
            return cond.get("message") if cond.get("status") == "False" else None

        assert f"Insufficient {GPU}" in wait_for("three-gpus unschedulable", pending_reason)
        assert get_json(env, "pod", "three-gpus")["status"]["phase"] == "Pending"

        # XID 79 (fallen off the bus) on one of two-gpus' GPUs.
        plugin = ray.get_actor(actor_name(node), namespace=RAY_NAMESPACE)
        bad = seen[1]
        ray.get(plugin.inject_xid.remote(bad, 79, True), timeout=30)
        wait_for("allocatable 3", lambda: str(get_json(env, "node", node)["status"]["allocatable"][GPU]) == "3")
        cond = wait_for(
            "GPUHealthy False",
            lambda: (lambda c: c if c.get("status") == "False" else None)(
                condition(get_json(env, "pod", "two-gpus"), "kray.io/GPUHealthy")
            ),
        )
        assert cond["reason"] == "GPUUnhealthy" and bad in cond["message"] and "XID 79" in cond["message"]
        events = get_json(env, "events", "-A")["items"]
        kinds = {(e["involvedObject"]["kind"], e["involvedObject"]["name"]) for e in events if bad in e["message"]}
        assert ("Node", node) in kinds and ("Pod", "two-gpus") in kinds, events
        health = {d["name"]: d["health"] for d in get_json(env, "nodedevices", node)["spec"]["devices"]}
        assert health[bad] == "Unhealthy" and list(health.values()).count("Healthy") == 3

        # It answers again: re-probed (2 s back-off on fake GPUs) and readmitted.
        ray.get(plugin.restore_gpu.remote(bad), timeout=30)
        wait_for(
            "GPUHealthy True",
            lambda: condition(get_json(env, "pod", "two-gpus"), "kray.io/GPUHealthy").get("status") == "True",
            timeout=30,
        )
        wait_for("allocatable 4", lambda: str(get_json(env, "node", node)["status"]["allocatable"][GPU]) == "4")
        assert in_etcd(private_etcd_endpoint, f"/registry/kray.io/nodedevices/{node}")
    finally:
        down = kray(env, "down", timeout=300)
    assert down.returncode == 0, down.stderr
    assert not in_etcd(private_etcd_endpoint, f"/registry/kray.io/nodedevices/{node}"), "NodeDevices left behind"
    leftovers = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in leftovers
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert prefix not in links
    assert not list(node_root.glob("*/device-plugins/*.sock")), "device plugin sockets left behind"


PODS = """
apiVersion: v1
kind: Pod
metadata: {name: two-gpus}
spec:
  nodeSelector: {nvidia.com/gpu.product: PRODUCT}
  containers:
  - name: main
    image: busybox:latest
    command: [sh, -c, "env; sleep 3600"]
    resources: {limits: {nvidia.com/gpu: 2}}
---
apiVersion: v1
kind: Pod
metadata: {name: three-gpus}
spec:
  containers:
  - name: main
    image: busybox:latest
    command: [sh, -c, "env; sleep 3600"]
    resources: {limits: {nvidia.com/gpu: 3}}
"""
