"""PersistentVolumes end to end on etcd and a real API server over HTTP: a static volume binds a
claim (read back with the official ``kubernetes`` client too), a WaitForFirstConsumer local-path
claim with a selected node gets a provisioned volume on that node, and deleting the claims
releases the static volume (Retain) and asks the node to delete the provisioned one."""

# mypy: disable-error-code="union-attr"

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from controllers_it import running, wait_for

from kray.actors.controllers import persistentvolume
from kray.client import AsyncClient, NotFound
from kray.config import KrayConfig
from kray.crds import Namespace, ObjectMeta
from kray.crds.core import Node
from kray.crds.core.storage import PersistentVolume, PersistentVolumeClaim, StorageClass

pytestmark = [pytest.mark.etcd]


@pytest.fixture
async def client(config: KrayConfig) -> AsyncIterator[AsyncClient]:
    async with running(config, persistentvolume.setup) as c:
        yield c


def claim(ns: str, name: str, cls: str, annotations: dict[str, str] | None = None) -> PersistentVolumeClaim:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": cls,
        },
    }
    return PersistentVolumeClaim.model_validate(body)


async def phases(client: AsyncClient, ns: str, pvc: str, pv: str) -> tuple[str | None, str | None]:
    try:
        c = await client.get(PersistentVolumeClaim, pvc, ns)
        claim_phase = c.status.phase if c.status and c.spec.volume_name == pv else None
    except NotFound:
        claim_phase = "gone"
    v = await client.get(PersistentVolume, pv)
    return claim_phase, v.status.phase if v.status else None


async def test_bind_provision_release(client: AsyncClient, config: KrayConfig) -> None:
    sfx = uuid.uuid4().hex[:8]
    ns, node, static_cls, lp_cls = f"pv-{sfx}", f"node-{sfx}", f"static-{sfx}", f"lp-{sfx}"
    await client.create(Namespace(metadata=ObjectMeta(name=ns)))
    await client.create(Node(metadata=ObjectMeta(name=node)))
    term = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}
    static = PersistentVolume.model_validate(
        {
            "metadata": {"name": f"static-{sfx}"},
            "spec": {
                "capacity": {"storage": "2Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": static_cls,  # no StorageClass object: other tests' claims never match
                "local": {"path": "/mnt/disk1"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [term]}},
            },
        }
    )
    await client.create(static)
    await client.create(claim(ns, "static", static_cls))

    async def static_bound() -> bool:
        return await phases(client, ns, "static", static.name) == ("Bound", "Bound")

    await wait_for(static_bound, "the static volume bound")
    pv = await client.get(PersistentVolume, static.name)
    assert pv.spec.claim_ref.name == "static" and pv.metadata.finalizers == ["kubernetes.io/pv-protection"]
    assert await asyncio.to_thread(official_claim_phase, config, ns, "static") == ("Bound", static.name)

    # WaitForFirstConsumer local-path: the scheduler's selected-node annotation -> a volume there.
    await client.create(
        StorageClass.model_validate(
            {
                "metadata": {"name": lp_cls},
                "provisioner": "kray.io/local-path",
                "volumeBindingMode": "WaitForFirstConsumer",
                "parameters": {"path": f"/tmp/kray-lp-{sfx}"},
            }
        )
    )
    created = await client.create(claim(ns, "db", lp_cls, {"volume.kubernetes.io/selected-node": node}))
    name = f"pvc-{created.metadata.uid}"

    async def provisioned() -> bool:
        try:
            return await phases(client, ns, "db", name) == ("Bound", "Bound")
        except NotFound:
            return False

    await wait_for(provisioned, "a provisioned local-path volume")
    pv = await client.get(PersistentVolume, name)
    assert pv.spec.node_names() == [node] and pv.spec.host_path.path == f"/tmp/kray-lp-{sfx}/{ns}_db_{name}"
    assert pv.metadata.annotations["pv.kubernetes.io/provisioned-by"] == "kray.io/local-path"

    # Deleting the claims: the static volume is Released (Retain); the provisioned one is
    # Released and left for its node's kubelet to delete.
    await client.delete(PersistentVolumeClaim, "static", ns)
    await client.delete(PersistentVolumeClaim, "db", ns)

    async def released() -> bool:
        static_phases = await phases(client, ns, "static", static.name)
        lp = await client.get(PersistentVolume, name)
        requested = (lp.metadata.annotations or {}).get("kray.io/reclaim") == "delete-requested"
        return static_phases == ("gone", "Released") and requested and lp.status.phase == "Released"

    await wait_for(released, "both volumes released, deletion requested for the provisioned one")
    await client.delete(PersistentVolume, name)  # what the node's kubelet does after removing the directory

    async def deleted() -> bool:
        try:
            await client.get(PersistentVolume, name)
            return False
        except NotFound:
            return True

    await wait_for(deleted, "the provisioned volume gone (pv-protection released)")
    await client.delete(PersistentVolume, static.name)
    await client.delete(StorageClass, lp_cls)
    await client.delete(Node, node)
    await client.delete(Namespace, ns)


def official_claim_phase(config: KrayConfig, ns: str, name: str) -> tuple[str, str]:
    k8s = pytest.importorskip("kubernetes.client")
    configuration = k8s.Configuration(host=config.server, api_key={"authorization": f"Bearer {config.token}"})
    with k8s.ApiClient(configuration) as api_client:
        pvc = k8s.CoreV1Api(api_client).read_namespaced_persistent_volume_claim(name, ns)
        return pvc.status.phase, pvc.spec.volume_name
