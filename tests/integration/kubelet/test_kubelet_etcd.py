"""The kubelet against an API server on etcd: a Pod runs to Succeeded and is deleted gracefully."""

from __future__ import annotations

import pytest
from kubelet_node import RunningKubelet, pod_body, wait_for

from kray.actors.apiserver import ApiServer
from kray.actors.apiserver.server import ServerThread
from kray.actors.store import ObjectStore
from kray.actors.store.etcd import EtcdKV
from kray.client import AsyncClient
from kray.crds import Lease, Pod
from kray.crds.registry import REGISTRY

pytestmark = [pytest.mark.root, pytest.mark.etcd]
TOKEN = "kubelet-etcd"


async def test_pod_on_etcd_backed_cluster(node, etcd_endpoint: str):
    async def factory() -> ApiServer:
        return ApiServer(ObjectStore(EtcdKV(etcd_endpoint), REGISTRY), REGISTRY, token=TOKEN)

    api = ServerThread(factory)
    api.start()
    try:
        async with AsyncClient(server=api.url, token=TOKEN) as client:
            k = await RunningKubelet(node, client, node_name="etcd-node").start()
            try:
                c = [{"name": "main", "image": "busybox", "command": ["sh", "-c", "echo on-etcd"]}]
                await client.create(pod_body("etcd-pod", c, node="etcd-node", restartPolicy="Never"))

                async def succeeded() -> bool:
                    p = await client.get(Pod, "etcd-pod", "default")
                    return bool(p.status and p.status.phase == "Succeeded")

                await wait_for(succeeded, 30, "etcd-pod Succeeded")
                lease = await client.get(Lease, "etcd-node", "kube-node-lease")
                assert lease.spec.holder_identity == "etcd-node"
                await client.delete(Pod, "etcd-pod", "default")

                async def gone() -> bool:
                    return not [p for p in (await client.list(Pod, "default")).items if p.metadata.name == "etcd-pod"]

                await wait_for(gone, 30, "etcd-pod deleted")
                # a finished pod goes at once (no grace); the kubelet then removes its sandbox

                async def no_sandbox() -> bool:
                    return await k.cri.list_pod_sandbox() == []

                await wait_for(no_sandbox, 30, "sandbox removed")
            finally:
                await k.stop()
    finally:
        api.stop()
