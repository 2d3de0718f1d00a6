"""The PersistentVolume controller after binding: release and reclaim by policy, the protection
finalizers, lost and misbound claims, and phases of volumes created with a claimRef."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from test_pv_controller import NS, Env, _has, a_class, a_pv, a_pvc, bound_to, cluster

from kray.crds import ObjectMeta
from kray.crds.core import Namespace, Node, Pod
from kray.crds.core.storage import PersistentVolume, PersistentVolumeClaim

DELETE_REQUESTED = ("kray.io/reclaim", "delete-requested")


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with cluster() as e:
        yield e


async def bind(env: Env, claim: str, volume: str, **pv: Any) -> PersistentVolumeClaim:
    await env.client.create(a_pv(volume, **pv))
    created = await env.client.create(a_pvc(claim))
    await env.until(lambda: bound_to(env, claim, volume), f"{claim} bound to {volume}")
    return created


async def gone(env: Env, kind: type[Any], name: str, ns: str | None = None) -> bool:
    return await (env.pvc(name, ns or NS) if kind is PersistentVolumeClaim else env.pv(name)) is None


def a_pod(name: str, claim: str, ns: str = NS) -> Pod:
    volume = {"name": "v", "persistentVolumeClaim": {"claimName": claim}}
    spec = {"containers": [{"name": "c", "image": "x"}], "volumes": [volume]}
    return Pod.model_validate({"metadata": {"name": name, "namespace": ns}, "spec": spec})


async def test_retain_keeps_a_released_volume(env: Env) -> None:
    claim = await bind(env, "data", "keep", policy="Retain")
    await env.client.delete(PersistentVolumeClaim, "data", NS)
    await env.until(lambda: gone(env, PersistentVolumeClaim, "data"), "the claim gone")
    await env.until(lambda: _phase_is(env, "keep", "Released"), "the volume Released")
    await env.settle()
    pv = await env.pv("keep")
    assert pv is not None and pv.spec.claim_ref is not None and pv.spec.claim_ref.uid == claim.metadata.uid
    assert pv.status is not None and pv.status.phase == "Released"
    # A new claim of the same name does not get the old data.
    await env.client.create(a_pvc("data"))
    await env.settle()
    assert await env.claim_phase("data") == "Pending"


async def _phase_is(env: Env, name: str, phase: str) -> bool:
    return await env.phase(name) == phase


async def test_static_volume_with_delete_fails_like_kubernetes(env: Env) -> None:
    await bind(env, "data", "static", policy="Delete")
    await env.client.delete(PersistentVolumeClaim, "data", NS)
    await env.until(lambda: _phase_is(env, "static", "Failed"), "the volume Failed")
    pv = await env.pv("static")
    assert pv is not None and pv.status is not None
    assert (
        pv.status.message
        == 'error getting deleter volume plugin for volume "static": no deletable volume plugin matched'
    )
    assert "VolumeFailedDelete" in await env.reasons("static")


async def test_recycle_is_not_supported(env: Env) -> None:
    await bind(env, "data", "old", policy="Recycle")
    await env.client.delete(PersistentVolumeClaim, "data", NS)
    await env.until(lambda: _phase_is(env, "old", "Failed"), "the volume Failed")
    assert "VolumeFailedRecycle" in await env.reasons("old")


async def provisioned(env: Env, node: str = "n1") -> str:
    await env.client.create(a_class("lp"))
    ann = {"volume.kubernetes.io/selected-node": node}
    claim = await env.client.create(a_pvc("data", cls="lp", annotations=ann))
    name = f"pvc-{claim.metadata.uid}"
    await env.until(lambda: bound_to(env, "data", name), "a provisioned volume")
    return name


async def delete_requested(env: Env, name: str) -> bool:
    pv = await env.pv(name)
    return pv is not None and (pv.metadata.annotations or {}).get(DELETE_REQUESTED[0]) == DELETE_REQUESTED[1]


async def test_local_path_delete_is_left_to_the_node(env: Env) -> None:
    await env.client.create(Node(metadata=ObjectMeta(name="n1")))
    name = await provisioned(env)
    await env.client.delete(PersistentVolumeClaim, "data", NS)
    await env.until(lambda: delete_requested(env, name), "kray.io/reclaim=delete-requested")
    await env.settle()
    assert await env.phase(name) == "Released"  # the controller does not delete it: n1 exists
    assert "VolumeDeleteRequested" in await env.reasons(name)
    # The kubelet of n1 removes the directory, then deletes the PV; pv-protection lets it go.
    await env.client.delete(PersistentVolume, name)
    await env.until(lambda: gone(env, PersistentVolume, name), "the volume deleted")


async def test_local_path_volume_of_a_removed_node_is_deleted_by_the_controller(env: Env) -> None:
    await env.client.create(Node(metadata=ObjectMeta(name="n1")))
    name = await provisioned(env)
    await env.client.delete(PersistentVolumeClaim, "data", NS)
    await env.until(lambda: delete_requested(env, name), "kray.io/reclaim=delete-requested")
    await env.settle()
    assert await env.pv(name) is not None
    await env.client.delete(Node, "n1")
    await env.until(lambda: gone(env, PersistentVolume, name), "the orphaned volume deleted")
    assert "VolumeNodeGone" in await env.reasons(name)


async def test_pvc_protection_waits_for_pods(env: Env) -> None:
    await bind(env, "data", "v")
    await env.client.create(a_pod("user", "data"))
    await env.client.create(a_pod("done", "data"))
    await env.client.patch(Pod, "done", {"status": {"phase": "Succeeded"}}, NS, subresource="status")
    await env.client.create(Namespace(metadata=ObjectMeta(name="other")))
    await env.client.create(a_pod("elsewhere", "data", ns="other"))  # another namespace's claim
    await env.client.delete(PersistentVolumeClaim, "data", NS)
    await env.settle()
    pvc = await env.pvc("data")
    assert pvc is not None and pvc.metadata.deletion_timestamp is not None  # held: "user" runs
    assert await env.phase("v") == "Bound"
    await env.client.patch(Pod, "user", {"status": {"phase": "Failed"}}, NS, subresource="status")
    await env.until(lambda: gone(env, PersistentVolumeClaim, "data"), "the claim gone once unused")
    await env.until(lambda: _phase_is(env, "v", "Released"), "the volume released")


async def test_pv_protection_holds_a_bound_volume(env: Env) -> None:
    await bind(env, "data", "v")
    await env.client.delete(PersistentVolume, "v")
    await env.settle()
    pv = await env.pv("v")
    assert pv is not None and pv.metadata.deletion_timestamp is not None
    await env.client.delete(PersistentVolumeClaim, "data", NS)
    await env.until(lambda: gone(env, PersistentVolume, "v"), "the volume gone once released")


async def test_deleting_volume_is_not_bound(env: Env) -> None:
    await env.client.create(a_pv("dying"))
    await env.settle()
    await env.client.delete(PersistentVolume, "dying")  # Available: pv-protection lets it go
    await env.until(lambda: gone(env, PersistentVolume, "dying"), "the free volume deleted")


async def test_new_volumes_phases_and_pre_binding(env: Env) -> None:
    await env.client.create(a_pv("free"))
    await env.client.create(a_pv("small", "6Gi"))
    prebound = {"kind": "PersistentVolumeClaim", "namespace": NS, "name": "later"}
    await env.client.create(a_pv("reserved", "50Gi", claim=prebound))
    await env.until(lambda: _phase_is(env, "reserved", "Available"), "a pre-bound volume is Available")
    assert await env.phase("free") == "Available"
    await env.client.create(a_pvc("later"))
    await env.until(lambda: bound_to(env, "later", "reserved"), "the pre-bound volume, not the smallest")


async def test_volume_created_bound_to_a_bound_claim_is_bound(env: Env) -> None:
    claim = await env.client.create(a_pvc("c", volume="restored"))
    ref = {"kind": "PersistentVolumeClaim", "namespace": NS, "name": "c", "uid": claim.metadata.uid}
    await env.client.create(a_pv("restored", claim=ref))
    await env.until(lambda: bound_to(env, "c", "restored"), "bound")


async def test_lost_claim(env: Env) -> None:
    ann = {"pv.kubernetes.io/bind-completed": "yes"}
    await env.client.create(a_pvc("orphan", volume="vanished", annotations=ann))
    await env.until(lambda: _has(env, "orphan", "ClaimLost"), "a ClaimLost event")
    assert await env.claim_phase("orphan") == "Lost"


async def test_controller_unbinds_a_volume_whose_claim_went_elsewhere(env: Env) -> None:
    claim = await bind(env, "data", "mine")
    ref = {"kind": "PersistentVolumeClaim", "namespace": NS, "name": "data", "uid": claim.metadata.uid}
    ann = {"pv.kubernetes.io/bound-by-controller": "yes"}
    await env.client.create(a_pv("stray", claim=ref, annotations=ann))  # a leftover reservation
    await env.until(lambda: _unbound(env, "stray"), "the stray reservation dropped")
    assert await env.phase("stray") == "Available"
    assert await bound_to(env, "data", "mine")


async def _unbound(env: Env, name: str) -> bool:
    pv = await env.pv(name)
    return pv is not None and pv.spec.claim_ref is None


async def test_user_prebinding_keeps_the_name(env: Env) -> None:
    claim = await bind(env, "data", "mine")
    ref = {"kind": "PersistentVolumeClaim", "namespace": NS, "name": "data", "uid": claim.metadata.uid}
    await env.client.create(a_pv("users", claim=ref))  # no bound-by-controller: a user's pre-binding
    await env.until(lambda: _phase_is(env, "users", "Available"), "Available again")
    pv = await env.pv("users")
    assert pv is not None and pv.spec.claim_ref is not None
    assert (pv.spec.claim_ref.name, pv.spec.claim_ref.uid) == ("data", None)
