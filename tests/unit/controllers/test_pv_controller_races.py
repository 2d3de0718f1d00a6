"""The PersistentVolume controller under races: stale caches are 409s that requeue, a pass that
stops between the volume and the claim write is completed by the next, claims racing for one
volume get it once. And the pure rules (which volume, which node, which path) table by table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from test_pv_controller import NS, Env, a_class, a_pv, a_pvc, bound_to, cluster

from kray.actors.controllers.pvclaims import ClaimReconciler
from kray.actors.controllers.pvutil import choose_volume, local_path, on_node, provisioned_volume
from kray.actors.framework import Controller, Request
from kray.client import AsyncClient, Conflict
from kray.crds import ObjectMeta
from kray.crds.core import Node, Pod
from kray.crds.core.storage import PersistentVolume, PersistentVolumeClaim, StorageClass

KINDS: tuple[type[Any], ...] = (PersistentVolume, PersistentVolumeClaim, StorageClass, Node, Pod)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with cluster() as e:
        yield e


class Snapshot:
    """A Reader frozen at one moment: what a lagging informer cache serves."""

    def __init__(self, objects: dict[tuple[type[Any], str | None, str], Any]) -> None:
        self.objects = objects

    @classmethod
    async def take(cls, client: AsyncClient) -> Snapshot:
        objects = {}
        for kind in KINDS:
            for obj in (await client.list(kind, all_namespaces=True)).items:
                objects[(kind, obj.metadata.namespace, obj.name)] = obj
        return cls(objects)

    async def get(self, kind: type[Any], name: str, namespace: str | None = None) -> Any:
        from kray.client import NotFound

        obj = self.objects.get((kind, namespace if kind in (PersistentVolumeClaim, Pod) else None, name))
        if obj is None:
            raise NotFound(404, "NotFound", f"{name} not found")
        return obj

    async def list(self, kind: type[Any], namespace: str | None = None, *, label_selector: str | None = None) -> Any:
        return [o for (k, ns, _), o in self.objects.items() if k is kind and (namespace is None or ns == namespace)]


class CrashingWriter:
    """The API client, except that writing a claim's spec fails once: the process died there."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.crashed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    async def update(self, obj: Any) -> Any:
        if isinstance(obj, PersistentVolumeClaim) and not self.crashed:
            self.crashed = True
            raise RuntimeError("crashed between the volume and the claim write")
        return await self.client.update(obj)


def reconciler(env: Env, reader: Any, writer: Any = None) -> ClaimReconciler:
    return ClaimReconciler(reader, writer or env.client, env.manager.event_recorder("test"))


async def test_a_stale_volume_is_a_conflict_and_the_key_is_requeued(env: Env) -> None:
    await env.client.create(a_pv("v"))
    await env.client.create(a_pvc("a"))
    stale = await Snapshot.take(env.client)
    pv = await env.client.get(PersistentVolume, "v")
    pv.metadata.labels = {"touched": "yes"}
    await env.client.update(pv)  # after the snapshot: its resourceVersion is old now

    with pytest.raises(Conflict):
        await reconciler(env, stale).reconcile(Request(NS, "a"))
    assert (await env.client.get(PersistentVolume, "v")).spec.claim_ref is None  # nothing half-written
    claim = await env.client.get(PersistentVolumeClaim, "a", NS)
    assert claim.spec.volume_name is None

    class Reader:  # stale until told otherwise: a lagging cache that then catches up
        fresh = False

        async def get(self, *args: Any) -> Any:
            return await (await Snapshot.take(env.client) if self.fresh else stale).get(*args)

        async def list(self, *args: Any, **kw: Any) -> Any:
            return await (await Snapshot.take(env.client) if self.fresh else stale).list(*args, **kw)

    reader = Reader()
    controller = Controller("claims", reconciler(env, reader), clock=env.clock)
    controller.enqueue(Request(NS, "a"))
    assert await controller.step() == 1 and controller.conflicts == 1
    reader.fresh = True
    assert await controller.step() == 0  # rate-limited: not before its back-off
    await env.clock.advance_and_settle(1.0)
    assert await controller.step() == 1
    claim = await env.client.get(PersistentVolumeClaim, "a", NS)
    assert claim.spec.volume_name == "v" and controller.conflicts == 1


async def test_a_crash_between_the_volume_and_the_claim_write_is_completed(env: Env) -> None:
    await env.client.create(a_pv("v", "10Gi"))
    claim = await env.client.create(a_pvc("a"))
    writer = CrashingWriter(env.client)
    with pytest.raises(RuntimeError):
        await reconciler(env, await Snapshot.take(env.client), writer).reconcile(Request(NS, "a"))
    pv = await env.client.get(PersistentVolume, "v")
    assert pv.spec.claim_ref is not None and pv.spec.claim_ref.uid == claim.metadata.uid  # reserved
    assert (await env.client.get(PersistentVolumeClaim, "a", NS)).spec.volume_name is None
    # A smaller volume now fits better, but the reserved one is the claim's: no second reservation.
    await env.client.create(a_pv("smaller", "6Gi"))
    await env.until(lambda: bound_to(env, "a", "v"), "the binding completed")
    await env.settle()
    small = await env.client.get(PersistentVolume, "smaller")
    assert small.spec.claim_ref is None and small.status is not None and small.status.phase == "Available"


async def test_two_claims_racing_for_one_volume(env: Env) -> None:
    await env.client.create(a_pv("only"))
    claims = {n: await env.client.create(a_pvc(n)) for n in ("a", "b")}
    same_view = await Snapshot.take(env.client)  # both passes see the volume free
    results = await asyncio.gather(
        reconciler(env, same_view).reconcile(Request(NS, "a")),
        reconciler(env, same_view).reconcile(Request(NS, "b")),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Conflict) for r in results) == 1
    winner = "a" if not isinstance(results[0], Exception) else "b"
    loser = "b" if winner == "a" else "a"
    await env.settle()
    pv = await env.client.get(PersistentVolume, "only")
    assert pv.spec.claim_ref is not None and pv.spec.claim_ref.uid == claims[winner].metadata.uid
    assert await bound_to(env, winner, "only")
    assert await env.claim_phase(loser) == "Pending"
    await env.client.create(a_pv("second"))
    await env.until(lambda: bound_to(env, loser, "second"), "the loser binds a new volume")


async def test_many_claims_one_volume_through_the_controllers(env: Env) -> None:
    await env.client.create(a_pv("only"))
    for i in range(6):
        await env.client.create(a_pvc(f"c{i}"))
    await env.settle(30)
    claims = (await env.client.list(PersistentVolumeClaim, NS)).items
    bound = [c.name for c in claims if c.spec.volume_name]
    assert len(bound) == 1
    assert await bound_to(env, bound[0], "only")
    assert sorted(c.status.phase for c in claims if c.status) == ["Bound"] + ["Pending"] * 5


# ---- the pure rules ----


def test_choose_volume_prefers_a_reservation_then_the_smallest_then_the_name() -> None:
    pvc = a_pvc("a", "5Gi")
    pvc.metadata.uid = "u1"
    vols = [a_pv("z", "5Gi"), a_pv("y", "5Gi"), a_pv("big", "9Gi")]
    assert (choose_volume(vols, pvc, None, None) or a_pv("none")).name == "y"
    mine = a_pv("mine", "100Gi", claim={"namespace": NS, "name": "a", "uid": "u1"})
    other = a_pv("other", "5Gi", claim={"namespace": NS, "name": "a", "uid": "old"})
    assert (choose_volume([*vols, mine, other], pvc, None, None) or a_pv("none")).name == "mine"
    assert choose_volume([other], pvc, None, None) is None  # a former claim of the same name
    reclaiming = a_pv("r", annotations={"kray.io/reclaim": "delete-requested"})
    assert choose_volume([reclaiming], pvc, None, None) is None
    assert (choose_volume(vols, pvc, "n2", None)) is None  # all on n1


def test_on_node_by_hostname_labels_or_no_affinity() -> None:
    assert on_node(a_pv("a", node="n1"), "n1", None) and not on_node(a_pv("a", node="n1"), "n2", None)
    by_zone = a_pv("z")
    term = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["east"]}]}
    by_zone = PersistentVolume.model_validate(
        {
            **by_zone.to_dict(),
            "spec": {**by_zone.to_dict()["spec"], "nodeAffinity": {"required": {"nodeSelectorTerms": [term]}}},
        }
    )
    east = Node(metadata=ObjectMeta(name="n5", labels={"zone": "east"}))
    west = Node(metadata=ObjectMeta(name="n6", labels={"zone": "west"}))
    assert on_node(by_zone, "n5", east) and not on_node(by_zone, "n6", west) and not on_node(by_zone, "n5", None)
    anywhere = PersistentVolume.model_validate(
        {"metadata": {"name": "h"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                             "hostPath": {"path": "/h"}}}
    )  # fmt: skip
    assert on_node(anywhere, "any", None)


def test_provisioned_volume_is_valid_and_pinned() -> None:
    cls = a_class("lp", parameters={"path": "/srv"}, reclaimPolicy="Retain", mountOptions=["noatime"])
    pvc = a_pvc("data", "2Gi", cls="lp")
    pvc.metadata.uid = "1234"
    pv = provisioned_volume(cls, pvc, "n9")
    again = PersistentVolume.model_validate(pv.to_dict())  # passes the kind's validation
    assert again.spec.node_names() == ["n9"] and again.path == "/srv/default_data_pvc-1234"
    assert again.spec.mount_options == ["noatime"] and again.spec.persistent_volume_reclaim_policy == "Retain"
    assert local_path(a_class("x"), pvc, "pv") == "/var/lib/kray/local-path/default_data_pv"
