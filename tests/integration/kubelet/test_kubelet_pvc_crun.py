"""persistentVolumeClaim volumes on real crun containers: a node-local PV (hostPath,
DirectoryOrCreate, pinned to n1) bound by hand (the PV controller does not run here) keeps what
one pod wrote for the next pod; a pod whose claim is Pending waits and starts once it is bound."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from kubelet_node import RunningKubelet, phase, pod_body, wait_for

from kray.client import AsyncClient
from kray.client.errors import NotFound
from kray.crds import Pod
from kray.crds.core.storage import PersistentVolume, PersistentVolumeClaim

pytestmark = [pytest.mark.root]


def pv_body(name: str, path: Path) -> PersistentVolume:
    term = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}
    spec = {
        "capacity": {"storage": "1Gi"},
        "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": "Retain",
        "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
        "nodeAffinity": {"required": {"nodeSelectorTerms": [term]}},
    }
    return PersistentVolume.model_validate({"metadata": {"name": name}, "spec": spec})


async def pending_claim(client: AsyncClient, name: str) -> None:
    body = {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    await client.create(PersistentVolumeClaim.model_validate(body))


async def bind(client: AsyncClient, pv_name: str, claim: str) -> None:
    """The PV controller's bind, by hand: claimRef + Bound on the PV, volumeName + Bound on the claim."""
    pvc = await client.get(PersistentVolumeClaim, claim, "default")
    raw = (await client.get(PersistentVolume, pv_name)).to_dict()
    raw["spec"]["claimRef"] = {"kind": "PersistentVolumeClaim", "namespace": "default", "name": claim,
                               "uid": pvc.metadata.uid}  # fmt: skip
    raw = (await client.update(PersistentVolume.model_validate(raw))).to_dict()
    raw["status"] = {"phase": "Bound"}
    await client.update_status(PersistentVolume.model_validate(raw))
    pvc.spec.volume_name = pv_name
    raw = (await client.update(pvc)).to_dict()
    raw["status"] = {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}
    await client.update_status(PersistentVolumeClaim.model_validate(raw))


def claim_pod(name: str, claim: str, script: str) -> Pod:
    c = {"name": "app", "image": "busybox", "command": ["sh", "-c", script],
         "volumeMounts": [{"name": "data", "mountPath": "/data"}]}  # fmt: skip
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
    return pod_body(name, [c], volumes=volumes, restartPolicy="Never")


async def logs(kubelet: RunningKubelet, pod: str) -> str:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{kubelet.log_port}") as http:
        resp = await http.get(f"/containerLogs/default/{pod}/app")
        return resp.text if resp.status_code == 200 else ""


async def delete_pod(client: AsyncClient, name: str) -> None:
    try:
        await client.delete(Pod, name, "default")
    except NotFound:
        return

    async def gone() -> bool:
        return not [p for p in (await client.list(Pod, "default")).items if p.metadata.name == name]

    await wait_for(gone, 30, f"{name} deleted")


async def cleanup(client: AsyncClient, pods: list[str], claims: list[str], pvs: list[str]) -> None:
    for p in pods:
        await delete_pod(client, p)
    for c in claims:
        try:
            await client.delete(PersistentVolumeClaim, c, "default")
        except NotFound:
            pass
    for v in pvs:
        try:
            await client.delete(PersistentVolume, v)
        except NotFound:
            pass


async def test_data_persists_across_pods(client: AsyncClient, kubelet: RunningKubelet, node: Any) -> None:
    path: Path = node.base / "pv" / "vol-a"
    try:
        await client.create(pv_body("pv-a", path))
        await pending_claim(client, "claim-a")
        await bind(client, "pv-a", "claim-a")
        await client.create(claim_pod("writer", "claim-a", "echo persisted > /data/out && echo wrote"))

        async def done(name: str) -> bool:
            return await phase(client, name) == "Succeeded"

        await wait_for(lambda: done("writer"), 60, "the writer to finish")
        assert path.is_dir() and (path / "out").read_text() == "persisted\n"  # DirectoryOrCreate made it
        await delete_pod(client, "writer")
        assert (path / "out").read_text() == "persisted\n"  # the pod's volumes went, the PV's data did not

        await client.create(claim_pod("reader", "claim-a", "cat /data/out"))
        await wait_for(lambda: done("reader"), 60, "the reader to finish")
        assert "persisted" in await logs(kubelet, "reader")
    finally:
        await cleanup(client, ["writer", "reader"], ["claim-a"], ["pv-a"])


async def test_pending_claim_waits_then_starts_once_bound(client: AsyncClient, kubelet: RunningKubelet, node: Any):
    path: Path = node.base / "pv" / "vol-b"
    try:
        await pending_claim(client, "claim-b")
        await client.create(claim_pod("waiter", "claim-b", "echo ok > /data/ok && cat /data/ok"))

        async def unbound() -> Any:
            pod = await client.get(Pod, "waiter", "default")
            sts = (pod.status.to_dict() if pod.status else {}).get("containerStatuses") or []
            w = sts[0]["state"].get("waiting") or {} if sts else {}
            return 'persistentvolumeclaim "claim-b" is not bound' in (w.get("message") or "")

        await wait_for(unbound, 30, "the pod to wait for its claim")
        assert not path.exists()
        await client.create(pv_body("pv-b", path))
        await bind(client, "pv-b", "claim-b")

        async def succeeded() -> bool:
            return await phase(client, "waiter") == "Succeeded"

        await wait_for(succeeded, 60, "the pod to start once its claim is bound")
        assert (path / "ok").read_text() == "ok\n"
        assert "ok" in await logs(kubelet, "waiter")
    finally:
        await cleanup(client, ["waiter"], ["claim-b"], ["pv-b"])
