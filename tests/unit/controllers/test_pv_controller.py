"""The PersistentVolume controller on the in-memory cluster (API server over MemoryKV, real
resourceVersions, finalizers and status subresources): binding, default class, named volumes,
WaitForFirstConsumer and local-path provisioning. Shared helpers live here too."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.controllers import persistentvolume
from kray.actors.framework import FakeClock, Manager, StoreListWatcher
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient, NotFound
from kray.crds import REGISTRY
from kray.crds.core import Event
from kray.crds.core.storage import PersistentVolume, PersistentVolumeClaim, StorageClass

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
NS = "default"
RWO = ["ReadWriteOnce"]


class Env:
    def __init__(self, manager: Manager, client: AsyncClient, clock: FakeClock) -> None:
        self.manager, self.client, self.clock = manager, client, clock

    async def settle(self, rounds: int = 15) -> None:
        for _ in range(rounds):
            await self.manager.step()
            await self.clock.advance_and_settle(1.0)  # rate-limited requeues (conflicts) come due
            await asyncio.sleep(0.003)

    async def until(self, cond: Callable[[], Awaitable[bool]], what: str, rounds: int = 200) -> None:
        for _ in range(rounds):
            if await cond():
                return
            await self.settle(1)
        raise AssertionError(f"did not converge: {what}")

    async def pv(self, name: str) -> PersistentVolume | None:
        try:
            return await self.client.get(PersistentVolume, name)
        except NotFound:
            return None

    async def pvc(self, name: str, ns: str = NS) -> PersistentVolumeClaim | None:
        try:
            return await self.client.get(PersistentVolumeClaim, name, ns)
        except NotFound:
            return None

    async def phase(self, name: str) -> str | None:
        pv = await self.pv(name)
        return pv.status.phase if pv and pv.status else None

    async def claim_phase(self, name: str) -> str | None:
        pvc = await self.pvc(name)
        return pvc.status.phase if pvc and pvc.status else None

    async def reasons(self, name: str) -> list[str]:
        events = (await self.client.list(Event, NS)).items
        return [e.reason or "" for e in events if e.involved_object.name == name]


@contextlib.asynccontextmanager
async def cluster() -> AsyncIterator[Env]:
    """The in-memory cluster with the PV controllers registered (they run only when stepped)."""
    kv = MemoryKV()
    store = ObjectStore(kv, REGISTRY)
    api = ApiServer(store, REGISTRY, token="t", clock=lambda: NOW)
    await api.start()
    clock = FakeClock(NOW)
    transport = httpx.ASGITransport(app=api.app)
    async with AsyncClient(server="http://kray.test", token="t", transport=transport) as client:
        manager = Manager(StoreListWatcher(store), client, clock=clock)
        persistentvolume.setup(manager)
        assert await manager.start_informers(2)
        yield Env(manager, client, clock)
        await manager.stop()
    await kv.close()


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with cluster() as e:
        yield e


def a_pv(
    name: str,
    size: str = "10Gi",
    cls: str = "",
    modes: list[str] | None = None,
    node: str = "n1",
    policy: str = "Retain",
    labels: dict[str, str] | None = None,
    claim: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> PersistentVolume:
    term = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}
    spec: dict[str, Any] = {
        "capacity": {"storage": size},
        "accessModes": modes or RWO,
        "persistentVolumeReclaimPolicy": policy,
        "local": {"path": f"/mnt/{name}"},
        "nodeAffinity": {"required": {"nodeSelectorTerms": [term]}},
    }
    if cls:
        spec["storageClassName"] = cls
    if claim is not None:
        spec["claimRef"] = claim
    meta = {"name": name, "labels": labels or {}, "annotations": annotations or {}}
    return PersistentVolume.model_validate({"metadata": meta, "spec": spec})


def a_pvc(
    name: str,
    size: str = "5Gi",
    cls: str | None = None,
    modes: list[str] | None = None,
    volume: str | None = None,
    selector: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    ns: str = NS,
) -> PersistentVolumeClaim:
    spec: dict[str, Any] = {"accessModes": modes or RWO, "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    if volume:
        spec["volumeName"] = volume
    if selector:
        spec["selector"] = selector
    meta = {"name": name, "namespace": ns, "annotations": annotations or {}}
    return PersistentVolumeClaim.model_validate({"metadata": meta, "spec": spec})


def a_class(
    name: str,
    provisioner: str = "kray.io/local-path",
    mode: str = "WaitForFirstConsumer",
    default: bool = False,
    **fields: Any,
) -> StorageClass:
    annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    body = {
        "metadata": {"name": name, "annotations": annotations},
        "provisioner": provisioner,
        "volumeBindingMode": mode,
        **fields,
    }
    return StorageClass.model_validate(body)


async def bound_to(env: Env, claim: str, volume: str) -> bool:
    pvc, pv = await env.pvc(claim), await env.pv(volume)
    return (
        pvc is not None
        and pv is not None
        and pvc.spec.volume_name == volume
        and pvc.status is not None
        and pvc.status.phase == "Bound"
        and pv.status is not None
        and pv.status.phase == "Bound"
    )


# ---- binding ----


async def test_binds_the_smallest_fitting_volume(env: Env) -> None:
    c = env.client
    await c.create(a_pv("big", "20Gi"))
    await c.create(a_pv("mid", "10Gi"))
    await c.create(a_pv("tiny", "1Gi"))  # too small
    await c.create(a_pv("fast", "6Gi", cls="fast"))  # another class
    await c.create(a_pv("ro", "6Gi", modes=["ReadOnlyMany"]))  # wrong modes
    claim = await c.create(a_pvc("data", "5Gi"))
    await env.until(lambda: bound_to(env, "data", "mid"), "data bound to mid")

    pv = await env.pv("mid")
    assert pv is not None and pv.spec.claim_ref is not None
    ref = pv.spec.claim_ref
    assert (ref.kind, ref.namespace, ref.name, ref.uid, ref.api_version) == (
        "PersistentVolumeClaim",
        NS,
        "data",
        claim.metadata.uid,
        "v1",
    )
    assert ref.resource_version
    assert (pv.metadata.annotations or {})["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert pv.metadata.finalizers == ["kubernetes.io/pv-protection"]
    pvc = await env.pvc("data")
    assert pvc is not None and pvc.status is not None
    ann = pvc.metadata.annotations or {}
    assert ann["pv.kubernetes.io/bind-completed"] == "yes"
    assert ann["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert pvc.status.access_modes == RWO and str((pvc.status.capacity or {})["storage"]) == "10Gi"
    assert pvc.metadata.finalizers == ["kubernetes.io/pvc-protection"]
    assert pvc.spec.storage_class_name is None  # no default class: left unset
    for other in ("big", "tiny", "fast", "ro"):
        assert await env.phase(other) == "Available"


async def test_selector_and_named_volume(env: Env) -> None:
    c = env.client
    await c.create(a_pv("plain", "10Gi"))
    await c.create(a_pv("gold", "50Gi", labels={"tier": "gold"}))
    await c.create(a_pv("named", "8Gi"))
    await c.create(a_pvc("picky", selector={"matchLabels": {"tier": "gold"}}))
    await c.create(a_pvc("byname", volume="named"))
    await env.until(lambda: bound_to(env, "picky", "gold"), "the selector picks gold")
    await env.until(lambda: bound_to(env, "byname", "named"), "the named volume")
    pvc = await env.pvc("byname")
    assert pvc is not None
    ann = pvc.metadata.annotations or {}
    assert ann.get("pv.kubernetes.io/bind-completed") == "yes"
    assert "pv.kubernetes.io/bound-by-controller" not in ann  # the user chose the volume
    assert await env.phase("plain") == "Available"


async def test_named_volume_that_does_not_fit_or_is_taken(env: Env) -> None:
    c = env.client
    await c.create(a_pv("small", "1Gi"))
    await c.create(a_pvc("want", "5Gi", volume="small"))
    await env.until(lambda: _has(env, "want", "VolumeMismatch"), "a VolumeMismatch event")
    assert await env.claim_phase("want") == "Pending" and await env.phase("small") == "Available"

    await c.create(a_pv("taken", "10Gi"))
    await c.create(a_pvc("first", volume="taken"))
    await env.until(lambda: bound_to(env, "first", "taken"), "first binds taken")
    await c.create(a_pvc("second", volume="taken"))
    await env.until(lambda: _has(env, "second", "FailedBinding"), "second cannot have it")
    assert await env.claim_phase("second") == "Pending"


async def _has(env: Env, name: str, reason: str) -> bool:
    return reason in await env.reasons(name)


async def test_default_class_is_filled_in_and_empty_class_is_not(env: Env) -> None:
    c = env.client
    await c.create(a_class("standard", provisioner="example.com/nfs", mode="Immediate", default=True))
    await c.create(a_class("old-default", provisioner="example.com/nfs", mode="Immediate"))
    await c.create(a_pv("std", "10Gi", cls="standard"))
    await c.create(a_pv("classless", "10Gi"))
    await c.create(a_pvc("nocls"))
    await c.create(a_pvc("empty", cls=""))
    await env.until(lambda: bound_to(env, "nocls", "std"), "the defaulted claim binds a standard volume")
    await env.until(lambda: bound_to(env, "empty", "classless"), '"" asks for a class-less volume')
    pvc = await env.pvc("nocls")
    assert pvc is not None and pvc.spec.storage_class_name == "standard"
    pvc = await env.pvc("empty")
    assert pvc is not None and pvc.spec.storage_class_name == ""

    # An external provisioner's class with no volume: annotated and left to it.
    await c.create(a_pvc("waits", cls="standard"))
    await env.until(lambda: _has(env, "waits", "ExternalProvisioning"), "an ExternalProvisioning event")
    pvc = await env.pvc("waits")
    assert pvc is not None and pvc.status is not None and pvc.status.phase == "Pending"
    assert (pvc.metadata.annotations or {})["volume.kubernetes.io/storage-provisioner"] == "example.com/nfs"


# ---- WaitForFirstConsumer and provisioning ----


async def test_wait_for_first_consumer_then_bind_on_the_selected_node(env: Env) -> None:
    c = env.client
    await c.create(a_class("local"))
    await c.create(a_pv("on-n1", "5Gi", cls="local", node="n1"))
    await c.create(a_pv("on-n2", "10Gi", cls="local", node="n2"))
    await c.create(a_pvc("data", cls="local"))
    await env.until(lambda: _has(env, "data", "WaitForFirstConsumer"), "the WFFC event")
    await env.settle()
    assert await env.claim_phase("data") == "Pending"
    assert await env.phase("on-n1") == "Available" and await env.phase("on-n2") == "Available"

    pvc = await env.pvc("data")
    assert pvc is not None
    pvc.metadata.annotations = {**(pvc.metadata.annotations or {}), "volume.kubernetes.io/selected-node": "n2"}
    await c.update(pvc)  # what the scheduler does
    await env.until(lambda: bound_to(env, "data", "on-n2"), "the volume on n2 (not the smaller one on n1)")
    assert await env.pv("pvc-" + str(pvc.metadata.uid)) is None  # nothing provisioned


async def test_local_path_provisions_on_the_selected_node(env: Env) -> None:
    c = env.client
    await c.create(a_class("lp", parameters={"path": "/data/lp/"}))
    await c.create(a_pv("elsewhere", "10Gi", cls="lp", node="n2"))  # fits, but on another node
    ann = {"volume.kubernetes.io/selected-node": "n1"}
    claim = await c.create(a_pvc("db", "3Gi", cls="lp", modes=["ReadWriteOncePod"], annotations=ann))
    name = f"pvc-{claim.metadata.uid}"
    await env.until(lambda: bound_to(env, "db", name), "a provisioned volume")

    pv = await env.pv(name)
    assert pv is not None and pv.spec.host_path is not None and pv.spec.claim_ref is not None
    assert pv.spec.host_path.path == f"/data/lp/{NS}_db_{name}" and pv.spec.host_path.type == "DirectoryOrCreate"
    assert str((pv.spec.capacity or {})["storage"]) == "3Gi" and pv.spec.access_modes == ["ReadWriteOncePod"]
    assert pv.spec.persistent_volume_reclaim_policy == "Delete" and pv.spec.storage_class_name == "lp"
    assert pv.spec.node_names() == ["n1"] and pv.spec.claim_ref.uid == claim.metadata.uid
    assert (pv.metadata.annotations or {})["pv.kubernetes.io/provisioned-by"] == "kray.io/local-path"
    assert (pv.metadata.annotations or {})["kray.io/local-path-base"] == "/data/lp"
    pvc = await env.pvc("db")
    assert pvc is not None
    assert (pvc.metadata.annotations or {})["volume.kubernetes.io/storage-provisioner"] == "kray.io/local-path"
    reasons = await env.reasons("db")
    assert "Provisioning" in reasons and "ProvisioningSucceeded" in reasons
    assert await env.phase("elsewhere") == "Available"


async def test_local_path_default_directory_and_retain_policy(env: Env) -> None:
    c = env.client
    await c.create(a_class("lp", reclaimPolicy="Retain"))
    claim = await c.create(a_pvc("d", cls="lp", annotations={"volume.kubernetes.io/selected-node": "n3"}))
    name = f"pvc-{claim.metadata.uid}"
    await env.until(lambda: bound_to(env, "d", name), "a provisioned volume")
    pv = await env.pv(name)
    assert pv is not None and pv.spec.host_path is not None
    assert pv.spec.host_path.path == f"/var/lib/kray/local-path/{NS}_d_{name}"
    assert pv.spec.persistent_volume_reclaim_policy == "Retain"


async def test_immediate_local_path_cannot_provision(env: Env) -> None:
    c = env.client
    await c.create(a_class("lp-now", mode="Immediate"))
    await c.create(a_pvc("x", cls="lp-now"))
    await env.until(lambda: _has(env, "x", "ProvisioningFailed"), "a ProvisioningFailed event")
    assert await env.claim_phase("x") == "Pending"
    assert (await c.list(PersistentVolume)).items == []
    await c.create(a_pv("static", cls="lp-now"))  # a static volume of the class still binds
    await env.until(lambda: bound_to(env, "x", "static"), "the static volume")


async def test_missing_class_is_reported(env: Env) -> None:
    await env.client.create(a_pvc("x", cls="nope"))
    await env.until(lambda: _has(env, "x", "ProvisioningFailed"), "a ProvisioningFailed event")
    assert await env.claim_phase("x") == "Pending"


@pytest.mark.parametrize("path", ["relative/dir", "/", "//"])
async def test_local_path_base_must_be_absolute_and_not_root(env: Env, path: str) -> None:
    await env.client.create(a_class("bad", parameters={"path": path}))
    await env.client.create(a_pvc("x", cls="bad", annotations={"volume.kubernetes.io/selected-node": "n1"}))
    await env.until(lambda: _has(env, "x", "ProvisioningFailed"), "a ProvisioningFailed event")
    assert (await env.client.list(PersistentVolume)).items == []
    assert await env.claim_phase("x") == "Pending"
