"""Throughput of the scheduler core alone: 5,000 nodes, 10,000 pods, in-memory FakeBinder.

    .venv/bin/python scripts/bench_scheduler_core.py [--nodes 5000] [--pods 10000] [--shards 1]

Measures pods bound per second through the full cycle (queue, filter, score, assume, reserve,
permit, bind, watch event back into the cache). No Ray, no etcd: this is the ceiling the
scheduler actors can reach before I/O.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from kray.actors.scheduler.fakes import FakeBinder
from kray.actors.scheduler.ports import FakeClock
from kray.actors.scheduler.scheduler import Scheduler
from kray.actors.scheduler.sharding import Shard
from kray.crds import Node, Pod


def make_node(i: int, rng: random.Random) -> Node:
    gpus = rng.choice([0, 8])
    alloc = {"cpu": "64", "memory": "512Gi", "pods": "110", **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    return Node.model_validate(
        {
            "metadata": {
                "name": f"node-{i}",
                "labels": {"kubernetes.io/hostname": f"node-{i}", "topology.kubernetes.io/zone": f"z{i % 8}"},
            },
            "status": {"allocatable": alloc, "capacity": alloc},
        }
    )


def make_pod(i: int, rng: random.Random) -> Pod:
    requests: dict[str, str] = {"cpu": rng.choice(["500m", "1", "2"]), "memory": rng.choice(["1Gi", "4Gi"])}
    if rng.random() < 0.3:
        requests["nvidia.com/gpu"] = str(rng.choice([1, 2, 4]))
    return Pod.model_validate(
        {
            "metadata": {"name": f"pod-{i}", "namespace": "bench", "labels": {"app": f"a{i % 50}"}},
            "spec": {"containers": [{"name": "c", "image": "train:1", "resources": {"requests": requests}}]},
        }
    )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--pods", type=int, default=10000)
    ap.add_argument("--shards", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(1)
    clock, binder = FakeClock(), FakeBinder()
    schedulers = [Scheduler(binder, clock=clock, shard=Shard(i, args.shards), seed=i) for i in range(args.shards)]
    for s in schedulers:
        binder.listeners.append(lambda kind, p, s=s: s.on_pod_update(p) if kind == "bound" else s.on_pod_delete(p))
    nodes = [make_node(i, rng) for i in range(args.nodes)]
    pods = [make_pod(i, rng) for i in range(args.pods)]
    t0 = time.perf_counter()
    for n in nodes:
        binder.add_node(n)
        for s in schedulers:
            s.on_node_add(n)
    for p in pods:
        for s in schedulers:
            s.on_pod_add(p)
    t1 = time.perf_counter()
    while True:
        busy = [await s.step() for s in schedulers]
        if not any(busy):
            break
    t2 = time.perf_counter()
    print(f"nodes={args.nodes} pods={args.pods} shards={args.shards} (interleaved in one thread)")
    print(f"ingest (informer events, PodInfo): {t1 - t0:.2f}s")
    print(f"scheduled {len(binder.bound)} pods in {t2 - t1:.2f}s: {len(binder.bound) / (t2 - t1):.0f} pods/s")
    print(f"overcommitted nodes: {len(binder.overcommitted())}, bind conflicts: {binder.conflicts}")


if __name__ == "__main__":
    asyncio.run(main())
