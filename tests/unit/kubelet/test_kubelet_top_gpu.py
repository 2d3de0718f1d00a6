"""GPU usage end to end without GPUs: FakeDevices' usage (what a DeviceUsage-serving plugin
reports) in the kubelet's /stats/summary as the Summary API's ``accelerators``, the API server's
metrics.k8s.io turning them into kray's ``nvidia.com/gpu.*`` usage keys, and `kray top --gpu`."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import pytest
from kubelet_harness import Env, served

from kray.actors.kubelet.fakes import FakeDevices
from kray.actors.kubelet.logserver import log_app

KRAY = str(Path(sys.executable).with_name("kray"))
BUSY = {"name": "main", "image": "busybox", "command": ["sleep", "1000"]}
GiB, MiB = 1 << 30, 1 << 20
H100 = 80 * GiB


def gpus(n: int) -> dict[str, str]:
    return {"limits": {"nvidia.com/gpu": str(n)}}


@pytest.fixture
async def cluster(env: Env) -> Env:
    """train: main holds GPU-a and GPU-b, side none; infer: GPU-c, which cannot tell how busy it
    is; web: no GPU. GPU-d is idle and free."""
    devices = FakeDevices({"nvidia.com/gpu": ["GPU-a", "GPU-b", "GPU-c", "GPU-d"]})
    devices.set_usage("GPU-a", 80, 30 * GiB)
    devices.set_usage("GPU-b", 50, 10 * GiB)
    devices.set_usage("GPU-c", None, 2 * GiB, model="NVIDIA GeForce RTX 4090", memory_total_bytes=24 * GiB)
    devices.set_usage("GPU-d", 0, 0)
    env.kubelet = env.new_kubelet(devices=devices)
    env.cri.usage = {"main": (100_000_000, 64 * MiB), "side": (10_000_000, 8 * MiB)}
    side = {**BUSY, "name": "side"}
    await env.create("train", {"containers": [{**BUSY, "resources": gpus(2)}, side]})
    await env.step()
    await env.create("infer", {"containers": [{**BUSY, "resources": gpus(1)}]})
    await env.create("web", {"containers": [BUSY]})
    await env.step()
    env.api.metrics.transport = httpx.ASGITransport(app=log_app(env.kubelet))
    return env


async def test_summary_lists_each_containers_accelerators(cluster: Env) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=log_app(cluster.kubelet)), base_url="http://n") as n:
        summary = (await n.get("/stats/summary")).json()
    containers = {(p["podRef"]["name"], c["name"]): c for p in summary["pods"] for c in p["containers"]}
    h100 = {"make": "nvidia", "model": "NVIDIA H100 80GB HBM3", "memoryTotal": H100}
    assert containers[("train", "main")]["accelerators"] == [
        {**h100, "id": "GPU-a", "memoryUsed": 30 * GiB, "dutyCycle": 80},
        {**h100, "id": "GPU-b", "memoryUsed": 10 * GiB, "dutyCycle": 50},
    ]
    # A GPU that cannot tell how busy it is: no dutyCycle (unknown), not 0.
    assert containers[("infer", "main")]["accelerators"] == [
        {"make": "nvidia", "model": "NVIDIA GeForce RTX 4090", "id": "GPU-c", "memoryTotal": 24 * GiB,
         "memoryUsed": 2 * GiB},
    ]  # fmt: skip
    assert "accelerators" not in containers[("train", "side")] and "accelerators" not in containers[("web", "main")]
    node = summary["node"]["accelerators"]
    assert [a["id"] for a in node] == ["GPU-a", "GPU-b", "GPU-c", "GPU-d"]  # every GPU, held or not
    assert node[3] == {**h100, "id": "GPU-d", "memoryUsed": 0, "dutyCycle": 0}


async def test_metrics_api_extension_keys(cluster: Env) -> None:
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=cluster.api.app), base_url="http://api", headers={"Authorization": "Bearer t"}
    )
    async with http:
        train = (await http.get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/train")).json()
        listed = (await http.get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods")).json()
        node = (await http.get("/apis/metrics.k8s.io/v1beta1/nodes/n1")).json()
    usage = {c["name"]: c["usage"] for c in train["containers"]}
    assert usage["main"] == {
        "cpu": "100000000n",
        "memory": "65536Ki",
        "nvidia.com/gpu.utilization": "65",  # (80 + 50) / 2
        "nvidia.com/gpu.memory": f"{40 * GiB // 1024}Ki",  # 30 + 10 GiB
    }
    assert usage["side"] == {"cpu": "10000000n", "memory": "8192Ki"}  # no GPU: no extension keys
    infer = next(i for i in listed["items"] if i["metadata"]["name"] == "infer")["containers"][0]["usage"]
    assert "nvidia.com/gpu.utilization" not in infer and infer["nvidia.com/gpu.memory"] == f"{2 * GiB // 1024}Ki"
    # The node: every GPU that can tell, averaged ((80 + 50 + 0) / 3); memory over all four.
    assert node["usage"]["nvidia.com/gpu.utilization"] == "43"
    assert node["usage"]["nvidia.com/gpu.memory"] == f"{42 * GiB // 1024}Ki"


async def test_kray_top_gpu(cluster: Env, tmp_path: Path) -> None:
    async with served(cluster.api.app) as address:
        env = {**os.environ, "KRAY_SERVER": f"http://{address}", "KRAY_TOKEN": "t", "KRAY_CONFIG": str(tmp_path / "c")}

        async def kray(*args: str) -> list[list[str]]:
            proc = await asyncio.create_subprocess_exec(
                KRAY, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            return [line.split() for line in out.decode().splitlines()]

        assert await kray("top", "pod", "--gpu") == [
            ["NAME", "CPU(cores)", "MEMORY(bytes)", "GPU(%)", "GPU-MEMORY(bytes)"],
            ["infer", "100m", "64Mi", "<unknown>", "2048Mi"],
            ["train", "110m", "72Mi", "65%", "40960Mi"],
            ["web", "100m", "64Mi", "<none>", "<none>"],
        ]
        assert await kray("top", "pod", "train", "--containers", "--gpu", "--no-headers") == [
            ["train", "main", "100m", "64Mi", "65%", "40960Mi"],
            ["train", "side", "10m", "8Mi", "<none>", "<none>"],
        ]
        # Without --gpu, the columns kubectl prints and nothing more.
        assert (await kray("top", "pod", "train"))[0] == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
        header, row = await kray("top", "node", "--gpu")
        assert header == ["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%", "GPU(%)", "GPU-MEMORY(bytes)"]
        assert row[0] == "n1" and row[5:] == ["43%", "43008Mi"]


async def test_a_node_without_gpus_shows_none(env: Env, tmp_path: Path) -> None:
    await env.create("web", {"containers": [BUSY]})
    await env.step()
    env.api.metrics.transport = httpx.ASGITransport(app=log_app(env.kubelet))
    async with served(env.api.app) as address:
        cli_env = {**os.environ, "KRAY_SERVER": f"http://{address}", "KRAY_TOKEN": "t", "KRAY_CONFIG": str(tmp_path)}
        proc = await asyncio.create_subprocess_exec(
            KRAY, "top", "node", "--gpu", "--no-headers", env=cli_env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
    assert out.decode().split()[5:] == ["<none>", "<none>"]
