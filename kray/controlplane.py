"""The Ray side of `kray up`/`kray down`: deploy the control-plane and node actors, remove them.

Called from ``kray.cluster`` with a Ray driver connected (``ray.init`` done there). Each part is
a detached, named actor in Ray namespace ``kray`` that Ray restarts on failure:
API server, controller-manager, scheduler shards, and a kubelet on the local node.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from kray.config import KrayConfig
from kray.etcd_server import free_port

RAY_NAMESPACE = "kray"
APISERVER_ACTOR = "kray-apiserver"
# kube-controller-manager's controllers, one leader-elected actor each (`kray-controller-<name>-0`):
# a crash or a kill takes down one controller, which Ray restarts and which re-lists.
BUILTIN_CONTROLLERS = {
    "replicaset": "kray.actors.controllers.replicaset:build",
    "deployment": "kray.actors.controllers.deployment:build",
    "job": "kray.actors.controllers.job:setup",
    "garbage-collector": "kray.actors.controllers.garbagecollector:setup",
    "namespace": "kray.actors.controllers.namespace:setup",
    "node-lifecycle": "kray.actors.controllers.nodelifecycle:setup",
    "node-ipam": "kray.actors.controllers.nodeipam:setup",
    "endpoints": "kray.actors.controllers.endpoints:setup",
    "trainingjob": "kray.actors.controllers.trainingjob:setup",
}
Log = Callable[[str], None]


@dataclass(frozen=True)
class NodeOptions:
    """The local node `kray up` runs a kubelet on."""

    enabled: bool = True
    name: str = ""  # "" -> this host's name, made DNS-1123-safe
    pod_cidr: str = "10.244.0.0/24"
    root: str = "/var/lib/kray"
    # Names of the node's bridge (`<prefix>0`), pod netns and veths start with this; a second
    # kray on one machine (a test beside a running `kray up`) needs its own.
    net_prefix: str = "kray"

    @property
    def bridge(self) -> str:
        return f"{self.net_prefix}0"


def local_node_name() -> str:
    name = re.sub(r"[^a-z0-9.-]+", "-", socket.gethostname().lower()).strip("-.")
    return name or "node"


def deploy_apiserver_actor(etcd: str, host: str, port: int, token: str, timeout: float, log: Log) -> str:
    import ray

    from kray.actors.apiserver.actor import deploy_apiserver

    handle = deploy_apiserver(etcd, host=host, port=port, token=token)
    url = str(ray.get(handle.ready.remote(), timeout=timeout))
    wait_http_ok(f"{url}/readyz", token, timeout, "API server")
    log(f"API server serving at {url}")
    return url


def deploy_controllers(config: KrayConfig, timeout: float, log: Log) -> None:
    """The built-in controllers, each its own actor built on the public framework."""
    import ray

    from kray.actors.framework.hosting import deploy_controller

    handles = [h for name, spec in BUILTIN_CONTROLLERS.items() for h in deploy_controller(name, spec, config)]
    ray.get([h.ready.remote() for h in handles], timeout=timeout)
    log(f"controllers running: {', '.join(BUILTIN_CONTROLLERS)}")


def deploy_schedulers(config: KrayConfig, shards: int, etcd: str, timeout: float, log: Log) -> None:
    import ray

    from kray.actors.scheduler.actor import deploy_scheduler

    handles = deploy_scheduler(config, shards, etcd_endpoint=etcd)
    ray.get([h.ready.remote() for h in handles], timeout=timeout)
    log(f"scheduler running ({shards} shard{'s' if shards != 1 else ''})")


def deploy_local_node(config: KrayConfig, node: NodeOptions, timeout: float, log: Log) -> str | None:
    """A kubelet (and its CRI runtime service) on the Ray node this driver runs on."""
    if not node.enabled:
        return None
    if os.geteuid() != 0:
        log("warning: not root, so no kubelet on this node (containers need namespaces and cgroups); pods stay Pending")
        return None
    import ray

    from kray.actors.kubelet.actor import deploy_kubelet
    from kray.actors.kubelet.ports import KubeletConfig

    name = node.name or local_node_name()
    # Loopback-only: the node's address and its log endpoint stay on 127.0.0.1.
    kcfg = KubeletConfig(node_ip="127.0.0.1", log_host="127.0.0.1", log_port=free_port())
    node_id = ray.get_runtime_context().get_node_id()
    runtime_args = ["--bridge", node.bridge, "--prefix", node.net_prefix]
    handle = deploy_kubelet(
        config, node_id, name, node.pod_cidr, root=node.root, kubelet_config=kcfg, runtime_args=runtime_args
    )
    if not ray.get(handle.ready.remote(), timeout=timeout):
        status = ray.get(handle.status.remote(), timeout=timeout)
        raise RuntimeError(f"kubelet on {name} failed to start: {status.get('error')}")
    wait_node_ready(config, name, timeout)
    log(f"node {name} Ready (pod CIDR {node.pod_cidr})")
    return name


def wait_http_ok(url: str, token: str, timeout: float, what: str) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=2.0)
            if resp.status_code == 200:
                return resp
            last = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise TimeoutError(f"{what} at {url} not ready after {timeout}s: {last}")


def wait_node_ready(config: KrayConfig, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    url = f"{config.server}/api/v1/nodes/{name}"
    while time.monotonic() < deadline:
        node = wait_http_ok(url, config.token, max(1.0, deadline - time.monotonic()), f"node {name}").json()
        conditions = node.get("status", {}).get("conditions", [])
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            return
        time.sleep(0.3)
    raise TimeoutError(f"node {name} did not become Ready within {timeout}s")


def remove_all(log: Log) -> None:
    """Tear down every kray actor in this Ray cluster: nodes first (their pods go with them)."""
    import ray

    for info in _kray_actors():
        name = info["name"]
        if not name.startswith("kray-kubelet-"):
            continue
        try:
            done: Any = ray.get(ray.get_actor(name, namespace=RAY_NAMESPACE).teardown.remote(), timeout=120)
            log(f"node {name.removeprefix('kray-kubelet-')}: removed {done['sandboxes_removed']} pod sandbox(es)")
            if done.get("bridge_error"):
                log(f"warning: node {name.removeprefix('kray-kubelet-')}: {done['bridge_error']}")
        except Exception as exc:  # a node we cannot reach is still removed from Ray below
            log(f"warning: teardown of {name} failed: {exc}")
    ordered = sorted((i["name"] for i in _kray_actors()), key=lambda n: n == APISERVER_ACTOR)
    for name in ordered:  # the API server goes last
        try:
            ray.kill(ray.get_actor(name, namespace=RAY_NAMESPACE), no_restart=True)
            log(f"removed actor {name}")
        except ValueError:
            pass


def _kray_actors() -> list[dict[str, Any]]:
    import ray

    # Straight from the GCS (the state API would need the dashboard, which kray does not start).
    named = ray.util.list_named_actors(all_namespaces=True)
    return [a for a in named if a["namespace"] == RAY_NAMESPACE and a["name"].startswith("kray-")]
