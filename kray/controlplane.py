"""The Ray side of `kray up`/`kray down`: deploy the control-plane and node actors, remove them.

Called from ``kray.cluster`` with a Ray driver connected (``ray.init`` done there). Each part is
a detached, named actor in Ray namespace ``kray`` that Ray restarts on failure:
API server, controller-manager, scheduler shards, a kubelet on the local node, and the node
agent, which gives every Ray node (the local one included) a kubelet, proxy and DNS server.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
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
    "cronjob": "kray.actors.controllers.cronjob:setup",
    "garbage-collector": "kray.actors.controllers.garbagecollector:setup",
    "namespace": "kray.actors.controllers.namespace:setup",
    "node-lifecycle": "kray.actors.controllers.nodelifecycle:setup",
    "node-ipam": "kray.actors.controllers.nodeipam:setup",
    "endpoints": "kray.actors.controllers.endpoints:setup",
    "trainingjob": "kray.actors.controllers.trainingjob:setup",
    "podgroup": "kray.actors.controllers.podgroup:setup",
    "disruption": "kray.actors.controllers.disruption:setup",
    "resourcequota": "kray.actors.controllers.resourcequota:setup",
    "daemonset": "kray.actors.controllers.daemonset:setup",
    "statefulset": "kray.actors.controllers.statefulset:setup",
    "persistentvolume": "kray.actors.controllers.persistentvolume:setup",
}
Log = Callable[[str], None]


@dataclass(frozen=True)
class NodeOptions:
    """The local node `kray up` runs a kubelet on."""

    enabled: bool = True
    name: str = ""  # "" -> this host's name, made DNS-1123-safe
    pod_cidr: str = ""  # "" -> the node IPAM controller's block of the cluster CIDR
    root: str = "/var/lib/kray"
    # Names of the node's bridge (`<prefix>0`), pod netns and veths start with this; a second
    # kray on one machine (a test beside a running `kray up`) needs its own.
    net_prefix: str = "kray"
    # > 0: the node gets this many fake GPUs (a GPU plugin over FakeNvml, no device nodes);
    # 0: the real NVIDIA plugin when NVML finds GPUs here, else no GPU plugin at all.
    # Whoever deploys the node's kubelet (today deploy_local_node) must carry this through.
    fake_gpus: int = 0
    # "" -> crun or runc (root only); "process" -> plain host processes, NO isolation, no root
    # needed (runtime/procrt.py).
    container_runtime: str = ""

    @property
    def bridge(self) -> str:
        return f"{self.net_prefix}0"


def local_node_name() -> str:
    name = re.sub(r"[^a-z0-9.-]+", "-", socket.gethostname().lower()).strip("-.")
    return name or "node"


def deploy_apiserver_actor(
    etcd: str, host: str, port: int, token: str, timeout: float, log: Log, service_cidr: str = "10.96.0.0/16"
) -> str:
    import ray

    from kray.actors.apiserver.actor import deploy_apiserver

    handle = deploy_apiserver(etcd, host=host, port=port, token=token, service_cidr=service_cidr)
    url = str(ray.get(handle.ready.remote(), timeout=timeout))
    wait_http_ok(f"{url}/readyz", token, timeout, "API server")
    log(f"API server serving at {url}")
    return url


def deploy_controllers(
    config: KrayConfig, timeout: float, log: Log, settings: dict[str, dict[str, Any]] | None = None
) -> None:
    """The built-in controllers, each its own actor built on the public framework.

    ``settings``: per controller, the options of its ``setup`` (``{"node-ipam": {"cluster_cidr":
    ...}, "node-lifecycle": {"grace_period": ...}}``).
    """
    import ray

    from kray.actors.framework.hosting import deploy_controller

    settings = settings or {}
    handles = [
        h
        for name, spec in BUILTIN_CONTROLLERS.items()
        for h in deploy_controller(name, spec, config, setup_options=settings.get(name))
    ]
    ray.get([h.ready.remote() for h in handles], timeout=timeout)
    log(f"controllers running: {', '.join(BUILTIN_CONTROLLERS)}")


def deploy_schedulers(
    config: KrayConfig,
    shards: int,
    etcd: str,
    timeout: float,
    log: Log,
    scheduler_config: dict[str, Any] | None = None,
) -> None:
    """``scheduler_config``: a KubeSchedulerConfiguration dict (checked before any actor starts)."""
    import ray

    from kray.actors.scheduler.actor import deploy_scheduler

    handles = deploy_scheduler(config, shards, etcd_endpoint=etcd, scheduler_config=scheduler_config)
    ray.get([h.ready.remote() for h in handles], timeout=timeout)
    names = [p.get("schedulerName") or "default-scheduler" for p in (scheduler_config or {}).get("profiles") or []]
    profiles = f", profiles: {', '.join(names)}" if names else ""
    log(f"scheduler running ({shards} shard{'s' if shards != 1 else ''}{profiles})")


def deploy_local_node(config: KrayConfig, node: NodeOptions, timeout: float, log: Log) -> str | None:
    """A kubelet (and its CRI runtime service) on the Ray node this driver runs on."""
    if not node.enabled:
        return None
    if node.container_runtime == "process":
        log("WARNING: --container-runtime process: pods run as plain host processes with NO ISOLATION")
    elif os.geteuid() != 0:
        log("warning: not root, so no kubelet on this node (containers need namespaces and cgroups); pods stay Pending"
            " (--container-runtime process runs them without isolation)")  # fmt: skip
        return None
    import ray

    from kray.actors.kubelet.actor import deploy_kubelet
    from kray.actors.kubelet.ports import KubeletConfig

    name = node.name or local_node_name()
    node_id = ray.get_runtime_context().get_node_id()
    # The Node bound to this Ray node first: the node agent then knows it by this name and these
    # settings (it adds the proxy and DNS), and the podCIDR is --pod-cidr or the node IPAM's.
    pod_cidr = register_local_node(config, name, node_id, node, timeout)
    # Loopback-only: the node's address and its log endpoint stay on 127.0.0.1. Pods resolve
    # through the node's DNS server on its bridge's address (the agent deploys it).
    kcfg = KubeletConfig(
        node_ip="127.0.0.1", log_host="127.0.0.1", log_port=free_port(), cluster_dns=[pod_gateway(pod_cidr)]
    )
    runtime_args = ["--bridge", node.bridge, "--prefix", node.net_prefix]
    if node.container_runtime:
        runtime_args += ["--runtime", node.container_runtime]
    from kray.deviceplugins.deploy import gpu_plan, start_gpu_plugin

    gpus = gpu_plan(node.fake_gpus, os.path.join(node.root, name))
    handle = deploy_kubelet(
        config, node_id, name, pod_cidr, root=node.root, kubelet_config=kcfg, runtime_args=runtime_args,
        device_plugin_dir=gpus.plugin_dir,
    )  # fmt: skip
    if not ray.get(handle.ready.remote(), timeout=timeout):
        status = ray.get(handle.status.remote(), timeout=timeout)
        raise RuntimeError(f"kubelet on {name} failed to start: {status.get('error')}")
    wait_node_ready(config, name, timeout)
    start_gpu_plugin(config, gpus, node_id, name, timeout, log)
    log(f"node {name} Ready (pod CIDR {pod_cidr})")
    return name


def pod_gateway(pod_cidr: str) -> str:
    """The pod bridge's address (the first host of the podCIDR), where the node's DNS listens."""
    return str(next(ipaddress.ip_network(pod_cidr, strict=False).hosts()))


def ensure_default_storage_class(config: KrayConfig) -> bool:
    """The `local-path` StorageClass, default for claims that name none (as k3s ships one):
    node-local directories made for a claim on the node its first pod lands on. Created only
    where no StorageClass exists, so an admin's own classes are never joined by a second
    default. True when created now."""
    from kray.crds.core.storage import ANN_DEFAULT_CLASS, LOCAL_PATH_PROVISIONER

    body = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": "local-path", "annotations": {ANN_DEFAULT_CLASS: "true"}},
        "provisioner": LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }
    url = f"{config.server}/apis/storage.k8s.io/v1/storageclasses"
    with httpx.Client(headers={"Authorization": f"Bearer {config.token}"}, timeout=10.0) as http:
        if http.get(f"{url}?limit=1").json().get("items"):
            return False  # a class exists (ours or the admin's): do not add a second default
        created = http.post(url, json=body)
        if created.status_code == 409:
            return False
        created.raise_for_status()
    return True


def register_local_node(config: KrayConfig, name: str, node_id: str, node: NodeOptions, timeout: float) -> str:
    """Create or update the Node ``name``, bound to Ray node ``node_id`` with the node's settings
    as annotations (what the node agent reads); returns its podCIDR, waiting for the node IPAM
    controller when ``--pod-cidr`` gave none."""
    from kray.actors.nodeagent.core import NET_PREFIX_KEY, NODE_ROOT_KEY, RAY_NODE_ID_LABEL

    headers = {"Authorization": f"Bearer {config.token}"}
    url = f"{config.server}/api/v1/nodes"
    meta = {
        "labels": {RAY_NODE_ID_LABEL: node_id},
        "annotations": {NET_PREFIX_KEY: node.net_prefix, NODE_ROOT_KEY: node.root},
    }
    spec = {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]} if node.pod_cidr else {}
    with httpx.Client(headers=headers, timeout=10.0) as http:
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, **meta}, "spec": spec}
        created = http.post(url, json=body)
        if created.status_code == 409:  # there from an earlier `kray up`: rebind it to this Ray node
            patch = {"metadata": meta, **({"spec": spec} if spec else {})}
            http.patch(
                f"{url}/{name}", content=json.dumps(patch), headers={"Content-Type": "application/merge-patch+json"}
            ).raise_for_status()
        else:
            created.raise_for_status()
        deadline = time.monotonic() + timeout
        while True:
            got = http.get(f"{url}/{name}")
            got.raise_for_status()
            cidr = str(got.json().get("spec", {}).get("podCIDR") or "")
            if cidr:
                return cidr
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {name} got no podCIDR from the node IPAM controller in {timeout}s")
            time.sleep(0.3)


def node_agent_options(node: NodeOptions) -> dict[str, Any]:
    """The agent's options from `kray up`'s: other nodes keep their state under the same root;
    with ``--no-kubelet`` this Ray node stays control-plane only."""
    import ray

    options: dict[str, Any] = {"kubelet_root": node.root}
    if not node.enabled:
        options["exclude_node_ids"] = [ray.get_runtime_context().get_node_id()]
    return options


def deploy_node_agent(config: KrayConfig, options: dict[str, Any], timeout: float, log: Log) -> None:
    """The node agent: a kubelet, proxy (with host-gw routes) and DNS server on every Ray node
    that joins, a GPU plugin where Ray counts GPUs (see ``kray.actors.nodeagent``)."""
    if os.geteuid() != 0:
        log("warning: not root, so the node agent registers Nodes but runs no kubelets on them")
        options = {**options, "node_actors": False}
    import ray

    from kray.actors.nodeagent.actor import deploy_node_agent as deploy

    handle = deploy(config, **options)
    deadline = time.monotonic() + timeout
    while not ray.get(handle.ready.remote(), timeout=timeout):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the node agent did not start within {timeout}s: {ray.get(handle.status.remote())}")
        time.sleep(0.2)
    what = "a kubelet, proxy and DNS server on every Ray node" if options.get("node_actors", True) else "Nodes only"
    log(f"node agent running ({what})")


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


def _call_each(prefix: str, method: str, timeout: float) -> dict[str, Any]:
    """Call ``method`` on every kray actor whose name starts with ``prefix``, all at once;
    name -> result, or the exception for a node that could not do it."""
    import ray

    refs = {}
    for info in _kray_actors():
        if info["name"].startswith(prefix):
            try:
                refs[info["name"]] = getattr(ray.get_actor(info["name"], namespace=RAY_NAMESPACE), method).remote()
            except ValueError:  # gone meanwhile
                continue
    out: dict[str, Any] = {}
    for name, ref in refs.items():
        try:
            out[name] = ray.get(ref, timeout=timeout)
        except Exception as exc:  # a node we cannot reach is still removed from Ray after this
            out[name] = exc
    return out


def remove_all(log: Log) -> None:
    """Tear down every kray actor in this Ray cluster: the node agent first (it would redeploy
    what goes next), the controllers and schedulers (they would make and place new pods), then
    the nodes (their pods go with them), their proxies (nftables tables and routes) and DNS
    servers, and the rest of the control plane, the API server last."""
    import ray

    from kray.actors.nodeagent.actor import ACTOR_NAME as NODE_AGENT

    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(NODE_AGENT, namespace=RAY_NAMESPACE), no_restart=True)
        log(f"removed actor {NODE_AGENT}")
    # Then the controllers and schedulers: a StatefulSet, DaemonSet or ReplicaSet controller still
    # running would make new pods, and a scheduler bind them, while the nodes tear theirs down.
    for name in (i["name"] for i in _kray_actors()):
        if name.startswith(("kray-controller-", "kray-scheduler")):
            with contextlib.suppress(ValueError):
                ray.kill(ray.get_actor(name, namespace=RAY_NAMESPACE), no_restart=True)
                log(f"removed actor {name}")
    for name, done in _call_each("kray-kubelet-", "teardown", 120).items():
        node = name.removeprefix("kray-kubelet-")
        if isinstance(done, Exception):
            log(f"warning: teardown of {name} failed: {done}")
            continue
        log(f"node {node}: removed {done['sandboxes_removed']} pod sandbox(es)")
        if done.get("bridge_error"):
            log(f"warning: node {node}: {done['bridge_error']}")
    for prefix in ("kray-proxy-", "kray-dns-"):
        for name, done in _call_each(prefix, "stop", 30).items():
            if isinstance(done, Exception):
                log(f"warning: stopping {name} failed: {done}")
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
