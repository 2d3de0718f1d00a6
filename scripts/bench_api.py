"""Benchmark the API server against raw etcd, measured in the same run.

    .venv/bin/python scripts/bench_api.py [--creates 2000] [--list-size 10000] [--watch 300]

One fresh etcd; the API server runs as its own process (as the Ray actor does), so the load
generator here does not share its interpreter. Figures (medians over repeats where noted):
  1. raw etcd puts/s from this process (sequential and with N concurrent writers),
  2. API creates/s over HTTP with N concurrent clients, and the ratio to (1),
  3. list latency of 10k Pods over HTTP vs a raw etcd range of the same keys,
  4. watch delivery latency p50/p99 (write -> event seen) over HTTP vs a raw etcd watch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from kray.actors.store.etcd import EtcdKV
from kray.etcd_server import EtcdServer, exit_with_parent, free_port

TOKEN = "bench-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "web"}},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "busybox:latest",
                    "command": ["sleep", "3600"],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                }
            ]
        },
    }


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def raw_puts(kv: EtcdKV, n: int, concurrency: int, prefix: str) -> float:
    value = json.dumps(pod("x")).encode()
    counter = iter(range(n))

    async def writer() -> None:
        for i in counter:
            await kv.create(f"{prefix}{i}", value)

    start = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(concurrency)))
    return n / (time.perf_counter() - start)


async def api_creates(url: str, n: int, concurrency: int, ns: str) -> float:
    counter = iter(range(n))
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=30) as client:

        async def worker() -> None:
            for i in counter:
                resp = await client.post(f"/api/v1/namespaces/{ns}/pods", json=pod(f"p{i}"))
                if resp.status_code != 201:
                    raise RuntimeError(f"create failed: {resp.status_code} {resp.text[:200]}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - start)


async def ensure_namespace(client: httpx.AsyncClient, name: str) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    resp = await client.post("/api/v1/namespaces", json=body)
    if resp.status_code not in (201, 409):
        raise RuntimeError(f"namespace create failed: {resp.status_code} {resp.text[:200]}")


async def list_latency(url: str, kv: EtcdKV, ns: str, repeats: int) -> tuple[float, float, int]:
    api_times, raw_times, count = [], [], 0
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=60) as client:
        for _ in range(repeats):
            start = time.perf_counter()
            resp = await client.get(f"/api/v1/namespaces/{ns}/pods")
            items = resp.json()["items"]
            api_times.append(time.perf_counter() - start)
            count = len(items)
            start = time.perf_counter()
            await kv.range(f"/registry/core/pods/{ns}/")
            raw_times.append(time.perf_counter() - start)
    return statistics.median(api_times), statistics.median(raw_times), count


async def watch_latency_api(url: str, ns: str, n: int) -> list[float]:
    """Update one ConfigMap n times; time from the start of each write to its event."""
    seen: asyncio.Queue[int] = asyncio.Queue()
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=None) as client:
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w"}, "data": {"i": "-1"}}
        resp = await client.post(f"/api/v1/namespaces/{ns}/configmaps", json=cm)
        rv = resp.json()["metadata"]["resourceVersion"]

        async def watcher() -> None:
            params = {"watch": "true", "resourceVersion": rv, "fieldSelector": "metadata.name=w"}
            async with client.stream("GET", f"/api/v1/namespaces/{ns}/configmaps", params=params) as stream:
                async for line in stream.aiter_lines():
                    if line:
                        event = json.loads(line)
                        if event["type"] == "MODIFIED":
                            await seen.put(int(event["object"]["data"]["i"]))

        task = asyncio.create_task(watcher())
        await asyncio.sleep(0.3)
        latencies = []
        for i in range(n):
            patch = {"data": {"i": str(i)}}
            start = time.perf_counter()
            await client.patch(
                f"/api/v1/namespaces/{ns}/configmaps/w",
                json=patch,
                headers={**HEADERS, "Content-Type": "application/merge-patch+json"},
            )
            while await seen.get() != i:
                pass
            latencies.append(time.perf_counter() - start)
        task.cancel()
    return latencies


async def watch_latency_raw(kv: EtcdKV, n: int) -> list[float]:
    key = "/bench/watch/w"
    rev = await kv.put(key, b"-1")
    seen: asyncio.Queue[int] = asyncio.Queue()

    async def watcher() -> None:
        async for batch in kv.watch(key, start_revision=rev + 1):
            for ev in batch:
                await seen.put(int(ev.kv.value))

    task = asyncio.create_task(watcher())
    await asyncio.sleep(0.3)
    latencies = []
    for i in range(n):
        start = time.perf_counter()
        await kv.put(key, str(i).encode())
        while await seen.get() != i:
            pass
        latencies.append(time.perf_counter() - start)
    task.cancel()
    return latencies


def start_apiserver(etcd_endpoint: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kray.actors.apiserver", "--etcd", etcd_endpoint, "--port", str(port)],
        env={**os.environ, "KRAY_TOKEN": TOKEN},
        preexec_fn=exit_with_parent,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("API server did not become ready")


async def run(args: argparse.Namespace, etcd: EtcdServer) -> None:
    port = free_port()
    server = start_apiserver(etcd.endpoint, port)
    url = f"http://127.0.0.1:{port}"
    kv = EtcdKV(etcd.endpoint)
    rows: list[tuple[str, str, str, str]] = []
    try:
        async with httpx.AsyncClient(base_url=url, headers=HEADERS) as client:
            for ns in ("bench-create", "bench-list", "bench-watch"):
                await ensure_namespace(client, ns)
        for conc in args.concurrency:
            raw = await raw_puts(kv, args.creates, conc, f"/bench/raw{conc}/")
            api = await api_creates(url, args.creates, conc, "bench-create")
            rows.append((f"creates/s, {conc} concurrent", f"{api:,.0f}", f"{raw:,.0f}", f"{api / raw:.2f}"))
            await kv.delete_prefix("/registry/core/pods/bench-create/")
        # Fill the list namespace through the API with 8 writers.
        await api_creates(url, args.list_size, 8, "bench-list")
        api_l, raw_l, count = await list_latency(url, kv, "bench-list", args.repeats)
        rows.append((f"list {count:,} pods (median s)", f"{api_l:.3f}", f"{raw_l:.3f}", f"{api_l / raw_l:.2f}"))
        api_w = await watch_latency_api(url, "bench-watch", args.watch)
        raw_w = await watch_latency_raw(kv, args.watch)
        for p in (50, 99):
            a, r = pct(api_w, p) * 1000, pct(raw_w, p) * 1000
            rows.append((f"watch latency p{p} (ms)", f"{a:.2f}", f"{r:.2f}", f"{a / r:.2f}"))
    finally:
        await kv.close()
        server.terminate()
        server.wait(10)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'kray API':>10}  {'raw etcd':>10}  {'ratio':>6}")
    for name, api_v, raw_v, ratio in rows:
        print(f"{name:<{width}}  {api_v:>10}  {raw_v:>10}  {ratio:>6}")
    print("\n(ratio = kray API / raw etcd; for creates/s higher is better, for latencies lower is better)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--creates", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--list-size", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--watch", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kray-bench-") as tmp:
        etcd = EtcdServer(data_dir=Path(tmp) / "etcd", die_with_parent=True).start()
        try:
            asyncio.run(run(args, etcd))
        finally:
            etcd.stop()


if __name__ == "__main__":
    main()
