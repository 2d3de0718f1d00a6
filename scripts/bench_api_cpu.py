"""CPU cost of the API server per request, per verb: robust to a loaded machine.

    .venv/bin/python scripts/bench_api_cpu.py [--store memory etcd] [--mode http asgi]
        [--pods 1000] [--repeats 3] [--profile FILE --profile-verb create]

Wall-clock throughput is noise when other work shares the cores; CPU time spent by the server
is not (much). For every verb the server's CPU is read before and after a batch of sequential
requests and divided by the batch size:

  http  the server runs as its own process (uvicorn + httptools, as in production); its CPU is
        utime+stime from /proc/<pid>/stat (all threads, grpc's included). 10 ms tick resolution,
        hence batches of hundreds.
  asgi  the app runs in this process, driven by direct ASGI calls (no HTTP parsing, no client
        library): time.process_time() around the batch. Finer; --profile works here.

Verbs: create (POST pods), bind (POST pods/NAME/binding), get, status PUT (the kubelet's full
object with its resourceVersion), status merge PATCH, list of all --pods pods. Each repeat uses a
fresh namespace; figures are medians over repeats. The baseline is the CPU this process spends on
the same raw etcd operations through kray's EtcdKV (create, get, a 2-key txn like bind's).

Load still moves CPU time somewhat (shared caches, clock frequency): compare two versions with
interleaved runs, e.g. two source trees put first on PYTHONPATH in turn. The environment is
passed on to the server process, so e.g. GRPC_EXPERIMENTS=-event_engine_client (gRPC's older
iomgr client: ~30% less CPU per etcd call, but fewer creates/s with 8 concurrent clients in
scripts/bench_api.py) can be compared the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from kray.actors.apiserver import ApiServer
from kray.actors.apiserver.server import serve
from kray.actors.store import MemoryKV, ObjectStore
from kray.actors.store.etcd import EtcdKV
from kray.actors.store.kv import KV, Compare
from kray.etcd_server import EtcdServer, exit_with_parent, free_port

VERBS = ("create", "bind", "get", "status_put", "status_patch", "list")
PODS_PER_NODE = 100
_TICK = os.sysconf("SC_CLK_TCK")


def pod_body(name: str) -> bytes:
    return json.dumps(
        {
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
    ).encode()


def node_body(name: str) -> bytes:
    alloc = {"cpu": "64", "memory": "256Gi", "pods": str(PODS_PER_NODE + 10)}
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name},
            "status": {"capacity": alloc, "allocatable": alloc},
        }
    ).encode()


def running_status(i: int) -> dict[str, Any]:
    """What a kubelet reports once the pod's container runs."""
    now = "2026-01-01T00:00:00Z"
    conditions = [
        {"type": t, "status": "True", "lastTransitionTime": now}
        for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    return {
        "phase": "Running",
        "conditions": conditions,
        "hostIP": "10.1.0.1",
        "podIP": f"10.2.{i // 250}.{i % 250 + 1}",
        "podIPs": [{"ip": f"10.2.{i // 250}.{i % 250 + 1}"}],
        "startTime": now,
        "qosClass": "Burstable",
        "containerStatuses": [
            {
                "name": "main",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "image": "busybox:latest",
                "imageID": "sha256:abc",
                "containerID": f"kray://{i:08x}",
                "state": {"running": {"startedAt": now}},
            }
        ],
    }


# ---- drivers: send a request, read the server's CPU seconds ----

Request = Callable[[str, str, bytes, str], Awaitable[tuple[int, bytes]]]


class AsgiDriver:
    """Calls the ASGI app directly; the CPU clock is this process's."""

    def __init__(self, api: ApiServer) -> None:
        self.app = api.app

    async def request(
        self, method: str, path: str, body: bytes = b"", ctype: str = "application/json"
    ) -> tuple[int, bytes]:
        path, _, query = path.partition("?")
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
            "root_path": "", "headers": [(b"content-type", ctype.encode()), (b"content-length", b"%d" % len(body))],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
        }  # fmt: skip
        sent = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)

    def cpu(self) -> float:
        return time.process_time()


class HttpDriver:
    """Talks HTTP to a server process; the CPU clock is that process's (all threads)."""

    def __init__(self, url: str, pid: int) -> None:
        self.client = httpx.AsyncClient(base_url=url, timeout=60)
        self.pid = pid

    async def request(
        self, method: str, path: str, body: bytes = b"", ctype: str = "application/json"
    ) -> tuple[int, bytes]:
        resp = await self.client.request(method, path, content=body or None, headers={"content-type": ctype})
        return resp.status_code, resp.content

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


# ---- the workload ----


async def _batch(
    driver: Any, calls: list[tuple[str, str, bytes, str]], ok: tuple[int, ...]
) -> tuple[float, list[bytes]]:
    """Run ``calls`` one after another; (server CPU µs per call, bodies)."""
    bodies = []
    start = driver.cpu()
    for method, path, body, ctype in calls:
        code, out = await driver.request(method, path, body, ctype)
        if code not in ok:
            raise RuntimeError(f"{method} {path}: {code} {out[:300]!r}")
        bodies.append(out)
    return (driver.cpu() - start) / len(calls) * 1e6, bodies


async def one_repeat(
    driver: Any, ns: str, n: int, lists: int, profile_verb: str | None, prof: cProfile.Profile | None
) -> dict[str, float]:
    code, out = await driver.request("POST", "/api/v1/namespaces", json.dumps({"metadata": {"name": ns}}).encode())
    assert code == 201, out
    nodes = [f"{ns}-node-{i}" for i in range((n + PODS_PER_NODE - 1) // PODS_PER_NODE)]
    for node in nodes:
        code, out = await driver.request("POST", "/api/v1/nodes", node_body(node))
        assert code == 201, out
    base = f"/api/v1/namespaces/{ns}/pods"
    names = [f"p{i}" for i in range(n)]
    json_ct, merge_ct = "application/json", "application/merge-patch+json"

    def bind(i: int, name: str) -> bytes:
        return json.dumps(
            {"kind": "Binding", "metadata": {"name": name}, "target": {"kind": "Node", "name": nodes[i % len(nodes)]}}
        ).encode()

    plan: list[tuple[str, Callable[[list[bytes]], list[tuple[str, str, bytes, str]]], tuple[int, ...]]] = [
        ("create", lambda _: [("POST", base, pod_body(m), json_ct) for m in names], (201,)),
        ("bind", lambda _: [("POST", f"{base}/{m}/binding", bind(i, m), json_ct) for i, m in enumerate(names)], (201,)),
        ("get", lambda _: [("GET", f"{base}/{m}", b"", json_ct) for m in names], (200,)),
    ]
    result: dict[str, float] = {}
    got: list[bytes] = []
    for verb, make, ok in plan:
        calls = make(got)
        if prof is not None and verb == profile_verb:
            prof.enable()
        result[verb], got = await _batch(driver, calls, ok)
        if prof is not None:
            prof.disable()

    puts = []
    for i, raw in enumerate(got):
        obj = json.loads(raw)
        obj["status"] = running_status(i)
        puts.append(("PUT", f"{base}/{obj['metadata']['name']}/status", json.dumps(obj).encode(), json_ct))
    patch = json.dumps({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Probe"}]}}).encode()
    patches = [("PATCH", f"{base}/{m}/status", patch, merge_ct) for m in names]
    for verb, calls in (
        ("status_put", puts),
        ("status_patch", patches),
        ("list", [("GET", base, b"", json_ct)] * lists),
    ):
        if prof is not None and verb == profile_verb:
            prof.enable()
        result[verb], bodies = await _batch(driver, calls, (200,))
        if prof is not None:
            prof.disable()
    assert len(json.loads(bodies[-1])["items"]) == n
    return result


async def raw_etcd_cpu(endpoint: str, n: int) -> dict[str, float]:
    """This process's CPU per raw EtcdKV call: the client-library floor under every verb."""
    kv = EtcdKV(endpoint)
    value = pod_body("x") * 2  # about the size of a stored pod
    out: dict[str, float] = {}
    prefix = f"/bench-raw/{time.monotonic_ns()}/"
    start = time.process_time()
    revs = [await kv.create(f"{prefix}{i}", value) for i in range(n)]
    out["create"] = (time.process_time() - start) / n * 1e6
    start = time.process_time()
    for i in range(n):
        await kv.get(f"{prefix}{i}")
    out["get"] = (time.process_time() - start) / n * 1e6
    start = time.process_time()
    for i in range(n):  # bind's shape: a pod and an allocation record, both guarded
        other = f"{prefix}alloc{i}"
        await kv.txn([Compare(f"{prefix}{i}", revs[i]), Compare(other, 0)], [(f"{prefix}{i}", value), (other, value)])
    out["txn2"] = (time.process_time() - start) / n * 1e6
    await kv.delete_prefix(prefix)
    await kv.close()
    return out


# ---- server process for --mode http ----


def serve_main(store: str, endpoint: str, port: int) -> None:
    async def run() -> None:
        kv: KV = MemoryKV() if store == "memory" else EtcdKV(endpoint)
        await serve(ApiServer(ObjectStore(kv)), "127.0.0.1", port)

    asyncio.run(run())


def start_server(store: str, endpoint: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, __file__, "--serve", store, "--etcd", endpoint, "--port", str(port)]
    proc = subprocess.Popen(cmd, preexec_fn=exit_with_parent)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("API server did not become ready")


async def run_config(args: argparse.Namespace, mode: str, store: str, endpoint: str) -> dict[str, float]:
    prof = cProfile.Profile(time.process_time) if args.profile else None
    proc = None
    if mode == "http":
        proc, url = start_server(store, endpoint)
        driver: Any = HttpDriver(url, proc.pid)
    else:
        api = ApiServer(ObjectStore(MemoryKV() if store == "memory" else EtcdKV(endpoint)))
        await api.start()
        driver = AsgiDriver(api)
    try:
        await driver.request("GET", "/readyz")
        runs = []
        for r in range(args.repeats):
            ns = f"cpu-{time.monotonic_ns() % 10**9}-{r}"
            runs.append(await one_repeat(driver, ns, args.pods, args.lists, args.profile_verb, prof))
        result = {verb: statistics.median(run[verb] for run in runs) for verb in VERBS}
    finally:
        if proc is not None:
            await driver.client.aclose()
            proc.terminate()
            proc.wait(10)
        else:
            api.stop()
            await asyncio.sleep(0.1)  # let the cancelled background tasks finish first
            await api.store.kv.close()
    if prof is not None:
        prof.dump_stats(f"{args.profile}.{mode}.{store}")
    return result


async def main_async(args: argparse.Namespace, endpoint: str) -> None:
    raws = [await raw_etcd_cpu(endpoint, args.pods) for _ in range(args.repeats)]
    raw = {k: statistics.median(r[k] for r in raws) for k in raws[0]}
    floor = {
        "create": raw["create"],
        "bind": raw["txn2"],
        "get": raw["get"],
        "status_put": raw["create"],
        "status_patch": raw["create"],
    }
    print(f"raw etcd (EtcdKV, client CPU µs/op, median of {args.repeats}): "
          + ", ".join(f"{k} {v:.0f}" for k, v in raw.items()))  # fmt: skip
    for mode in args.mode:
        for store in args.store:
            res = await run_config(args, mode, store, endpoint)
            print(f"\n[{mode} / {store}] server CPU µs per request (median of {args.repeats}, {args.pods} pods)")
            for verb in VERBS:
                ratio = f"  x{res[verb] / floor[verb]:.1f} raw etcd" if verb in floor else ""
                print(f"  {verb:<13} {res[verb]:>9.0f}{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", nargs="+", choices=["memory", "etcd"], default=["memory", "etcd"])
    parser.add_argument("--mode", nargs="+", choices=["http", "asgi"], default=["http", "asgi"])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--lists", type=int, default=20, help="list requests per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", help="cProfile (process-time) output prefix")
    parser.add_argument("--profile-verb", default="create", choices=VERBS)
    parser.add_argument("--serve", choices=["memory", "etcd"], help=argparse.SUPPRESS)
    parser.add_argument("--etcd", default="", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_main(args.serve, args.etcd, args.port)
        return
    with tempfile.TemporaryDirectory(prefix="kray-cpu-bench-") as tmp:
        etcd = EtcdServer(data_dir=Path(tmp) / "etcd", die_with_parent=True).start()
        try:
            asyncio.run(main_async(args, etcd.endpoint))
        finally:
            etcd.stop()


if __name__ == "__main__":
    main()
