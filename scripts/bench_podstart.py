"""Pod start latency through the whole node path: API create -> kubelet -> CRI -> crun -> Running.

    sudo .venv/bin/python scripts/bench_podstart.py [--serial 20] [--burst 50]

(a) one Pod at a time: create->Running median, against raw `crun run` of the same bundle;
(b) `--burst` Pods created at once on one node: create->Running p50/p99, then where the time
went: per pod, when the kubelet's RunPodSandbox / CreateContainer / StartContainer returned and
when Running reached the API (medians); per RPC, calls and seconds inside the runtime service
(its Status `rpcStats`); CPU seconds of the runtime service, of this process (API server +
kubelet) and of everything else (shims, crun, ip) during the burst.
Uses a temporary runtime service (crun), an in-memory API server thread and a kubelet core in
this process; everything is removed at the end. Running is seen through a watch, not by
polling, so the measuring costs the API server next to nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration" / "kubelet"))
sys.path.insert(1, str(REPO))  # the kubelet test conftest imports tests.leftovers

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
TICKS = os.sysconf("SC_CLK_TCK")


async def until_running(client: AsyncClient, names: list[str], ready: asyncio.Event) -> dict[str, float]:
    """Watch (from before the creates) until every pod of `names` is Running; when each was."""
    pending, out = set(names), {}
    rv = str((await client.list(Pod, "default")).resource_version)
    ready.set()
    async for ev in client.watch(Pod, "default", resource_version=rv, timeout_seconds=120):
        p = ev.object
        if p.metadata.name in pending and p.status and p.status.phase == "Running":
            out[p.metadata.name or ""] = time.monotonic()
            pending.discard(p.metadata.name or "")
            if not pending:
                return out
    raise AssertionError(f"not Running: {sorted(pending)}")


async def create_and_wait(client: AsyncClient, pods: list[Pod]) -> dict[str, float]:
    """Create `pods` at once; seconds from the creates to each one's Running."""
    ready = asyncio.Event()
    waiter = asyncio.create_task(until_running(client, [p.metadata.name or "" for p in pods], ready))
    await asyncio.wait([waiter, asyncio.create_task(ready.wait())], return_when=asyncio.FIRST_COMPLETED)
    if waiter.done():
        waiter.result()  # the watch failed before it started: raise that
    t0 = time.monotonic()
    await asyncio.gather(*(client.create(p) for p in pods))
    return {k: v - t0 for k, v in (await waiter).items()}


class PhaseClock:
    """Wraps the kubelet's CRI client: when, per pod, each step of its start returned."""

    def __init__(self, cri: Any) -> None:
        self.t0 = time.monotonic()
        self.done: dict[str, dict[str, float]] = {}
        self.names: dict[str, str] = {}  # container id -> pod name
        run, create, start = cri.run_pod_sandbox, cri.create_container, cri.start_container

        async def run_pod_sandbox(config: Any, handler: str = "") -> str:
            sid = await run(config, handler)
            self.mark(config.metadata.name, "sandbox")
            return str(sid)

        async def create_container(sid: str, config: Any, sb: Any = None) -> str:
            cid = await create(sid, config, sb)
            self.names[cid] = sb.metadata.name if sb is not None else ""
            self.mark(self.names[cid], "created")
            return str(cid)

        async def start_container(cid: str) -> None:
            await start(cid)
            self.mark(self.names.get(cid, ""), "started")

        cri.run_pod_sandbox, cri.create_container, cri.start_container = (
            run_pod_sandbox,
            create_container,
            start_container,
        )

    def mark(self, pod: str, step: str) -> None:
        self.done.setdefault(pod, {}).setdefault(step, time.monotonic() - self.t0)

    def reset(self) -> None:
        self.t0, self.done, self.names = time.monotonic(), {}, {}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def node_cgroup(node: Node) -> CgroupV1:
    """A cpuacct cgroup holding the runtime service: whatever it starts (shim launcher, shims,
    crun, ip, mount) counts there, until crun moves a container's own process out."""
    cg = CgroupV1(f"/{node.prefix}/bench-runtime")
    cg.dir("cpuacct").mkdir(parents=True, exist_ok=True)
    assert node.proc is not None
    (cg.dir("cpuacct") / "cgroup.procs").write_text(str(node.proc.pid))
    return cg


def system_cpu_seconds() -> float:
    busy = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in busy[:7])
    return (user + nice + system + irq + softirq) / TICKS


async def rpc_stats(cri: Any) -> dict[str, dict[str, float]]:
    info = (await cri.status(verbose=True)).info
    return dict(json.loads(info.get("rpcStats", "{}")))


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
                out = await create_and_wait(client, [pod_body(f"serial-{i}", SLEEP, terminationGracePeriodSeconds=0)])
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
            pods = [pod_body(f"burst-{i}", SLEEP, terminationGracePeriodSeconds=0) for i in range(burst)]
            phases = PhaseClock(k.cri)
            rpcs_before = await rpc_stats(k.cri)
            assert node.proc is not None
            pid, cg = node.proc.pid, node_cgroup(node)
            cpu_before = (cpu_seconds(pid), cg.cpu_usage_ns() / 1e9, time.process_time(), system_cpu_seconds())
            phases.reset()
            out = await create_and_wait(client, pods)
            cpu_after = (cpu_seconds(pid), cg.cpu_usage_ns() / 1e9, time.process_time(), system_cpu_seconds())
            cpu = [b - a for a, b in zip(cpu_before, cpu_after, strict=True)]
            rpcs = await rpc_stats(k.cri)
            vals = list(out.values())
            print(f"(b) burst of {burst}: create->Running p50 {pct(vals, 0.5) * 1000:.0f} ms, "
                  f"p99 {pct(vals, 0.99) * 1000:.0f} ms, all Running after {max(vals) * 1000:.0f} ms")  # fmt: skip
            report_burst(phases, out, rpcs_before, rpcs, cpu, max(vals))
            await delete_all(client)
            while await k.cri.list_pod_sandbox():
                await asyncio.sleep(0.1)
        finally:
            await k.stop()


def report_burst(
    phases: PhaseClock,
    running: dict[str, float],
    before: dict[str, dict[str, float]],
    after: dict[str, dict[str, float]],
    cpu: list[float],
    wall: float,
) -> None:
    steps = {"sandbox": [], "created": [], "started": []}  # type: dict[str, list[float]]
    for pod in running:
        for step, at in phases.done.get(pod, {}).items():
            steps[step].append(at)
    medians = ", ".join(f"{s} {statistics.median(v) * 1000:.0f}" for s, v in steps.items() if v)
    print(f"    step returned at (median ms after the creates): {medians}, "
          f"Running {statistics.median(running.values()) * 1000:.0f}")  # fmt: skip
    rows = []
    for method, now in after.items():
        was = before.get(method, {"calls": 0, "seconds": 0.0})
        calls, secs = now["calls"] - was["calls"], now["seconds"] - was["seconds"]
        if calls:
            rows.append((secs, method, calls))
    rows.sort(reverse=True)
    print("    runtime service RPCs (calls, seconds summed over calls): "
          + ", ".join(f"{m} {c:.0f}x {s:.1f}s" for s, m, c in rows[:8]))  # fmt: skip
    service, tree, own, machine = cpu
    print(f"    CPU seconds in {wall:.1f}s on {os.cpu_count()} cores: runtime service {service:.1f} + what it "
          f"started (shims, crun, ip, mount) {tree - service:.1f}, API server + kubelet {own:.1f}; "
          f"the whole machine {machine:.1f} (others' work included)")  # fmt: skip


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
        shutil.rmtree(base, ignore_errors=True)  # the image tar (the node's folder went above)
    return 0


if __name__ == "__main__":
    sys.exit(main())
