"""Benchmark: the ReplicaSet controller scaling 0 -> N -> 0 pods, against raw store writes.

    .venv/bin/python scripts/bench_controllers.py [--pods 1000] [--concurrency 64]

Starts its own etcd and an API server subprocess (``python -m kray.actors.apiserver``), runs
the ReplicaSet controller in-process through the API server (list+watch, HTTP writes), and
times 0 -> N (until N pods exist) and N -> 0 (until none remain). No kubelet: pods are only
created and deleted. The baseline is the same number of creates + deletes written straight
to the ObjectStore over etcd (no HTTP, no controller) in the same run; the ratio is the
controller's overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import kray.crds  # noqa: F401  (registers the kinds)
from kray.actors.controllers.replicaset import build_replicaset_controller
from kray.actors.framework import ClientListWatcher, Manager
from kray.actors.store import ObjectStore
from kray.actors.store.etcd import EtcdKV
from kray.client import AsyncClient
from kray.crds import REGISTRY, Namespace, ObjectMeta, Pod
from kray.crds.apps import ReplicaSet
from kray.etcd_server import EtcdServer, exit_with_parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pod(name: str, namespace: str) -> Pod:
    return Pod.model_validate(
        {
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": "raw"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        }
    )


async def raw_writes(endpoint: str, count: int, concurrency: int) -> float:
    """``count`` creates then ``count`` deletes straight into the store."""
    store = ObjectStore(EtcdKV(endpoint), REGISTRY)
    info = REGISTRY.for_model(Pod)
    limit = asyncio.Semaphore(concurrency)

    async def bounded(coro: object) -> None:
        async with limit:
            await coro  # type: ignore[misc]

    started = time.perf_counter()
    await asyncio.gather(*(bounded(store.create(info, pod(f"raw-{i}", "raw"))) for i in range(count)))
    await asyncio.gather(*(bounded(store.delete(info, "raw", f"raw-{i}")) for i in range(count)))
    return time.perf_counter() - started


async def http_writes(url: str, token: str, count: int, concurrency: int) -> float:
    """The same creates + deletes through the API server, no controller: where the time goes."""
    limit = asyncio.Semaphore(concurrency)
    async with AsyncClient(server=url, token=token) as client:
        await client.create(Namespace(metadata=ObjectMeta(name="http")))

        async def bounded(coro: object) -> None:
            async with limit:
                await coro  # type: ignore[misc]

        started = time.perf_counter()
        await asyncio.gather(*(bounded(client.create(pod(f"http-{i}", "http"))) for i in range(count)))
        await asyncio.gather(*(bounded(client.delete(Pod, f"http-{i}", "http")) for i in range(count)))
        return time.perf_counter() - started


async def controller_scale(url: str, token: str, count: int) -> tuple[float, float]:
    async with AsyncClient(server=url, token=token) as client:
        await client.create(Namespace(metadata=ObjectMeta(name="bench")))
        manager = Manager(ClientListWatcher(client), client)
        build_replicaset_controller(manager)
        pods = manager.informer_for(Pod)
        runner = asyncio.ensure_future(manager.run())
        await manager.wait_for_sync(30)
        labels = {"app": "bench"}
        rs = ReplicaSet.model_validate(
            {
                "metadata": {"name": "bench", "namespace": "bench"},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
                },
            }
        )
        await client.create(rs)

        async def until(n: int) -> float:
            started = time.perf_counter()
            while len(pods.cache.list("bench")) != n:
                await asyncio.sleep(0.01)
            return time.perf_counter() - started

        started = time.perf_counter()
        await client.patch(ReplicaSet, "bench", {"spec": {"replicas": count}}, "bench")
        await until(count)
        up = time.perf_counter() - started
        started = time.perf_counter()
        await client.patch(ReplicaSet, "bench", {"spec": {"replicas": 0}}, "bench")
        await until(0)
        down = time.perf_counter() - started
        runner.cancel()
        try:
            await runner
        except asyncio.CancelledError:
            pass
        return up, down


def wait_ready(url: str, token: str, proc: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the API server exited")
        try:
            if httpx.get(f"{url}/readyz", headers={"Authorization": f"Bearer {token}"}).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the API server did not come up")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64, help="parallel raw store writes (baseline)")
    args = parser.parse_args()
    token = secrets.token_hex(8)
    with tempfile.TemporaryDirectory(prefix="kray-bench-") as tmp:
        etcd = EtcdServer(data_dir=Path(tmp) / "etcd", die_with_parent=True).start()
        port = free_port()
        env = {**os.environ, "KRAY_TOKEN": token}
        cmd = [sys.executable, "-m", "kray.actors.apiserver", "--etcd", etcd.endpoint, "--port", str(port)]
        proc = subprocess.Popen(cmd, env=env, preexec_fn=exit_with_parent)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, token, proc)
            raw = asyncio.run(raw_writes(etcd.endpoint, args.pods, args.concurrency))
            http = asyncio.run(http_writes(url, token, args.pods, args.concurrency))
            up, down = asyncio.run(controller_scale(url, token, args.pods))
        finally:
            proc.terminate()
            proc.wait(10)
            etcd.stop()
    writes = 2 * args.pods
    print(f"raw store writes : {writes} in {raw:.2f}s ({writes / raw:.0f}/s, concurrency {args.concurrency})")
    print(f"same via HTTP    : {writes} in {http:.2f}s ({writes / http:.0f}/s, API server, no controller)")
    print(f"scale 0->{args.pods}    : {up:.2f}s")
    print(f"scale {args.pods}->0    : {down:.2f}s")
    print(f"controller / raw : {(up + down) / raw:.2f}x   (controller / HTTP: {(up + down) / http:.2f}x)")


if __name__ == "__main__":
    main()
