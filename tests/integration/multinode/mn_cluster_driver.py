"""The 3-node cluster of ``test_mn_cluster_e2e.py``, run as a process of its own (a process
connects to one Ray cluster, and the test session has its own).

    python mn_cluster_driver.py WORKDIR RUN_ID CLUSTER_CIDR

Three Ray nodes on 127.0.0.1 (``ray.cluster_utils.Cluster``), a private etcd, kray's control
plane deployed as `kray up` deploys it, and the node agent, which gives every Ray node a
kubelet (its own bridge ``km<id><x>0`` and podCIDR), a proxy and a DNS server. Then the issue's
checks, each a ``step(...)`` in the output; the last line is a JSON summary of measurements.
Everything it made is removed in ``finally`` (the test checks that nothing is left).
"""

from __future__ import annotations

import os

# Before Ray is imported: loopback-only cluster, no token auth, no gRPC fork handlers.
os.environ.update({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"})
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"

import asyncio
import json
import logging
import secrets
import subprocess
import sys
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
        except Exception as exc:  # a transient API/CRI error: try again
            last = exc
        if last:
            return last  # type: ignore[no-any-return]
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


def main(workdir: Path, run_id: str, cluster_cidr: str) -> int:
    import ray
    from ray.cluster_utils import Cluster

    import kray.crds  # noqa: F401
    from kray import controlplane as cp
    from kray.client.sync import Client
    from kray.config import KrayConfig
    from kray.etcd_server import EtcdServer, free_port

    logging.basicConfig(level=logging.WARNING)
    nodes = Nodes(workdir, run_id)
    etcd = EtcdServer(data_dir=workdir / "etcd", die_with_parent=True).start()
    node_args = {"num_cpus": 2, "node_ip_address": "127.0.0.1", "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args={**node_args, "labels": nodes.labels(0)})
    removed: str | None = None
    try:
        ray.init(address=cluster.address, namespace=cp.RAY_NAMESPACE, logging_level=logging.WARNING,
                 log_to_driver=False, _node_ip_address="127.0.0.1")  # fmt: skip
        token = secrets.token_urlsafe(16)
        # The control plane first, while the head is the only node: its actors land there, and
        # removing a worker later cannot take the API server with it.
        url = cp.deploy_apiserver_actor(etcd.endpoint, "127.0.0.1", free_port(), token, 60, step)
        config = KrayConfig(server=url, token=token)
        settings = {
            "node-ipam": {"cluster_cidr": cluster_cidr},
            # Short, so a node's loss shows within seconds: NotReady after 6 s of silence
            # (kubelets renew every 1 s), its pods evicted 1 s later.
            "node-lifecycle": {"grace_period": 6.0, "default_toleration_seconds": 1.0},
        }
        cp.deploy_controllers(config, 90, step, settings)
        cp.deploy_schedulers(config, 1, etcd.endpoint, 60, step)
        agent_options = {
            "kubelet_root": str(nodes.root),
            "kubelet_options": {"lease_period": 1.0, "tick": 0.3},
            "grace_period": 20.0,
            "period": 1.0,
            "autoscale": False,
        }
        cp.deploy_node_agent(config, agent_options, 60, step)
        ray_nodes = [cluster.add_node(**node_args, labels=nodes.labels(i)) for i in (1, 2)]
        client = Client(server=url, token=token)
        api = Api(client)

        # 1. Three Ready Nodes with distinct podCIDRs.
        def all_ready() -> bool:
            return all(api.ready(n) == "True" for n in nodes.names)

        wait_for("3 Ready nodes", all_ready, timeout=120)
        cidrs = {n: api.node(n)["spec"]["podCIDR"] for n in nodes.names}
        assert len(set(cidrs.values())) == 3, cidrs
        MEASURED["nodes_ready_s"] = round(time.monotonic() - T0, 1)
        step(f"3 nodes Ready: {cidrs}")
        tar = subprocess.run(
            ["bash", str(ROOT / "scripts/build_test_image.sh"), str(workdir / "busybox.tar")],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        for n in nodes.names:
            import_image(nodes.socket(n), tar)
        step("busybox imported on every node")

        # 2. A Service, a Deployment of 6 spread over the nodes, a client pod on node A.
        api.raw("POST", "/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        svc = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 80}]},
        }
        cluster_ip = api.raw("POST", f"/api/v1/namespaces/{NS}/services", json=svc)["spec"]["clusterIP"]
        api.raw("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", json=pod_yaml_web(6))
        node_a, node_b, node_c = nodes.names
        api.raw("POST", f"/api/v1/namespaces/{NS}/pods", json=client_pod(node_a))
        web = wait_for("6 web pods Running", lambda: len(api.web_pods()) == 6 and api.web_pods(), timeout=120)
        spread = {n: sum(1 for p in web if p["spec"]["nodeName"] == n) for n in nodes.names}
        assert all(spread.values()), spread
        step(f"6 web pods Running, spread {spread}")
        wait_for("6 endpoints", lambda: len(api.endpoints()) == 6)

        def client_cids() -> tuple[str, str] | None:
            pod = api.raw("GET", f"/api/v1/namespaces/{NS}/pods/client")
            shell, loop = container_id(pod, "shell"), container_id(pod, "loop")
            return (shell, loop) if shell and loop else None

        shell, loop = wait_for("the client pod Running", client_cids)
        sock_a = nodes.socket(node_a)

        # 3. Cross-node: pod on A -> pod on B by pod IP; -> Service IP; env vars; DNS.
        pod_b = next(p for p in web if p["spec"]["nodeName"] == node_b)

        def fetch(address: str) -> str:
            # `timeout`, not wget's -T: this static busybox's wget crashes (SIGSEGV) with -T.
            code, out = exec_in(sock_a, shell, "timeout", "2", "wget", "-q", "-O", "-", f"http://{address}/")
            if code != 0:
                step(f"fetch {address} from {node_a}: exit {code}: {out.strip()}")
            return out.strip() if code == 0 else ""

        got = wait_for("a fetch A -> B by pod IP", lambda: fetch(pod_b["status"]["podIP"]), timeout=30)
        assert got == pod_b["metadata"]["name"], got
        step(f"A -> B by pod IP {pod_b['status']['podIP']}: answered by {got}")
        answered = {wait_for("a fetch by Service IP", lambda: fetch(cluster_ip), timeout=30) for _ in range(12)}
        assert answered <= {p["metadata"]["name"] for p in web} and len(answered) >= 2, answered
        step(f"A -> Service {cluster_ip}: answered by {len(answered)} different pods")
        _, env_out = exec_in(sock_a, shell, "env")
        assert f"WEB_SERVICE_HOST={cluster_ip}" in env_out and "WEB_SERVICE_PORT=80" in env_out, env_out
        _, resolv = exec_in(sock_a, shell, "cat", "/etc/resolv.conf")
        gateway_a = cp.pod_gateway(cidrs[node_a])
        assert f"nameserver {gateway_a}" in resolv and f"search {NS}.svc.cluster.local" in resolv, resolv
        for name in (f"web.{NS}.svc", f"web.{NS}.svc.cluster.local", "web"):
            res = wait_for(f"nslookup {name}", lambda n=name: exec_in(sock_a, shell, "nslookup", n)[1], timeout=20)
            assert cluster_ip in res, res
        step(f"env vars and DNS: web.{NS}.svc -> {cluster_ip} via {gateway_a}")

        # 4. Scale: endpoints follow, and so does traffic.
        t = time.monotonic()
        api.scale(2)

        def two_endpoints() -> set[str] | None:
            eps = api.endpoints()
            return eps if len(eps) == 2 else None

        kept = wait_for("2 endpoints", two_endpoints, timeout=60)
        MEASURED["scale_down_endpoints_s"] = round(time.monotonic() - t, 1)
        names = {p["status"]["podIP"]: p["metadata"]["name"] for p in api.web_pods() if p["status"]["podIP"] in kept}
        time.sleep(0.5)  # the proxies' next transaction
        answered = {fetch(cluster_ip) for _ in range(10)}
        assert answered == set(names.values()), (answered, names)
        step(f"scaled to 2: endpoints {sorted(kept)}, traffic only to {sorted(answered)}")
        api.scale(6)
        wait_for("6 endpoints again", lambda: len(api.endpoints()) == 6, timeout=90)
        step("scaled back to 6")

        # 5. Remove node C while the client loop runs: NotReady, pods replaced, bounded failures.
        on_c = {p["metadata"]["name"] for p in api.web_pods() if p["spec"]["nodeName"] == node_c}
        time.sleep(2)
        t_remove = time.time()
        t = time.monotonic()
        cluster.remove_node(ray_nodes[1])
        removed = node_c
        power_off(nodes, node_c, nodes.prefixes[2])
        wait_for(f"{node_c} NotReady", lambda: api.ready(node_c) in ("Unknown", "False"), timeout=60)
        MEASURED["not_ready_after_s"] = round(time.monotonic() - t, 1)
        step(f"{node_c} NotReady after {MEASURED['not_ready_after_s']}s")

        def replaced() -> bool:
            pods = api.web_pods()
            return len(pods) == 6 and all(p["spec"]["nodeName"] != node_c for p in pods) and len(api.endpoints()) == 6

        wait_for("6 web pods on A and B", replaced, timeout=90)
        MEASURED["replaced_after_s"] = round(time.monotonic() - t, 1)
        step(f"{len(on_c)} pods of {node_c} replaced on the others after {MEASURED['replaced_after_s']}s")
        t_replaced = time.time() + 1  # the proxies' next transaction
        time.sleep(10)  # a quiet stretch: the loop must see no failure in it
        results = [r for r in loop_results(sock_a, loop) if r[1] >= int(t_remove)]
        fails = [ts - int(t_remove) for outcome, ts in results if outcome == "fail"]
        quiet = [outcome for outcome, ts in results if ts > t_replaced]
        MEASURED.update(loop_requests=len(results), loop_failures=len(fails), loop_after_replacement=len(quiet))
        MEASURED["failure_window_s"] = (max(fails) - min(fails) + 1) if fails else 0
        step(f"client loop since removal: {len(results)} requests, failures at +{fails} s, {len(quiet)} since")
        assert len(fails) <= 60, fails
        assert len(quiet) >= 3 and set(quiet) == {"ok"}, quiet
        wait_for(f"{node_c} deleted by the node agent", lambda: node_c not in {
            n["metadata"]["name"] for n in api.raw("GET", "/api/v1/nodes")["items"]}, timeout=60)  # fmt: skip
        step(f"{node_c} deleted after the agent's grace period")
        client.close()
    finally:
        if os.environ.get("MN_DEBUG_PAUSE"):  # look around before the cleanup
            step(f"paused {os.environ['MN_DEBUG_PAUSE']}s")
            time.sleep(float(os.environ["MN_DEBUG_PAUSE"]))
        step("cleanup")
        try:
            if ray.is_initialized():
                cp.remove_all(lambda m: None)
        except Exception as exc:
            step(f"warning: remove_all failed: {exc!r}")
        if removed is not None:  # its kubelet is gone: the sandboxes, service and bridge are ours to remove
            power_off(nodes, removed, nodes.prefixes[2])
            subprocess.run(["ip", "link", "del", f"{nodes.prefixes[2]}0"], capture_output=True)
        ray.shutdown()
        cluster.shutdown()
        etcd.stop()
        step("done")
    print(json.dumps(MEASURED), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
