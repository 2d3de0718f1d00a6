"""The kubelet's local-volume reclaimer (a plain class, no Ray): released kray.io/local-path
volumes of this node marked delete-requested lose their directory, then their PV object; paths
not directly under the provisioner base, or not provisioned, are refused (VolumeFailedDelete);
a volume still used by a pod here waits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubelet_harness import Env
from test_kubelet_pvc import pv_body

from kray.actors.kubelet.localvolumes import (
    ANN_LOCAL_PATH_BASE,
    ANN_RECLAIM,
    RECLAIM_DELETE_REQUESTED,
    LocalVolumeReclaimer,
)
from kray.client.errors import NotFound
from kray.crds import Pod
from kray.crds.core import Event
from kray.crds.core.common import ObjectReference
from kray.crds.core.storage import ANN_PROVISIONED_BY, LOCAL_PATH_PROVISIONER, PersistentVolume, StorageClass
from kray.runtime.cri import api_pb2 as pb

SLEEP = {"name": "main", "image": "busybox", "command": ["sleep", "1000"]}
PROVISIONED = {ANN_PROVISIONED_BY: LOCAL_PATH_PROVISIONER, ANN_RECLAIM: RECLAIM_DELETE_REQUESTED}


class StubCri:
    """The two CRI calls the reclaimer makes: live containers and their mounts."""

    def __init__(self, mounts: list[str] | None = None) -> None:
        self.mounts = mounts or []

    async def list_containers(self, filter: Any = None) -> list[pb.Container]:
        return [pb.Container(id="c1", state=pb.CONTAINER_RUNNING)] if self.mounts else []

    async def container_status(self, cid: str, verbose: bool = False) -> pb.ContainerStatus:
        return pb.ContainerStatus(id=cid, mounts=[pb.Mount(host_path=p, container_path="/x") for p in self.mounts])


def reclaimer(env: Env, base: Path, cri: Any = None, pods: list[Pod] | None = None, published: Any = ()) -> Any:
    return LocalVolumeReclaimer(
        "n1",
        env.client,
        cri or StubCri(),
        lambda: pods or [],
        lambda: list(published),
        env.kubelet.events.recorder,
        default_base=str(base),
    )


async def released(env: Env, name: str, path: Path, **kw: Any) -> PersistentVolume:
    ann = kw.pop("annotations", PROVISIONED)
    pv = pv_body(name, str(path), annotations=ann, **kw)
    return await env.client.create(pv)


async def exists(env: Env, name: str) -> bool:
    try:
        await env.client.get(PersistentVolume, name)
        return True
    except NotFound:
        return False


async def failed_delete(env: Env, name: str) -> list[str]:
    evs = (await env.client.list(Event, None, all_namespaces=True)).items
    return [e.message or "" for e in evs if e.involved_object.name == name and e.reason == "VolumeFailedDelete"]


@pytest.fixture
def base(env: Env) -> Path:
    b = env.tmp / "local-path"
    b.mkdir()
    return b


async def test_reclaim_removes_provisioned_dir_and_deletes_pv(env: Env, base: Path):
    d = base / "pvc-1"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "f").write_text("data")
    await released(env, "pvc-1", d)
    assert await reclaimer(env, base).step() == ["pvc-1"]
    assert not d.exists() and base.is_dir()
    assert not await exists(env, "pvc-1")


async def test_reclaim_of_missing_dir_still_deletes_pv(env: Env, base: Path):
    await released(env, "gone", base / "gone")
    assert await reclaimer(env, base).step() == ["gone"]
    assert not await exists(env, "gone")


async def test_reclaim_refuses_paths_outside_the_base(env: Env, base: Path):
    outside = env.tmp / "elsewhere" / "pvc-2"
    outside.mkdir(parents=True)
    deep = base / "a" / "pvc-3"
    deep.mkdir(parents=True)
    await released(env, "pvc-2", outside)
    await released(env, "pvc-3", deep)
    await released(env, "pvc-4", base)  # the base itself
    r = reclaimer(env, base)
    assert await r.step() == []
    await env.kubelet.events.flush()
    assert outside.is_dir() and deep.is_dir() and base.is_dir()
    for name in ("pvc-2", "pvc-3", "pvc-4"):
        assert await exists(env, name)
        [msg] = await failed_delete(env, name)
        assert "not a directory directly under the provisioner base" in msg


async def test_reclaim_refuses_volumes_not_provisioned(env: Env, base: Path):
    d = base / "manual"
    d.mkdir()
    await released(env, "manual", d, annotations={ANN_RECLAIM: RECLAIM_DELETE_REQUESTED})
    (env.tmp / "disk").mkdir()
    await released(env, "local", env.tmp / "disk", local=True)
    assert await reclaimer(env, base).step() == []
    assert d.is_dir() and (env.tmp / "disk").is_dir()
    assert await exists(env, "manual") and await exists(env, "local")
    [msg] = await failed_delete(env, "manual")
    assert f"not a hostPath volume provisioned by {LOCAL_PATH_PROVISIONER}" in msg


async def test_reclaim_honours_a_base_recorded_on_the_pv(env: Env, base: Path):
    other = env.tmp / "other-base"
    (other / "pvc-5").mkdir(parents=True)
    await released(env, "pvc-5", other / "pvc-5", annotations={**PROVISIONED, ANN_LOCAL_PATH_BASE: str(other)})
    assert await reclaimer(env, base).step() == ["pvc-5"]
    assert not (other / "pvc-5").exists()


async def test_reclaim_uses_the_storage_class_path_parameter(env: Env, base: Path):
    other = env.tmp / "class-base"
    (other / "default_data_pvc-6").mkdir(parents=True)
    body = {"metadata": {"name": "fast"}, "provisioner": LOCAL_PATH_PROVISIONER, "parameters": {"path": str(other)}}
    await env.client.create(StorageClass.model_validate(body))
    pv = pv_body("pvc-6", str(other / "default_data_pvc-6"), annotations=PROVISIONED)
    pv.spec.storage_class_name = "fast"
    await env.client.create(pv)
    assert await reclaimer(env, base).step() == ["pvc-6"]
    assert not (other / "default_data_pvc-6").exists()


async def test_reclaim_skips_other_nodes_and_unmarked_pvs(env: Env, base: Path):
    (base / "far").mkdir()
    (base / "kept").mkdir()
    await released(env, "far", base / "far", node="n2")
    await released(env, "kept", base / "kept", annotations={ANN_PROVISIONED_BY: LOCAL_PATH_PROVISIONER})
    assert await reclaimer(env, base).step() == []
    assert (base / "far").is_dir() and (base / "kept").is_dir()


async def test_reclaim_waits_while_a_pod_uses_the_dir(env: Env, base: Path):
    d = base / "busy"
    d.mkdir()
    await released(env, "busy", d)
    assert await reclaimer(env, base, published=[str(d)]).step() == []  # published for a pod here
    assert await reclaimer(env, base, cri=StubCri([str(d / "sub")])).step() == []  # a live container's mount
    assert d.is_dir() and await exists(env, "busy")
    pv = await env.client.get(PersistentVolume, "busy")
    pv.spec.claim_ref = ObjectReference(kind="PersistentVolumeClaim", namespace="default", name="data")
    await env.client.update(pv)
    vol = {"name": "v", "persistentVolumeClaim": {"claimName": "data"}}
    body = {"metadata": {"name": "user", "namespace": "default"}, "spec": {"containers": [SLEEP], "volumes": [vol]}}
    user = Pod.model_validate(body)
    assert await reclaimer(env, base, pods=[user]).step() == []  # a pod here still names the claim
    assert await reclaimer(env, base).step() == ["busy"]
    assert not d.exists()


async def test_reclaim_refuses_a_symlinked_dir(env: Env, base: Path):
    target = env.tmp / "precious"
    target.mkdir()
    (target / "keep").write_text("x")
    (base / "link").symlink_to(target)
    await released(env, "link", base / "link")
    assert await reclaimer(env, base).step() == []
    assert (target / "keep").read_text() == "x" and await exists(env, "link")
    await env.kubelet.events.flush()
    [msg] = await failed_delete(env, "link")
    assert "symbolic link" in msg
