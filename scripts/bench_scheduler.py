"""Scheduler throughput end to end, kube-scheduler's SchedulingBasic shape (scheduler_perf).

    .venv/bin/python scripts/bench_scheduler.py [--nodes 5000] [--pods 10000] [--shards 1,2,4]

Starts etcd and the API server (a subprocess), registers ``--nodes`` hollow nodes (4 cpu,
32Gi, 110 pods), then for each shard count starts that many scheduler shard processes (each a
``ShardCore``: direct etcd watches, bindings POSTed through the API server), creates ``--pods``
pods (100m cpu, 500Mi) as fast as the API server takes them, and measures pods/s from the
first create to the last bind, p50/p99 from a pod's create to its bind (as seen on an etcd
watch), and the ratio to raw etcd transactions/s (binding-shaped: 2 compares, 2 puts) measured
in the same run. kube-scheduler's published floor for this shape: 680 pods/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

TOKEN = "bench-token"
EVENT_COUNTS = ("written", "dropped", "failed", "queued")


def events_summary(on: bool, counts: dict[str, int]) -> str:
    if not on:
        return "Scheduled events off"
    written, dropped, failed, queued = (counts[k] for k in EVENT_COUNTS)
    return f"Scheduled events on ({written} written, {dropped} dropped, {failed} failed, {queued} queued at exit)"


# ---- the shard worker (one process per shard) ---------------------------------------------


async def worker(index: int, shards: int, etcd: str, server: str, scheduled_events: bool) -> None:
    import kray.crds  # noqa: F401
    from kray.actors.framework.ports import StoreListWatcher
    from kray.actors.scheduler.binder import ApiBinder
    from kray.actors.scheduler.reporter import ApiStatusReporter
    from kray.actors.scheduler.shard import ShardCore
    from kray.actors.store.etcd import EtcdKV
    from kray.actors.store.objects import ObjectStore
    from kray.client import AsyncClient

    client = AsyncClient(server=server, token=TOKEN)
    lw = StoreListWatcher(ObjectStore(EtcdKV(etcd)))
    core = ShardCore(
        index, shards, pods=lw, nodes=lw, pod_groups=lw, binder=ApiBinder(client),
        reporter=ApiStatusReporter(client, scheduled_events=scheduled_events),
    )  # fmt: skip
    await core.start(sync_timeout=300)
    print("ready", flush=True)
    loop_task = asyncio.ensure_future(core._loop())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    loop_task.cancel()
    print(json.dumps(core.stats()), flush=True)


# ---- the driver ---------------------------------------------------------------------------


async def etcd_txns_per_second(endpoint: str, seconds: float = 3.0, concurrency: int = 64) -> float:
    from kray.actors.store.etcd import EtcdKV
    from kray.actors.store.kv import Compare

    kv = EtcdKV(endpoint)
    value = b"x" * 1200  # about a pod's size
    done = 0
    deadline = time.perf_counter() + seconds

    async def loop(i: int) -> None:
        nonlocal done
        a, b = f"/bench/txn/{i}/pod", f"/bench/txn/{i}/alloc"
        ra = rb = 0
        while time.perf_counter() < deadline:
            rev = await kv.txn([Compare(a, ra), Compare(b, rb)], [(a, value), (b, value[:300])])
            ra = rb = rev
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    rate = done / (time.perf_counter() - t0)
    await kv.delete_prefix("/bench/")
    await kv.close()
    return rate


def pod_body(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "containers": [
                {"name": "pause", "image": "pause:3.9", "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}
            ]
        },
    }


async def run_round(args: argparse.Namespace, plane: Any, shards: int) -> dict[str, Any]:
    from kray.actors.store.etcd import EtcdKV
    from kray.client import AsyncClient

    ns = f"bench-{shards}"
    client = AsyncClient(server=plane.url, token=TOKEN)
    await client.create_raw({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, None)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                str(i),
                "--shards",
                str(shards),
                "--etcd",
                plane.etcd_endpoint,
                "--server",
                plane.url,
                *([] if args.scheduled_events else ["--no-scheduled-events"]),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(shards)
    ]
    for p in procs:  # wait until every shard has listed the nodes
        assert p.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, p.stdout.readline)
        assert line.strip() == "ready", line
    # Watch pod keys straight off etcd for the moment each gets its node.
    kv = EtcdKV(plane.etcd_endpoint)
    created: dict[str, float] = {}
    bound: dict[str, float] = {}
    all_bound = asyncio.Event()
    start_rev = await kv.current_revision() + 1

    async def watch() -> None:
        async for batch in kv.watch(f"/registry/core/pods/{ns}/", start_revision=start_rev):
            now = time.perf_counter()
            for ev in batch:
                if ev.type == "PUT" and b'"nodeName"' in ev.kv.value:
                    name = ev.kv.key.rsplit("/", 1)[1]
                    bound.setdefault(name, now)
            if len(bound) >= args.pods:
                all_bound.set()
                return

    watcher = asyncio.ensure_future(watch())
    sem = asyncio.Semaphore(args.create_concurrency)

    async def create(i: int) -> None:
        name = f"pod-{i}"
        async with sem:
            created[name] = time.perf_counter()
            await client.create_raw(pod_body(name, ns), None)

    t0 = time.perf_counter()
    await asyncio.gather(*(create(i) for i in range(args.pods)))
    t_created = time.perf_counter()
    try:
        await asyncio.wait_for(all_bound.wait(), args.timeout)
    except asyncio.TimeoutError:
        print(f"  timeout: {len(bound)}/{args.pods} bound", flush=True)
    t_end = max(bound.values()) if bound else time.perf_counter()
    watcher.cancel()
    stats = []
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        out, _ = p.communicate(timeout=30)
        stats.append(json.loads(out.strip().splitlines()[-1]) if out.strip() else {})
    lat = sorted(bound[n] - created[n] for n in bound)
    await kv.close()
    await client.aclose()
    return {
        "shards": shards,
        "bound": len(bound),
        "pods_per_s": len(bound) / (t_end - t0),
        "create_per_s": args.pods / (t_created - t0),
        "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
        "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else None,
        "bind_failures": sum(s.get("bind_failures", 0) for s in stats),
        # What the shards' "Scheduled" Event queues did: written, dropped when full, failed, left.
        "events": {k: sum((s.get("events") or {}).get(k, 0) for s in stats) for k in EVENT_COUNTS},
    }


async def main(args: argparse.Namespace) -> None:
    from kray.actors.hollow import HollowNodes, NodeTemplate
    from kray.actors.hollow.cluster import LocalControlPlane
    from kray.client import AsyncClient

    with LocalControlPlane(token=TOKEN) as plane:
        txn_rate = await etcd_txns_per_second(plane.etcd_endpoint)
        print(f"raw etcd binding-shaped txns: {txn_rate:.0f}/s", flush=True)
        print(f'scheduler "Scheduled" events: {"on" if args.scheduled_events else "off"}', flush=True)
        client = AsyncClient(server=plane.url, token=TOKEN)
        hollow = HollowNodes(
            client,
            None,
            count=args.nodes,
            prefix="node",
            template=NodeTemplate(cpu="4", memory="32Gi", pods=110),
            heartbeat_interval=0,
            concurrency=64,
        )
        t0 = time.perf_counter()
        failed = await hollow.register()
        print(f"registered {args.nodes} hollow nodes (+leases) in {time.perf_counter() - t0:.1f}s, {failed} failed")
        await client.aclose()
        for shards in args.shards:
            r = await run_round(args, plane, shards)
            print(
                f"shards={r['shards']}: {r['bound']}/{args.pods} bound, {r['pods_per_s']:.0f} pods/s "
                f"({r['pods_per_s'] / txn_rate:.2f} of raw etcd txn/s), create {r['create_per_s']:.0f}/s, "
                f"create->bind p50 {r['p50_ms']:.0f} ms p99 {r['p99_ms']:.0f} ms, bind conflicts {r['bind_failures']}, "
                f"{events_summary(args.scheduled_events, r['events'])}",
                flush=True,
            )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--pods", type=int, default=10000)
    ap.add_argument("--shards", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4])
    ap.add_argument("--create-concurrency", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--worker", type=int, default=None)
    ap.add_argument("--etcd", default="")
    ap.add_argument("--server", default="")
    # Deployed schedulers record a "Scheduled" Event per bound pod; measure with them by default.
    ap.add_argument("--no-scheduled-events", dest="scheduled_events", action="store_false")
    a = ap.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if a.worker is not None:
        asyncio.run(worker(a.worker, a.shards[0], a.etcd, a.server, a.scheduled_events))
    else:
        asyncio.run(main(a))
