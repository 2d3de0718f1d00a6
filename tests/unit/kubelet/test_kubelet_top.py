"""Usage end to end without a real runtime: the kubelet's /stats/summary over CRI
ListContainerStats (FakeCri's usage), the API server's metrics.k8s.io reading it, and
`kray top` and the official client's CustomObjectsApi reading that."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import pytest
from kubelet_harness import Env, served

from kray.actors.kubelet.logserver import log_app

KRAY = str(Path(sys.executable).with_name("kray"))
BUSY = {"name": "main", "image": "busybox", "command": ["sleep", "1000"]}
MiB = 1 << 20


@pytest.fixture
async def busy(env: Env) -> Env:
    env.cri.usage = {"main": (250_000_000, 100 * MiB), "side": (50_000_000, 20 * MiB)}
    await env.create("one", {"containers": [BUSY]}, labels={"app": "one"})
    await env.create("two", {"containers": [BUSY, {**BUSY, "name": "side"}]}, labels={"app": "two"})
    await env.step()
    env.api.metrics.transport = httpx.ASGITransport(app=log_app(env.kubelet))
    return env


async def test_summary_and_metrics_api(busy: Env) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=log_app(busy.kubelet)), base_url="http://n") as node:
        summary = (await node.get("/stats/summary")).json()
    assert summary["node"]["nodeName"] == "n1" and summary["node"]["memory"]["workingSetBytes"] > 0
    pods = {p["podRef"]["name"]: p for p in summary["pods"]}
    assert pods["two"]["cpu"]["usageNanoCores"] == 300_000_000
    assert {c["name"] for c in pods["two"]["containers"]} == {"main", "side"}

    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=busy.api.app), base_url="http://api", headers={"Authorization": "Bearer t"}
    )
    async with http:
        groups = (await http.get("/apis")).json()["groups"]
        assert "metrics.k8s.io" in {g["name"] for g in groups}
        resources = (await http.get("/apis/metrics.k8s.io/v1beta1")).json()["resources"]
        assert {(r["name"], r["kind"]) for r in resources} == {("nodes", "NodeMetrics"), ("pods", "PodMetrics")}
        listed = (await http.get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods")).json()
        assert listed["kind"] == "PodMetricsList" and [i["metadata"]["name"] for i in listed["items"]] == ["one", "two"]
        two = (await http.get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/two")).json()
        assert two["kind"] == "PodMetrics"
        assert {c["name"]: c["usage"] for c in two["containers"]} == {
            "main": {"cpu": "250000000n", "memory": "102400Ki"},
            "side": {"cpu": "50000000n", "memory": "20480Ki"},
        }
        picked = await http.get("/apis/metrics.k8s.io/v1beta1/pods", params={"labelSelector": "app=one"})
        assert [i["metadata"]["name"] for i in picked.json()["items"]] == ["one"]
        missing = await http.get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/ghost")
        assert missing.status_code == 404 and missing.json()["kind"] == "Status"
        nodes = (await http.get("/apis/metrics.k8s.io/v1beta1/nodes")).json()
        assert [i["metadata"]["name"] for i in nodes["items"]] == ["n1"]
        assert nodes["items"][0]["usage"]["memory"].endswith("Ki")


async def test_kray_top_and_the_official_client(busy: Env, tmp_path: Path) -> None:
    async with served(busy.api.app) as address:
        env = {**os.environ, "KRAY_SERVER": f"http://{address}", "KRAY_TOKEN": "t", "KRAY_CONFIG": str(tmp_path / "c")}

        async def kray(*args: str) -> tuple[int, str, str]:
            proc = await asyncio.create_subprocess_exec(
                KRAY, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            out, err = await proc.communicate()
            return proc.returncode or 0, out.decode(), err.decode()

        code, out, _ = await kray("top", "pod", "--sort-by", "cpu")
        assert code == 0 and [line.split() for line in out.splitlines()] == [
            ["NAME", "CPU(cores)", "MEMORY(bytes)"], ["two", "300m", "120Mi"], ["one", "250m", "100Mi"],
        ]  # fmt: skip
        code, out, _ = await kray("top", "pod", "two", "--containers")
        assert [line.split() for line in out.splitlines()][1:] == [
            ["two", "main", "250m", "100Mi"],
            ["two", "side", "50m", "20Mi"],
        ]
        code, out, _ = await kray("top", "node")
        header, row = (line.split() for line in out.splitlines())
        assert header == ["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"] and row[0] == "n1"
        assert row[1].endswith("m") and row[2].endswith("%") and row[3].endswith("Mi"), row
        code, _, err = await kray("top", "pod", "ghost")
        assert code == 1 and 'podmetrics.metrics.k8s.io "default/ghost" not found' in err

        def official() -> list[str]:
            from kubernetes import client as k8s

            config = k8s.Configuration(host=f"http://{address}", api_key={"authorization": "Bearer t"})
            api = k8s.CustomObjectsApi(k8s.ApiClient(config))
            pods = api.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", "default", "pods")
            return [p["metadata"]["name"] for p in pods["items"]]

        assert await asyncio.to_thread(official) == ["one", "two"]
