"""Pod start latency through the whole node path: API create -> kubelet -> CRI -> crun -> Running.

    sudo .venv/bin/python scripts/bench_podstart.py [--serial 20] [--burst 50]

(a) one Pod at a time: create->Running median, against raw `crun run` of the same bundle;
(b) `--burst` Pods created at once on one node: create->Running p50/p99.
Uses a temporary runtime service (crun), an in-memory API server thread and a kubelet core in
this process; everything is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration" / "kubelet"))

from conftest import Node  # noqa: E402
from kubelet_node import RunningKubelet, pod_body  # noqa: E402

import kray.crds  # noqa: E402,F401
from kray.actors.apiserver import ApiServer  # noqa: E402
from kray.actors.apiserver.server import ServerThread  # noqa: E402
from kray.actors.store import MemoryKV, ObjectStore  # noqa: E402
from kray.client import AsyncClient  # noqa: E402
from kray.crds import Pod  # noqa: E402
from kray.crds.registry import REGISTRY  # noqa: E402
from kray.runtime.cgroups import CgroupV1  # noqa: E402
from kray.runtime.ocirt import make_runtime  # noqa: E402

SLEEP = [{"name": "s", "image": "busybox", "command": ["sleep", "1000"]}]


async def until_running(client: AsyncClient, names: list[str], t0: float, out: dict[str, float]) -> None:
    pending = set(names)
    while pending:
        for p in (await client.list(Pod, "default")).items:
            if p.metadata.name in pending and p.status and p.status.phase == "Running":
                out[p.metadata.name] = time.monotonic() - t0
                pending.discard(p.metadata.name)
        await asyncio.sleep(0.005)


async def delete_all(client: AsyncClient) -> None:
    for p in (await client.list(Pod, "default")).items:
        await client.delete(Pod, p.metadata.name, "default", grace_period_seconds=0)
    while (await client.list(Pod, "default")).items:
        await asyncio.sleep(0.05)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


async def bench(node: Node, api_url: str, serial: int, burst: int) -> None:
    async with AsyncClient(server=api_url, token="bench") as client:
        k = await RunningKubelet(node, client).start()
        try:
            times: list[float] = []
            last_cid = ""
            for i in range(serial):
                out: dict[str, float] = {}
                t0 = time.monotonic()
                await client.create(pod_body(f"serial-{i}", SLEEP, terminationGracePeriodSeconds=0))
                await until_running(client, [f"serial-{i}"], t0, out)
                times.append(out[f"serial-{i}"])
                last_cid = (await client.get(Pod, f"serial-{i}", "default")).status.container_statuses[0].container_id
                if i < serial - 1:
                    await client.delete(Pod, f"serial-{i}", "default", grace_period_seconds=0)
            raw = raw_crun(node, last_cid.removeprefix("kray://"), serial)
            await delete_all(client)
            med, raw_med = statistics.median(times) * 1000, statistics.median(raw) * 1000
            lo, hi = min(times) * 1000, max(times) * 1000
            print(f"(a) serial x{serial}: create->Running median {med:.0f} ms (min {lo:.0f}, max {hi:.0f}); "
                  f"raw `crun run` median {raw_med:.0f} ms; ratio {med / raw_med:.1f}x")  # fmt: skip
            out = {}
            names = [f"burst-{i}" for i in range(burst)]
            t0 = time.monotonic()
            await asyncio.gather(*(client.create(pod_body(n, SLEEP, terminationGracePeriodSeconds=0)) for n in names))
            await until_running(client, names, t0, out)
            vals = list(out.values())
            print(f"(b) burst of {burst}: create->Running p50 {pct(vals, 0.5) * 1000:.0f} ms, "
                  f"p99 {pct(vals, 0.99) * 1000:.0f} ms, all Running after {max(vals) * 1000:.0f} ms")  # fmt: skip
            await delete_all(client)
            while await k.cri.list_pod_sandbox():
                await asyncio.sleep(0.1)
        finally:
            await k.stop()


def raw_crun(node: Node, cid: str, n: int) -> list[float]:
    """`crun run` (create+start+exit of `true`) on the bundle the runtime wrote for a pod container."""
    spec = json.loads((node.state / "containers" / cid / "config.json").read_text())
    spec["process"]["args"] = ["true"]
    spec["linux"]["cgroupsPath"] = f"/{node.prefix}/raw"
    rt = make_runtime("crun", node.base / "rawoci")
    bundle = node.base / "rawbundle"
    bundle.mkdir(exist_ok=True)
    (bundle / "config.json").write_text(json.dumps(spec))
    out = []
    for i in range(n):
        t = time.monotonic()
        rc = rt.run(f"raw{i}", bundle)
        out.append(time.monotonic() - t)
        assert rc == 0, rt.last_log_lines()
    CgroupV1(f"/{node.prefix}/raw").remove()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serial", type=int, default=20)
    ap.add_argument("--burst", type=int, default=50)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="kray-bench-"))
    tar = base / "busybox.tar"
    subprocess.run(["bash", str(REPO / "scripts" / "build_test_image.sh"), str(tar)], check=True, capture_output=True)
    prefix = "kb" + secrets.token_hex(3)
    node = Node(prefix, base / prefix, f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}.0/24", tar)
    api = ServerThread(ApiServer(ObjectStore(MemoryKV(), REGISTRY), REGISTRY, token="bench"))
    api.start()
    try:
        node.start()
        asyncio.run(bench(node, api.url, args.serial, args.burst))
    finally:
        api.stop()
        node.hard_cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
