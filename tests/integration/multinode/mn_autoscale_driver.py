"""The autoscaling case of ``test_mn_autoscale.py``, as a process of its own:

    python mn_autoscale_driver.py WORKDIR RUN_ID CLUSTER_CIDR

A Ray head started with Ray's autoscaler over ``FakeMultiNodeProvider`` (fake nodes are extra
raylets on this machine), kray's control plane and node agent on it. A Pod that fits no node
(2 CPUs; the head offers 1) is Unschedulable -> the agent's ``request_resources`` -> the
autoscaler launches a worker -> the agent gives it a kubelet -> the Pod is bound there. The
head's ``ray start --block`` and every process under it are stopped by PID at the end.
"""

from __future__ import annotations

import os

os.environ.update({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"})
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"

import json
import logging
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mn_support import MEASURED, T0, Api, step, stop_runtime, wait_for

PROVIDER = "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider"
WORKER_TYPE = "kray.worker"


def autoscaling_config(gcs: str, worker_name: str, worker_prefix: str) -> dict[str, Any]:
    node = {"node_config": {}, "min_workers": 0}
    return {
        "cluster_name": "kray-fake",
        "max_workers": 1,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 5,
        "provider": {
            "type": "external",
            "module": PROVIDER,
            "gcs_address": gcs,  # the provider assumes port 6379 otherwise
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "use_node_id_as_ip": True,
        },
        "auth": {"ssh_user": "nobody"},
        "available_node_types": {
            "ray.head.default": {**node, "resources": {"CPU": 1}, "max_workers": 0},
            # One worker at most: fake nodes of a type share their labels, and with them the
            # name and net prefix, which must be unique on this shared machine.
            WORKER_TYPE: {
                **node,
                "max_workers": 1,
                "resources": {"CPU": 2},  # no memory: a fake node type cannot declare any
                "labels": {"kray.io/node-name": worker_name, "kray.io/net-prefix": worker_prefix},
            },
        },
        "head_node_type": "ray.head.default",
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (by parent links in /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def stop_ray_head(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the head's `ray start --block` stops what it started; the fake workers were
    started by its autoscaler, so every process under it is noted first and killed after."""
    under = descendants(proc.pid)
    proc.terminate()
    try:
        proc.wait(40)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    time.sleep(1)
    for pid in under:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(workdir: Path, run_id: str, cluster_cidr: str) -> int:
    import ray

    import kray.crds  # noqa: F401
    from kray import controlplane as cp
    from kray.client.sync import Client
    from kray.config import KrayConfig
    from kray.etcd_server import EtcdServer

    logging.basicConfig(level=logging.WARNING)
    root = workdir / "nodes"
    head_name, head_prefix, worker_prefix = f"as-{run_id}-head", f"ka{run_id}h", f"ka{run_id}w"
    etcd = EtcdServer(data_dir=workdir / "etcd", die_with_parent=True).start()
    port = free_port()
    gcs = f"127.0.0.1:{port}"
    config_path = workdir / "autoscaling.json"
    config_path.write_text(json.dumps(autoscaling_config(gcs, f"as-{run_id}-worker", worker_prefix)))
    ray_bin = str(Path(sys.executable).with_name("ray"))
    labels = f"kray.io/node-name={head_name},kray.io/net-prefix={head_prefix}"
    args = [ray_bin, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
            "--num-cpus=1", f"--autoscaling-config={config_path}", "--include-dashboard=false",
            "--disable-usage-stats", "--labels", labels]  # fmt: skip
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    with open(workdir / "ray.log", "ab") as out:
        head = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    worker_name = ""
    try:
        wait_for("the Ray head", lambda: socket.create_connection(("127.0.0.1", port), 1).close() or True, 60)
        ray.init(address=gcs, namespace=cp.RAY_NAMESPACE, logging_level=logging.WARNING,
                 log_to_driver=False, _node_ip_address="127.0.0.1")  # fmt: skip
        token = secrets.token_urlsafe(16)
        url = cp.deploy_apiserver_actor(etcd.endpoint, "127.0.0.1", free_port(), token, 60, step)
        config = KrayConfig(server=url, token=token)
        cp.deploy_controllers(config, 90, step, {"node-ipam": {"cluster_cidr": cluster_cidr}})
        cp.deploy_schedulers(config, 1, etcd.endpoint, 60, step)
        # Bundles without memory: the fake provider's node types have none to match it against.
        agent = {"kubelet_root": str(root), "period": 1.0, "autoscale_interval": 1.0, "bundle_memory": False}
        cp.deploy_node_agent(config, agent, 60, step)
        api = Api(Client(server=url, token=token))
        wait_for(f"{head_name} Ready", lambda: api.ready(head_name) == "True", timeout=90)
        step(f"{head_name} Ready; Ray nodes: {sum(1 for n in ray.nodes() if n['Alive'])}")

        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mn"}}
        api.raw("POST", "/api/v1/namespaces", json=namespace)
        container = {"name": "c", "image": "busybox:latest", "command": ["sleep", "3600"]}
        container["resources"] = {"requests": {"cpu": "2", "memory": "64Mi"}}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big", "namespace": "mn"},
               "spec": {"containers": [container], "terminationGracePeriodSeconds": 1}}  # fmt: skip
        api.raw("POST", "/api/v1/namespaces/mn/pods", json=pod)
        t = time.monotonic()

        def unschedulable() -> bool:
            status = api.raw("GET", "/api/v1/namespaces/mn/pods/big").get("status") or {}
            return any(c.get("reason") == "Unschedulable" for c in status.get("conditions") or [])

        wait_for("the pod Unschedulable", unschedulable, timeout=60)
        step("pod big (2 CPUs) Unschedulable on the 1-CPU head")
        wait_for("a second Ray node", lambda: sum(1 for n in ray.nodes() if n["Alive"]) == 2, timeout=120)
        MEASURED["ray_node_joined_s"] = round(time.monotonic() - t, 1)
        step(f"the autoscaler added a Ray node after {MEASURED['ray_node_joined_s']}s")

        def bound() -> str:
            return str(api.raw("GET", "/api/v1/namespaces/mn/pods/big")["spec"].get("nodeName") or "")

        worker_name = wait_for("the pod bound to the new node", bound, timeout=120)
        assert worker_name == f"as-{run_id}-worker", worker_name
        wait_for(f"{worker_name} Ready", lambda: api.ready(worker_name) == "True", timeout=60)
        MEASURED["pod_bound_s"] = round(time.monotonic() - t, 1)
        step(f"new node {worker_name} Ready with a kubelet; pod big bound there after {MEASURED['pod_bound_s']}s")
    except Exception:
        from ray.experimental.internal_kv import _internal_kv_get

        agent_status = ray.get(ray.get_actor("kray-node-agent", namespace=cp.RAY_NAMESPACE).status.remote())
        step(f"agent: {agent_status}; standing request: {_internal_kv_get('autoscaler_resource_request')!r}")
        raise
    finally:
        step("cleanup")
        try:
            if ray.is_initialized():
                cp.remove_all(lambda m: None)
        except Exception as exc:
            step(f"warning: remove_all failed: {exc!r}")
        ray.shutdown()
        stop_ray_head(head)
        for node_dir in root.glob("*"):  # a kubelet that died before its teardown leaves these
            stop_runtime(node_dir)
        etcd.stop()
        step("done")
    print(json.dumps({**MEASURED, "total_s": round(time.monotonic() - T0, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
