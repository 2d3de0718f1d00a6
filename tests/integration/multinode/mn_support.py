"""Helpers of the multi-node drivers (``mn_cluster_driver.py``, ``mn_autoscale_driver.py``):
progress output, polling, the API and CRI calls the checks make, the simulated machines.

Imported before Ray: it sets the loopback-only Ray environment first.
"""

from __future__ import annotations

import os

# Before Ray is imported: loopback-only cluster, no token auth, no gRPC fork handlers.
os.environ.update({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"})
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[3]
NS = "mn"
T0 = time.monotonic()
MEASURED: dict[str, Any] = {}


def step(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


def wait_for(what: str, check: Callable[[], T], timeout: float = 90.0, every: float = 0.3) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # a transient API/CRI error (or not there yet): try again
            last = exc  # kept for the timeout message; an exception is truthy, never a success
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


class Nodes:
    """The three simulated machines: names, net prefixes, state folders."""

    def __init__(self, workdir: Path, run_id: str) -> None:
        self.root = workdir / "nodes"
        self.names = [f"mn-{run_id}-{x}" for x in "abc"]
        self.prefixes = [f"km{run_id}{x}" for x in "abc"]

    def labels(self, i: int) -> dict[str, str]:
        return {"kray.io/node-name": self.names[i], "kray.io/net-prefix": self.prefixes[i]}

    def socket(self, name: str) -> Path:
        return self.root / name / "cri.sock"


def pod_yaml_web(replicas: int) -> dict[str, Any]:
    # Each replica serves its own pod name, so a client sees which backend answered.
    script = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"
    container = {
        "name": "web",
        "image": "busybox:latest",
        "command": ["sh", "-c", script],
        "resources": {"requests": {"cpu": "200m", "memory": "16Mi"}},
        # Ready (an endpoint) only once httpd listens, not when the shell starts.
        "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 1},
            },
        },
    }


# The client: one container to exec into, one that fetches the Service in a loop and logs
# "ok <t>" / "fail <t>" (the Service address from the env vars the kubelet gives it).
LOOP = (
    "while true; do if timeout 3 wget -q -O /dev/null http://$WEB_SERVICE_HOST:$WEB_SERVICE_PORT/ 2>/dev/null;"
    " then echo ok $(date +%s); else echo fail $(date +%s); fi; sleep 0.2; done"
)


def client_pod(node: str) -> dict[str, Any]:
    small = {"requests": {"cpu": "50m", "memory": "8Mi"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client", "namespace": NS},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "shell", "image": "busybox:latest", "command": ["sleep", "3600"], "resources": small},
                {"name": "loop", "image": "busybox:latest", "command": ["sh", "-c", LOOP], "resources": small},
            ],
        },
    }


class Api:
    """Thin helpers over the sync client."""

    def __init__(self, client: Any) -> None:
        self.c = client

    def raw(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.c._http.request(method, path, **kw)
        resp.raise_for_status()
        return resp.json()

    def pods(self) -> list[dict[str, Any]]:
        return list(self.raw("GET", f"/api/v1/namespaces/{NS}/pods")["items"])

    def web_pods(self, running: bool = True) -> list[dict[str, Any]]:
        out = []
        for p in self.pods():
            if (p["metadata"].get("labels") or {}).get("app") != "web" or p["metadata"].get("deletionTimestamp"):
                continue
            if running and not (p.get("status", {}).get("phase") == "Running" and p["status"].get("podIP")):
                continue
            out.append(p)
        return out

    def scale(self, replicas: int) -> None:
        body = json.dumps({"spec": {"replicas": replicas}})
        headers = {"Content-Type": "application/merge-patch+json"}
        self.raw("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/web", content=body, headers=headers)

    def endpoints(self) -> set[str]:
        ep = self.raw("GET", f"/api/v1/namespaces/{NS}/endpoints/web")
        return {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}

    def node(self, name: str) -> dict[str, Any]:
        return dict(self.raw("GET", f"/api/v1/nodes/{name}"))

    def ready(self, name: str) -> str:
        conds = self.node(name).get("status", {}).get("conditions") or []
        return next((c["status"] for c in conds if c["type"] == "Ready"), "")


def replacement_times(api: Api, before: set[str], since: float) -> dict[str, list[float]]:
    """When each new web pod was created, scheduled and became Ready (seconds after ``since``)."""
    from datetime import datetime

    def at(stamp: str | None) -> float:
        return round(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() - since, 1) if stamp else -1

    out = {}
    for p in api.web_pods():
        if p["metadata"]["name"] in before:
            continue
        conds = {c["type"]: c.get("lastTransitionTime") for c in p["status"].get("conditions") or []}
        out[p["metadata"]["name"]] = [at(p["metadata"].get("creationTimestamp")), at(conds.get("PodScheduled")),
                                      at(conds.get("Ready"))]  # fmt: skip
    return out


def container_id(pod: dict[str, Any], name: str) -> str:
    for st in pod.get("status", {}).get("containerStatuses") or []:
        if st["name"] == name and "running" in st.get("state", {}):
            return str(st["containerID"]).removeprefix("kray://")
    return ""


def exec_in(sock: Path, cid: str, *cmd: str, timeout: int = 10) -> tuple[int, str]:
    from kray.runtime.cri.client import RuntimeClient

    async def go() -> tuple[int, str]:
        async with RuntimeClient(sock) as cri:
            r = await cri.exec_sync(cid, list(cmd), timeout)
            return r.exit_code, (r.stdout + r.stderr).decode()

    return run_async(go())  # type: ignore[no-any-return]


def loop_results(sock: Path, cid: str) -> list[tuple[str, int]]:
    """The client loop's log lines ("ok"/"fail", unix time) from its CRI log file."""
    from kray.runtime.cri.client import RuntimeClient

    async def path() -> str:
        async with RuntimeClient(sock) as cri:
            return str((await cri.container_status(cid)).log_path)

    out = []
    for line in Path(run_async(path())).read_text().splitlines():
        msg = line.split(" ", 3)[-1].split()  # CRI format: "<time> stdout F <message>"
        if len(msg) == 2 and msg[0] in ("ok", "fail"):
            out.append((msg[0], int(msg[1])))
    return out


def import_image(sock: Path, tar: str) -> None:
    from kray.runtime.cri.client import RuntimeClient

    async def go() -> None:
        async with RuntimeClient(sock) as cri:
            await cri.wait_ready(30)
            await cri.pull_image(f"oci-archive:{tar}:busybox:latest")

    run_async(go())


def power_off(nodes: Nodes, name: str, prefix: str) -> None:
    """What a machine going down does to its pods: they stop. (A removed Ray node's kubelet
    dies, but its CRI service and containers were started in sessions of their own and would
    keep serving on this shared host.) Its bridge stays until cleanup, so traffic to the dead
    pod addresses stays on this machine; its proxy table goes, as a powered-off kernel's would."""
    from kray.runtime.cri.client import RuntimeClient

    sock = nodes.socket(name)

    async def go() -> int:
        async with RuntimeClient(sock, timeout=30) as cri:
            boxes = await cri.list_pod_sandbox()
            for sb in boxes:
                await cri.stop_pod_sandbox(sb.id)
                await cri.remove_pod_sandbox(sb.id)
            return len(boxes)

    if sock.exists():
        step(f"power-off {name}: removed {run_async(go())} pod sandbox(es)")
    stop_runtime(nodes.root / name)
    subprocess.run(["nft", "delete", "table", "ip", f"kray-{name}"], capture_output=True)


def stop_runtime(node_dir: Path) -> None:
    """The node's CRI service, by the PID its kubelet recorded (it started it)."""
    import signal

    pid_file = node_dir / "runtime.pid"
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pid_file.unlink(missing_ok=True)
