"""GPU usage in `kray top` on one real node with fake GPUs: `kray up --fake-gpus 2` (real etcd,
real Ray, the GPU plugin actor serving DeviceUsage over real gRPC, the kubelet's device manager
asking it, a real crun container holding both GPUs). After the fake NVML is told how busy the
GPUs are, `kray top pod --gpu` shows the pod's average and memory, `kray top node --gpu` the
node's. The fake NVML lives in the plugin actor: its ``set_gpu_utilization`` sets the figures."""

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
GiB = 1 << 30

if os.geteuid() != 0:
    pytest.skip("needs root: containers use namespaces and cgroups", allow_module_level=True)

POD = """
apiVersion: v1
kind: Pod
metadata: {name: train}
spec:
  containers:
  - name: main
    image: busybox:latest
    command: [sh, -c, "sleep 3600"]
    resources: {limits: {nvidia.com/gpu: 2}}
"""


def kray(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KRAY, *args], env=env, capture_output=True, text=True, timeout=timeout)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := check():
            return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def test_kray_top_gpu_on_a_node_with_fake_gpus(
    ray_cluster: str, private_etcd_endpoint: str, node_root: Path, tmp_path: Path
) -> None:
    import ray

    from kray.deviceplugins.actor import RAY_NAMESPACE, actor_name

    node = f"gpu-{uuid.uuid4().hex[:6]}"
    prefix = f"kt{uuid.uuid4().hex[:4]}"
    env = {**os.environ, "KRAY_CONFIG": str(tmp_path / "config"), "KRAY_STATE_DIR": str(tmp_path / "state")}
    for var in ("KRAY_SERVER", "KRAY_TOKEN"):
        env.pop(var, None)
    up = kray(
        env, "up", "--ray-address", ray_cluster, "--etcd", private_etcd_endpoint, "--port", str(free_port()),
        "--node-name", node, "--pod-cidr", "10.251.21.0/24", "--node-root", str(node_root),
        "--net-prefix", prefix, "--fake-gpus", "2",
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr
        image = subprocess.run(
            ["bash", str(ROOT / "scripts/build_test_image.sh"), str(tmp_path / "busybox.tar")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert kray(env, "image", "import", image.stdout.strip(), "--name", "busybox:latest").returncode == 0
        manifest = tmp_path / "pod.yaml"
        manifest.write_text(POD)
        assert kray(env, "apply", "-f", str(manifest)).returncode == 0

        def running() -> bool:
            got = kray(env, "get", "pod", "train", "-o", "json")
            return got.returncode == 0 and json.loads(got.stdout)["status"].get("phase") == "Running"

        wait_for("train to run", running)
        plugin = ray.get_actor(actor_name(node), namespace=RAY_NAMESPACE)
        busy = {0: (80, 20 * GiB), 1: (40, 10 * GiB)}
        for index, (percent, used) in busy.items():
            ray.get(plugin.set_gpu_utilization.remote(index, percent, used), timeout=30)

        printed: dict[str, Any] = {}

        def top(kind: str) -> list[list[str]] | None:
            """The rows once they show (80 + 40) / 2 % and 20 + 10 GiB: a scrape may come before
            the figures do (the device manager caches them briefly, a GetUsage may time out)."""
            got = kray(env, "top", kind, "--gpu", "--no-headers")
            printed[kind] = got.stdout + got.stderr
            rows = [line.split() for line in got.stdout.splitlines()] if got.returncode == 0 else []
            return rows if rows and rows[0][-2:] == ["60%", "30720Mi"] else None

        try:
            [pod] = wait_for("GPU usage in kray top pod", lambda: top("pod"), timeout=30)
            [row] = wait_for("GPU usage in kray top node", lambda: top("node"), timeout=30)
        except AssertionError as e:
            raise AssertionError(f"{e}; kray top printed {printed}") from None
        assert pod[0] == "train" and row[0] == node  # the node's two GPUs are both the pod's
    finally:
        down = kray(env, "down", timeout=300)
    assert down.returncode == 0, down.stderr
