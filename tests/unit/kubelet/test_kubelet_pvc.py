"""persistentVolumeClaim volumes at the kubelet (FakeCri + the in-memory API server): a pod
waits (FailedMount) while its claim is missing or unbound and starts once it is Bound, with
its node-local PV's directory as a hostPath mount; wrong-node PVs, missing local paths,
readOnly and DirectoryOrCreate modes."""

from __future__ import annotations

import stat
from typing import Any

from kubelet_harness import Env

from kray.crds import Pod
from kray.crds.core import Event
from kray.crds.core.storage import ANN_PROVISIONED_BY, LOCAL_PATH_PROVISIONER, PersistentVolume, PersistentVolumeClaim

SLEEP = {"name": "main", "image": "busybox", "command": ["sleep", "1000"]}


def pv_body(
    name: str,
    path: str,
    *,
    node: str = "n1",
    local: bool = False,
    type_: str = "DirectoryOrCreate",
    modes: tuple[str, ...] = ("ReadWriteOnce",),
    annotations: dict[str, str] | None = None,
    affinity: dict[str, Any] | None = None,
) -> PersistentVolume:
    terms = [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]
    spec: dict[str, Any] = {
        "capacity": {"storage": "1Gi"},
        "accessModes": list(modes),
        "persistentVolumeReclaimPolicy": "Delete",
        "nodeAffinity": {"required": affinity or {"nodeSelectorTerms": terms}},
    }
    spec["local" if local else "hostPath"] = {"path": path} if local else {"path": path, "type": type_}
    meta = {"name": name, "annotations": annotations or {}}
    return PersistentVolume.model_validate({"metadata": meta, "spec": spec})


async def make_pvc(env: Env, name: str, modes: tuple[str, ...] = ("ReadWriteOnce",)) -> PersistentVolumeClaim:
    body = {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"accessModes": list(modes), "resources": {"requests": {"storage": "1Gi"}}},
    }
    pvc = await env.client.create(PersistentVolumeClaim.model_validate(body))
    pvc.status = PersistentVolumeClaim.model_validate({**body, "status": {"phase": "Pending"}}).status
    return await env.client.update_status(pvc)


async def bind(env: Env, pv: PersistentVolume, pvc_name: str) -> None:
    """What the PV controller does: claimRef + Bound on the PV, volumeName + Bound on the claim."""
    pvc = await env.client.get(PersistentVolumeClaim, pvc_name, "default")
    raw = pv.to_dict()
    if not pv.metadata.resource_version:
        raw = (await env.client.create(pv)).to_dict()
    raw["spec"]["claimRef"] = {
        "kind": "PersistentVolumeClaim",
        "namespace": "default",
        "name": pvc_name,
        "uid": pvc.metadata.uid,
    }
    written = await env.client.update(PersistentVolume.model_validate(raw))
    written.status = PersistentVolume.model_validate({**raw, "status": {"phase": "Bound"}}).status
    await env.client.update_status(written)
    pvc.spec.volume_name = pv.metadata.name
    pvc = await env.client.update(pvc)
    raw = pvc.to_dict()
    raw["status"] = {"phase": "Bound", "accessModes": pvc.spec.access_modes, "capacity": {"storage": "1Gi"}}
    await env.client.update_status(PersistentVolumeClaim.model_validate(raw))


def pvc_pod_spec(claim: str = "data", read_only: bool = False, mount_ro: bool = False) -> dict[str, Any]:
    source: dict[str, Any] = {"claimName": claim}
    if read_only:
        source["readOnly"] = True
    mount = {"name": "vol", "mountPath": "/data", "readOnly": mount_ro}
    return {
        "volumes": [{"name": "vol", "persistentVolumeClaim": source}],
        "containers": [{**SLEEP, "volumeMounts": [mount]}],
    }


def waiting(pod: Pod) -> dict[str, Any]:
    st = pod.status.to_dict()["containerStatuses"][0]["state"]
    return st.get("waiting") or {}


async def events(env: Env, pod: str, reason: str) -> list[str]:
    evs = (await env.client.list(Event, "default")).items
    return [e.message or "" for e in evs if e.involved_object.name == pod and e.reason == reason]


def mount(env: Env, uid: str) -> Any:
    [inst] = env.cri.by_name(uid, "main")
    [m] = [m for m in inst.config.mounts if m.container_path == "/data"]
    return m


async def test_pod_waits_while_claim_unbound_then_runs_once_bound(env: Env):
    path = env.tmp / "local-path" / "pvc-1"
    ann = {ANN_PROVISIONED_BY: LOCAL_PATH_PROVISIONER}
    await make_pvc(env, "data")
    await env.create("app", pvc_pod_spec())
    await env.step()
    pod = await env.pod("app")
    w = waiting(pod)
    assert w["reason"] == "ContainerCreating"  # as Kubernetes: the volume is not there yet
    assert 'persistentvolumeclaim "data" is not bound' in w["message"]
    assert not env.cri.by_name(pod.metadata.uid, "main")
    [msg] = await events(env, "app", "FailedMount")
    assert msg == 'MountVolume.SetUp failed for volume "vol" : persistentvolumeclaim "data" is not bound'
    assert await events(env, "app", "Failed") == [] and env.cri.pull_auths == []  # no image pulled before volumes

    await bind(env, pv_body("pvc-1", str(path), annotations=ann), "data")
    await env.step(advance=2)  # the mount retry comes due; nothing else wakes the pod
    pod = await env.pod("app")
    assert pod.status.to_dict()["containerStatuses"][0]["state"].get("running") is not None
    m = mount(env, pod.metadata.uid)
    assert m.host_path == str(path) and not m.readonly
    assert path.is_dir() and stat.S_IMODE(path.stat().st_mode) == 0o777  # the provisioner's dirs: 0777


async def test_missing_claim_is_failed_mount(env: Env):
    await env.create("lost", pvc_pod_spec("nope"))
    await env.step()
    pod = await env.pod("lost")
    assert 'persistentvolumeclaim "nope" not found' in waiting(pod)["message"]
    [msg] = await events(env, "lost", "FailedMount")
    assert msg == 'MountVolume.SetUp failed for volume "vol" : persistentvolumeclaim "nope" not found'
    assert not env.cri.by_name(pod.metadata.uid, "main")


async def test_pv_of_another_node_is_failed_mount(env: Env):
    await make_pvc(env, "data")
    await bind(env, pv_body("far", str(env.tmp / "far"), node="n2"), "data")
    await env.create("app", pvc_pod_spec())
    await env.step()
    pod = await env.pod("app")
    assert 'persistentvolume "far" is not on this node' in waiting(pod)["message"]
    [msg] = await events(env, "app", "FailedMount")
    assert 'its node affinity does not match node "n1"' in msg
    assert not (env.tmp / "far").exists()


async def test_pv_affinity_by_node_labels(env: Env):
    """An affinity that is not hostname In [...] is matched against the Node's labels."""
    await env.step()  # the kubelet registers its Node (kubernetes.io/hostname=n1, ...)
    await make_pvc(env, "data")
    term = {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}
    pv = pv_body("os", str(env.tmp / "os"), affinity={"nodeSelectorTerms": [term]})
    await bind(env, pv, "data")
    await env.create("app", pvc_pod_spec())
    await env.step()
    assert mount(env, (await env.pod("app")).metadata.uid).host_path == str(env.tmp / "os")


async def test_local_path_must_exist(env: Env):
    path = env.tmp / "disk1"
    await make_pvc(env, "data")
    await bind(env, pv_body("disk", str(path), local=True), "data")
    await env.create("app", pvc_pod_spec())
    await env.step()
    pod = await env.pod("app")
    assert f'persistentvolume "disk": path "{path}" does not exist on this node' in waiting(pod)["message"]
    assert not path.exists()  # a local volume is never created by the kubelet
    path.mkdir()
    await env.step(advance=10)
    assert mount(env, pod.metadata.uid).host_path == str(path)


async def test_directory_or_create_not_provisioned_is_0755(env: Env):
    path = env.tmp / "manual" / "vol"
    await make_pvc(env, "data")
    await bind(env, pv_body("manual", str(path)), "data")
    await env.create("app", pvc_pod_spec())
    await env.step()
    assert mount(env, (await env.pod("app")).metadata.uid).host_path == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755


async def test_read_only_claim_source_and_read_only_many_pv(env: Env):
    await make_pvc(env, "data")
    await bind(env, pv_body("rw", str(env.tmp / "rw")), "data")
    await env.create("ro-src", pvc_pod_spec(read_only=True))
    await env.create("rw", pvc_pod_spec())
    await make_pvc(env, "shared", modes=("ReadOnlyMany",))
    await bind(env, pv_body("rox", str(env.tmp / "rox"), modes=("ReadOnlyMany",)), "shared")
    await env.create("rox", pvc_pod_spec("shared"))
    await env.step()
    assert mount(env, (await env.pod("ro-src")).metadata.uid).readonly
    assert not mount(env, (await env.pod("rw")).metadata.uid).readonly
    assert mount(env, (await env.pod("rox")).metadata.uid).readonly


async def test_pv_bound_to_another_claim_is_refused(env: Env):
    await make_pvc(env, "data")
    await make_pvc(env, "other")
    pv = pv_body("taken", str(env.tmp / "taken"))
    await bind(env, pv, "other")
    pvc = await env.client.get(PersistentVolumeClaim, "data", "default")
    pvc.spec.volume_name = "taken"
    pvc = await env.client.update(pvc)
    raw = pvc.to_dict()
    raw["status"] = {"phase": "Bound"}
    await env.client.update_status(PersistentVolumeClaim.model_validate(raw))
    await env.create("app", pvc_pod_spec())
    await env.step()
    msg = waiting(await env.pod("app"))["message"]
    assert 'persistentvolume "taken" is not bound to persistentvolumeclaim "default/data"' in msg
