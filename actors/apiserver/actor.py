"""The Ray wrapper: one detached API server actor per cluster, pinned to the head node.

All the API server logic lives in ``app.py``; this only builds EtcdKV + ObjectStore +
ApiServer on a thread with its own event loop (so the server starts with the actor, also
after Ray restarts it, without waiting for a method call) and reports where it listens.
"""

from __future__ import annotations

from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from kray.actors.store.objects import ObjectStore
from kray.crds.registry import REGISTRY

from .app import ApiServer
from .server import ServerThread

ACTOR_NAME = "kray-apiserver"
RAY_NAMESPACE = "kray"


class ApiServerActor:
    def __init__(
        self,
        etcd_endpoint: str,
        host: str = "127.0.0.1",
        port: int = 6443,
        token: str | None = None,
        service_cidr: str = "10.96.0.0/16",
    ) -> None:
        import kray.crds  # noqa: F401  (registers the built-in kinds)
        from kray.actors.store.etcd import EtcdKV

        async def build() -> ApiServer:
            store = ObjectStore(EtcdKV(etcd_endpoint), REGISTRY)
            return ApiServer(store, REGISTRY, token=token, server_address=f"{host}:{port}", service_cidr=service_cidr)

        self._thread = ServerThread(build, host, port, log_level="warning")
        self._thread.start()

    async def ready(self) -> str:
        """The URL once the server accepts requests (it does by the time the actor exists)."""
        return self._thread.url

    async def address(self) -> str:
        return self._thread.url

    async def stop(self) -> None:
        self._thread.stop()


def deploy_apiserver(
    etcd_endpoint: str,
    host: str = "127.0.0.1",
    port: int = 6443,
    token: str | None = None,
    service_cidr: str = "10.96.0.0/16",
) -> Any:
    """Create (or find) the detached API server actor on this node; returns its handle."""
    node_id = ray.get_runtime_context().get_node_id()
    remote_cls = ray.remote(ApiServerActor)
    return remote_cls.options(  # type: ignore[attr-defined]
        name=ACTOR_NAME,
        namespace=RAY_NAMESPACE,
        lifetime="detached",
        max_restarts=-1,
        max_task_retries=-1,
        get_if_exists=True,
        num_cpus=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
    ).remote(etcd_endpoint, host, port, token, service_cidr)
