"""The StatefulSet controller on the in-memory cluster (API server over MemoryKV, real
resourceVersions, graceful pod deletion, status subresource). No kubelet: the tests mark pods
Running+Ready and finish graceful deletions themselves, so every wait is observable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from memcluster import MemoryCluster

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.controllers.statefulset import build_statefulset_controller
from kray.actors.controllers.statefulset_pods import parent_and_ordinal
from kray.client import NotFound
from kray.client.errors import Invalid
from kray.crds import Pod
from kray.crds.apps_statefulset import POD_INDEX_LABEL, POD_NAME_LABEL, REVISION_LABEL, StatefulSet
from kray.crds.core import Event
from kray.crds.core.pod import PodStatus
from kray.crds.core.storage import PersistentVolumeClaim
from kray.crds.core.volume import Volume
from kray.crds.meta import Condition

NS = "default"
CLAIM = {
    "metadata": {"name": "data"},
    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
}


class Env(MemoryCluster):
    def __init__(self) -> None:
        super().__init__(lambda manager: build_statefulset_controller(manager, workers=1))

    async def start(self) -> Env:
        await self.start_control_plane()
        return self

    async def step(self, rounds: int = 4) -> None:
        for _ in range(rounds):
            for _ in range(4):
                await asyncio.sleep(0.002)
            await self.manager.step()
            await self.clock.advance_and_settle(1.0)

    # ---- the cluster, live ----

    async def pods(self, include_terminating: bool = False) -> dict[str, Pod]:
        items = (await self.client.list(Pod, NS)).items
        return {p.name: p for p in items if include_terminating or p.metadata.deletion_timestamp is None}

    async def terminating(self) -> set[str]:
        return {n for n, p in (await self.pods(True)).items() if p.metadata.deletion_timestamp is not None}

    async def claims(self) -> dict[str, PersistentVolumeClaim]:
        return {c.name: c for c in (await self.client.list(PersistentVolumeClaim, NS)).items}

    async def sts(self, name: str = "web") -> StatefulSet:
        return await self.client.get(StatefulSet, name, NS)

    async def mark_ready(self, *names: str) -> None:
        """What a scheduler and kubelet would do: bind, then report Running and Ready."""
        for name in names:
            pod = await self.client.patch(Pod, name, {"spec": {"nodeName": "node-a"}}, NS)
            pod.status = PodStatus(
                phase="Running",
                pod_ip="10.0.0.1",
                conditions=[Condition(type="Ready", status="True", last_transition_time=self.clock.now())],
            )
            await self.client.update_status(pod)

    async def fail(self, name: str) -> None:
        pod = await self.client.get(Pod, name, NS)
        pod.status = PodStatus(phase="Failed")
        await self.client.update_status(pod)

    async def finish_deletions(self) -> None:
        """The kubelet's final DELETE once containers have stopped."""
        for name in await self.terminating():
            try:
                await self.client.delete(Pod, name, NS, grace_period_seconds=0)
            except NotFound:
                pass

    async def bring_up(self, *names: str) -> None:
        """Step and mark ready until every named pod is Running+Ready (one ordinal at a time)."""
        for name in names:
            await self.step()
            assert name in await self.pods(), f"{name} was not created"
            await self.mark_ready(name)
        await self.step()

    async def events(self) -> list[str]:
        return [e.message or "" for e in (await self.client.list(Event, NS)).items]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    e = await Env().start()
    yield e
    await e.stop()


def statefulset(name: str = "web", replicas: int = 3, image: str = "img:1", **spec: Any) -> StatefulSet:
    labels = {"app": name}
    body: dict[str, Any] = {
        "replicas": replicas,
        "serviceName": name,
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": image}]}},
        **spec,
    }
    return StatefulSet.model_validate({"metadata": {"name": name, "namespace": NS}, "spec": body})


async def test_ordered_creation_waits_for_readiness(env: Env) -> None:
    sts = await env.client.create(statefulset(replicas=3))
    await env.step(6)
    assert set(await env.pods()) == {"web-0"}  # web-1 waits for web-0 to be Running and Ready
    pod = (await env.pods())["web-0"]
    labels = pod.metadata.labels or {}
    assert labels["app"] == "web" and labels[POD_NAME_LABEL] == "web-0" and labels[POD_INDEX_LABEL] == "0"
    assert (pod.spec.hostname, pod.spec.subdomain) == ("web-0", "web")
    ref = (pod.metadata.owner_references or [])[0]
    assert (ref.kind, ref.name, ref.uid, ref.controller) == ("StatefulSet", "web", sts.metadata.uid, True)

    await env.mark_ready("web-0")
    await env.step()
    assert set(await env.pods()) == {"web-0", "web-1"}
    await env.step(4)
    assert set(await env.pods()) == {"web-0", "web-1"}
    await env.bring_up("web-1", "web-2")
    assert set(await env.pods()) == {"web-0", "web-1", "web-2"}

    cur = await env.sts()
    assert cur.status is not None
    assert (cur.status.replicas, cur.status.ready_replicas, cur.status.available_replicas) == (3, 3, 3)
    assert (cur.status.current_replicas, cur.status.updated_replicas, cur.status.observed_generation) == (3, 3, 1)
    assert cur.status.current_revision == cur.status.update_revision
    assert labels[REVISION_LABEL] == cur.status.update_revision and cur.status.update_revision.startswith("web-")
    assert "create Pod web-0 in StatefulSet web successful" in await env.events()


async def test_parallel_creates_all_at_once(env: Env) -> None:
    await env.client.create(statefulset(replicas=4, podManagementPolicy="Parallel"))
    await env.step(2)
    assert set(await env.pods()) == {"web-0", "web-1", "web-2", "web-3"}
    assert (await env.sts()).status.ready_replicas == 0  # type: ignore[union-attr]


async def test_claims_per_ordinal_are_made_first_and_mounted(env: Env) -> None:
    sts = statefulset(replicas=2, podManagementPolicy="Parallel", volumeClaimTemplates=[CLAIM])
    tmpl = sts.spec.template.spec
    tmpl.volumes = [
        Volume.model_validate({"name": "data", "emptyDir": {}}),
        Volume.model_validate({"name": "cache", "emptyDir": {}}),
    ]
    await env.client.create(sts)
    await env.step(2)
    claims = await env.claims()
    assert set(claims) == {"data-web-0", "data-web-1"}
    assert claims["data-web-0"].metadata.labels == {"app": "web"}
    assert not claims["data-web-0"].metadata.owner_references  # Retain: not owned by the set
    assert str(claims["data-web-0"].spec.storage()) == "1Gi"
    for ordinal in (0, 1):
        pod = (await env.pods())[f"web-{ordinal}"]
        vols = {v.name: v for v in pod.spec.volumes or ()}
        assert set(vols) == {"data", "cache"}
        data = vols["data"].persistent_volume_claim
        assert data is not None and data.claim_name == f"data-web-{ordinal}" and vols["data"].empty_dir is None
        assert vols["cache"].empty_dir is not None
    assert "create Claim data-web-0 Pod web-0 in StatefulSet web success" in await env.events()


async def test_scale_down_highest_first_one_at_a_time_and_claims_retained(env: Env) -> None:
    await env.client.create(statefulset(replicas=3, volumeClaimTemplates=[CLAIM]))
    await env.bring_up("web-0", "web-1", "web-2")
    await env.client.patch(StatefulSet, "web", {"spec": {"replicas": 1}}, NS)
    await env.step()
    assert await env.terminating() == {"web-2"}
    await env.step(4)
    assert await env.terminating() == {"web-2"}  # web-1 waits until web-2 is gone
    await env.finish_deletions()
    await env.step()
    assert await env.terminating() == {"web-1"}
    await env.finish_deletions()
    await env.step()
    assert set(await env.pods(True)) == {"web-0"}
    assert set(await env.claims()) == {"data-web-0", "data-web-1", "data-web-2"}  # Retain
    assert "delete Pod web-2 in StatefulSet web successful" in await env.events()
    status = (await env.sts()).status
    assert status is not None and (status.replicas, status.ready_replicas) == (1, 1)


async def test_retention_delete_when_scaled_and_owner_when_deleted(env: Env) -> None:
    policy = {"whenScaled": "Delete", "whenDeleted": "Delete"}
    sts = await env.client.create(
        statefulset(
            replicas=3,
            podManagementPolicy="Parallel",
            volumeClaimTemplates=[CLAIM],
            persistentVolumeClaimRetentionPolicy=policy,
        )
    )
    await env.step()
    await env.mark_ready("web-0", "web-1", "web-2")
    await env.step()
    claims = await env.claims()
    assert set(claims) == {"data-web-0", "data-web-1", "data-web-2"}
    refs = claims["data-web-0"].metadata.owner_references or []
    assert [(r.kind, r.uid, bool(r.controller)) for r in refs] == [("StatefulSet", sts.metadata.uid, False)]

    await env.client.patch(StatefulSet, "web", {"spec": {"replicas": 1}}, NS)
    await env.step()
    assert set(await env.claims()) == {"data-web-0", "data-web-1", "data-web-2"}  # pods not gone yet
    await env.finish_deletions()
    await env.step()
    assert set(await env.claims()) == {"data-web-0"}

    # Switching whenDeleted back to Retain releases the remaining claim.
    await env.client.patch(
        StatefulSet, "web", {"spec": {"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain"}}}, NS
    )
    await env.step()
    assert not (await env.claims())["data-web-0"].metadata.owner_references


async def test_deleted_and_failed_pods_are_recreated_with_the_same_name(env: Env) -> None:
    await env.client.create(statefulset(replicas=2))
    await env.bring_up("web-0", "web-1")
    old = (await env.pods())["web-1"]
    await env.client.delete(Pod, "web-1", NS)
    await env.step()
    assert "web-1" in await env.terminating()  # not recreated while the name is taken
    await env.finish_deletions()
    await env.step()
    new = (await env.pods())["web-1"]
    assert new.metadata.uid != old.metadata.uid and (new.metadata.labels or {})[POD_NAME_LABEL] == "web-1"

    first = (await env.pods())["web-0"]
    await env.fail("web-0")
    await env.step()
    again = (await env.pods())["web-0"]
    assert again.metadata.uid != first.metadata.uid and again.status is not None and again.status.phase != "Failed"


async def test_rolling_update_highest_first_respects_partition(env: Env) -> None:
    await env.client.create(statefulset(replicas=3, updateStrategy={"rollingUpdate": {"partition": 1}}))
    await env.bring_up("web-0", "web-1", "web-2")
    old_rev = (await env.sts()).status.update_revision  # type: ignore[union-attr]
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "img:2"}]}}}}
    await env.client.patch(StatefulSet, "web", patch, NS)
    await env.step()
    assert await env.terminating() == {"web-2"}
    await env.finish_deletions()
    await env.step()
    pods = await env.pods()
    new_rev = (await env.sts()).status.update_revision  # type: ignore[union-attr]
    assert new_rev != old_rev
    assert (pods["web-2"].metadata.labels or {})[REVISION_LABEL] == new_rev
    assert pods["web-2"].spec.containers[0].image == "img:2"
    await env.step(3)
    assert not await env.terminating()  # web-1 waits for the new web-2 to be Ready
    await env.mark_ready("web-2")
    await env.step()
    assert await env.terminating() == {"web-1"}
    await env.finish_deletions()
    await env.step()
    await env.mark_ready("web-1")
    await env.step(4)
    pods = await env.pods()
    assert not await env.terminating()
    assert [(pods[f"web-{i}"].metadata.labels or {})[REVISION_LABEL] for i in range(3)] == [old_rev, new_rev, new_rev]
    status = (await env.sts()).status
    assert status is not None
    assert (status.current_revision, status.current_replicas, status.updated_replicas) == (old_rev, 1, 2)

    await env.client.patch(StatefulSet, "web", {"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}, NS)
    await env.step()
    assert await env.terminating() == {"web-0"}
    await env.finish_deletions()
    await env.step()
    await env.mark_ready("web-0")
    await env.step()
    status = (await env.sts()).status
    assert status is not None
    assert (status.current_revision, status.current_replicas, status.updated_replicas) == (new_rev, 3, 3)


async def test_on_delete_only_updates_status(env: Env) -> None:
    await env.client.create(statefulset(replicas=2, updateStrategy={"type": "OnDelete"}))
    await env.bring_up("web-0", "web-1")
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "img:2"}]}}}}
    await env.client.patch(StatefulSet, "web", patch, NS)
    await env.step(4)
    assert not await env.terminating()
    status = (await env.sts()).status
    assert status is not None and status.update_revision != status.current_revision
    assert (status.updated_replicas, status.current_replicas, status.observed_generation) == (0, 2, 2)
    await env.client.delete(Pod, "web-1", NS)  # the user deletes: recreated at the new revision
    await env.finish_deletions()
    await env.step()
    assert (await env.pods())["web-1"].spec.containers[0].image == "img:2"


async def test_selector_must_match_template_and_table_columns(env: Env) -> None:
    bad = statefulset().to_dict()
    bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(Invalid) as exc:
        await env.client.create_raw(bad)
    assert "spec.template.metadata.labels" in str(exc.value)
    bad["spec"]["selector"] = {"matchLabels": {"app": "web"}}
    bad["spec"]["replicas"] = -1
    with pytest.raises(Invalid, match=r"spec\.replicas"):
        await env.client.create_raw(bad)
    with pytest.raises(NotFound):
        await env.client.get(StatefulSet, "web", NS)


async def test_restart_rebuilds_from_the_store(env: Env) -> None:
    await env.client.create(statefulset(replicas=2))
    await env.bring_up("web-0", "web-1")
    await env.manager.stop()
    # While no controller runs: a pod goes away and the set grows.
    await env.client.delete(Pod, "web-1", NS, grace_period_seconds=0)
    await env.client.patch(StatefulSet, "web", {"spec": {"replicas": 3}}, NS)
    env.manager = env._manager()
    assert await env.manager.start_informers(5)
    await env.step()
    assert set(await env.pods()) == {"web-0", "web-1"}  # recreated; web-2 waits for web-1
    await env.mark_ready("web-1")
    await env.bring_up("web-2")
    assert set(await env.pods()) == {"web-0", "web-1", "web-2"}
    assert (await env.sts()).status.ready_replicas == 3  # type: ignore[union-attr]


def test_pod_name_parsing() -> None:
    assert parent_and_ordinal("web-12") == ("web", 12)
    assert parent_and_ordinal("my-db-0") == ("my-db", 0)
    assert parent_and_ordinal("web") is None and parent_and_ordinal("web-x") is None


def test_new_pod_mounts_its_claim_template_volume() -> None:
    """The template's container mounts the claim template by name: the pod gets the claim."""
    from kray.actors.controllers.statefulset_pods import new_pod
    from kray.crds.apps_statefulset import StatefulSet

    sts = StatefulSet.model_validate(
        {
            "metadata": {"name": "db", "namespace": "ns", "uid": "u-1"},
            "spec": {
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "c", "image": "i",
                                             "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]},
                },
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                    "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
            },
        }
    )  # fmt: skip
    pod = new_pod(sts, 2, "db-abc")
    [volume] = pod.spec.volumes or []
    assert volume.name == "data" and volume.persistent_volume_claim is not None
    assert volume.persistent_volume_claim.claim_name == "data-db-2"
    assert (pod.spec.hostname, pod.spec.subdomain) == ("db-2", "db")
