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

import json
import logging
import secrets
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mn_support import (
    MEASURED,
    NS,
    ROOT,
    T0,
    Api,
    Nodes,
    client_pod,
    container_id,
    exec_in,
    import_image,
    loop_results,
    pod_yaml_web,
    power_off,
    replacement_times,
    step,
    wait_for,
)


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
    removed: int | None = None  # index of the node removed
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
        # The worker with more web pods goes (node A keeps the client).
        counts = {n: sum(1 for p in api.web_pods() if p["spec"]["nodeName"] == n) for n in (node_b, node_c)}
        gone = 1 if counts[node_b] > counts[node_c] else 2
        node_c = nodes.names[gone]
        on_c = {p["metadata"]["name"] for p in api.web_pods() if p["spec"]["nodeName"] == node_c}
        assert on_c, counts
        on_web_before = {p["metadata"]["name"] for p in api.web_pods()}
        time.sleep(2)
        t_remove = time.time()
        t = time.monotonic()
        cluster.remove_node(ray_nodes[gone - 1])
        removed = gone
        power_off(nodes, node_c, nodes.prefixes[gone])
        wait_for(f"{node_c} NotReady", lambda: api.ready(node_c) in ("Unknown", "False"), timeout=60)
        MEASURED["not_ready_after_s"] = round(time.monotonic() - t, 1)
        step(f"{node_c} NotReady after {MEASURED['not_ready_after_s']}s")

        def replaced() -> bool:
            pods = api.web_pods()
            return len(pods) == 6 and all(p["spec"]["nodeName"] != node_c for p in pods) and len(api.endpoints()) == 6

        wait_for("6 web pods on A and B", replaced, timeout=90)
        MEASURED["replaced_after_s"] = round(time.monotonic() - t, 1)
        step(f"{len(on_c)} pods of {node_c} replaced on the others after {MEASURED['replaced_after_s']}s")
        times = replacement_times(api, on_web_before, t_remove)
        step(f"replacements, seconds after the removal (created, scheduled, ready): {times}")
        # The proxies' next nftables transaction after the Endpoints change; 2 s, since the
        # control plane (16 controller actors now) shares these two cores with the nodes.
        t_replaced = time.time() + 2
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
        wait_for(f"no pod bound to {node_c} left", lambda: not any(p["spec"].get("nodeName") == node_c
                 for p in api.pods()), timeout=30)  # fmt: skip
        step(f"{node_c} deleted after the agent's grace period; its Terminating pods collected")
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
            power_off(nodes, nodes.names[removed], nodes.prefixes[removed])
            subprocess.run(["ip", "link", "del", f"{nodes.prefixes[removed]}0"], capture_output=True)
        ray.shutdown()
        cluster.shutdown()
        etcd.stop()
        step("done")
    print(json.dumps(MEASURED), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
