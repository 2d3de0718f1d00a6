"""The Ray wrapper: one cluster-wide ``kray-node-agent`` actor running ``NodeAgent`` on a thread,
plus the real ports (``ray.nodes()``, the per-node actors' deploy functions, the autoscaler SDK).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

from kray.config import KrayConfig

from .ports import NodePlan, RayNode

log = logging.getLogger(__name__)

RAY_NAMESPACE = "kray"
ACTOR_NAME = "kray-node-agent"


class RayMembership:
    def nodes(self) -> list[RayNode]:
        import ray

        return [
            RayNode(
                node_id=str(n.get("NodeID", "")),
                alive=bool(n.get("Alive")),
                hostname=str(n.get("NodeManagerHostname", "")),
                address=str(n.get("NodeManagerAddress", "")),
                resources={str(k): float(v) for k, v in (n.get("Resources") or {}).items()},
                labels={str(k): str(v) for k, v in (n.get("Labels") or {}).items()},
            )
            for n in ray.nodes()
        ]


class RayDeployer:
    """Deploys the per-node actors through their modules' ``deploy_*`` functions."""

    def __init__(
        self,
        config: KrayConfig,
        kubelet_root: str | None = None,
        proxy_options: dict[str, Any] | None = None,
        device_plugin_dir: str | None = None,
        kubelet_options: dict[str, Any] | None = None,
        dns_port: int = 53,
    ) -> None:
        self.config = config
        self.kubelet_root = kubelet_root
        # Every node keeps its host-gw routes unless told otherwise.
        self.proxy_options = {"routes": True, **(proxy_options or {})}
        self.device_plugin_dir = device_plugin_dir
        self.kubelet_options = dict(kubelet_options or {})  # KubeletConfig fields (lease_period...)
        self.dns_port = dns_port

    def _plugin_dir(self) -> str:
        from kray.deviceplugins.nvidia import DEFAULT_PLUGIN_DIR

        return self.device_plugin_dir or DEFAULT_PLUGIN_DIR

    def deploy_kubelet(self, plan: NodePlan) -> None:
        from kray.actors.kubelet.actor import deploy_kubelet
        from kray.actors.kubelet.ports import KubeletConfig

        kcfg = KubeletConfig(
            pod_cidr=plan.pod_cidr,
            node_ip=plan.node_ip,
            labels=dict(plan.labels),
            cpu=plan.cpu,
            # The log endpoint on the node's own address, any free port (the Node says which):
            # several kubelets may share a machine.
            log_host=plan.node_ip or "127.0.0.1",
            log_port=0,
            cluster_dns=[plan.dns_ip] if plan.dns_ip else [],
            **self.kubelet_options,
        )
        extra: dict[str, Any] = {"kubelet_config": kcfg}
        root = plan.root or self.kubelet_root
        if root:
            extra["root"] = root
        if plan.net_prefix:
            extra["runtime_args"] = ["--bridge", f"{plan.net_prefix}0", "--prefix", plan.net_prefix]
        if plan.gpus:
            extra["device_plugin_dir"] = self._plugin_dir()
        deploy_kubelet(self.config, plan.node_id, plan.node_name, plan.pod_cidr, **extra)

    def deploy_dns(self, plan: NodePlan) -> None:
        from kray.actors.dns.actor import deploy_dns

        assert plan.dns_ip
        deploy_dns(self.config, plan.node_id, plan.node_name, plan.dns_ip, self.dns_port)

    def deploy_proxy(self, plan: NodePlan) -> None:
        from kray.actors.proxy.actor import deploy_proxy

        deploy_proxy(self.config, plan.node_id, plan.node_name, **self.proxy_options)

    def deploy_gpu_plugin(self, plan: NodePlan) -> None:
        from kray.deviceplugins.actor import start_on_node

        start_on_node(plan.node_id, plan.node_name, self._plugin_dir())

    def remove(self, node_name: str) -> None:
        """Kill the node's named actors so a node coming back under this name starts afresh."""
        import ray

        from kray.actors.dns.actor import actor_name as dns_name
        from kray.actors.kubelet.actor import actor_name as kubelet_name
        from kray.actors.proxy.actor import actor_name as proxy_name
        from kray.deviceplugins.actor import actor_name as gpu_name

        names = (kubelet_name(node_name), proxy_name(node_name), dns_name(node_name), gpu_name(node_name))
        for name in names:
            with contextlib.suppress(Exception):  # ValueError: no such actor
                ray.kill(ray.get_actor(name, namespace=RAY_NAMESPACE), no_restart=True)


class RayAutoscaler:
    def request(self, bundles: list[dict[str, float]]) -> None:
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=bundles)


class NodeAgentActor:
    def __init__(self, config: KrayConfig, options: dict[str, Any]) -> None:
        import kray.crds  # noqa: F401  (registers the built-in kinds)

        self.config = config
        self.options = dict(options)
        self.error: str | None = None
        self.agent: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="node-agent", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self.error = repr(exc)
                log.exception("node agent failed")
        finally:
            loop.close()

    async def _serve(self) -> None:
        from kray.actors.framework import SystemClock
        from kray.client.aio import AsyncClient

        from .core import NodeAgent

        opts = self.options
        deployer = RayDeployer(
            self.config,
            opts.get("kubelet_root"),
            opts.get("proxy_options"),
            opts.get("device_plugin_dir"),
            opts.get("kubelet_options"),
            int(opts.get("dns_port", 53)),
        )
        async with AsyncClient(self.config) as client:
            self.agent = NodeAgent(
                client,
                RayMembership(),
                deployer,
                RayAutoscaler() if opts.get("autoscale", True) else None,
                SystemClock(),
                grace_period=float(opts.get("grace_period", 300.0)),
                autoscale_interval=float(opts.get("autoscale_interval", 10.0)),
                period=float(opts.get("period", 2.0)),
                dns=bool(opts.get("dns", True)),
                exclude_node_ids=frozenset(opts.get("exclude_node_ids") or ()),
                bundle_memory=bool(opts.get("bundle_memory", True)),
                node_actors=bool(opts.get("node_actors", True)),
            )
            await self.agent.run()

    def ready(self) -> bool:
        return self.agent is not None and self.error is None

    def status(self) -> dict[str, Any]:
        agent = self.agent
        return {
            "deployed": dict(agent.deployed) if agent else {},
            "gone_since": dict(agent.gone_since) if agent else {},
            "error": self.error,
        }


def deploy_node_agent(config: KrayConfig, **options: Any) -> Any:
    """Create (or find) the cluster's node agent: a detached actor ``kray-node-agent``.

    ``options``: ``grace_period`` (seconds before a departed node's Node is deleted, default
    300), ``autoscale`` (default True), ``autoscale_interval`` (default 10), ``period`` (default 2),
    ``kubelet_root``, ``kubelet_options`` (``KubeletConfig`` fields), ``proxy_options`` (for
    ``deploy_proxy``; ``routes`` defaults to True), ``device_plugin_dir``, ``dns`` (a DNS server
    per node, default True), ``dns_port`` (53), ``exclude_node_ids`` (Ray nodes to leave alone:
    `kray up --no-kubelet` keeps its head a control-plane-only machine), ``bundle_memory``
    (autoscaler bundles ask for memory, default True; False where the provider's node types
    carry no memory, as on-premise and fake ones), ``node_actors`` (default True; False: register
    Nodes only, for a Ray cluster that runs without root).
    """
    import ray

    remote_cls = ray.remote(NodeAgentActor)
    return remote_cls.options(  # type: ignore[attr-defined]
        name=ACTOR_NAME,
        namespace=RAY_NAMESPACE,
        lifetime="detached",
        max_restarts=-1,
        max_task_retries=-1,
        get_if_exists=True,
        num_cpus=0,
        max_concurrency=4,
    ).remote(config, options)
