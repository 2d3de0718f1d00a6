"""The Deployment controller (with the ReplicaSet controller and the kubelet stand-in) on the
in-memory cluster: rollout invariants checked at every step, Recreate, scale, pause, rollback,
history cleanup, conditions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from rsdeploy_harness import NS, Cluster, deployment

from kray.actors.controllers.deploymentutil import REVISION, scaled_value
from kray.actors.controllers.podutil import POD_TEMPLATE_HASH, is_ready
from kray.cli.rollout import rollback_target, status_message
from kray.crds.apps import Deployment, ReplicaSet
from kray.crds.validation import FieldValueError


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = await Cluster(ready_delay=1.0).start()
    yield c
    await c.stop()


async def replicasets(c: Cluster, name: str) -> list[ReplicaSet]:
    rss = (await c.client.list(ReplicaSet, NS)).items
    return sorted(
        (r for r in rss if r.name.startswith(f"{name}-")), key=lambda r: int(r.metadata.annotations[REVISION])
    )  # type: ignore[index]


async def complete(c: Cluster, name: str, image: str | None = None) -> bool:
    d = await c.deploy(name)
    s = d.status
    if s is None or s.observed_generation != d.metadata.generation:
        return False
    r = d.spec.replicas
    pods = await c.pods()
    done = (s.updated_replicas, s.replicas, s.available_replicas) == (r, r, r) and len(pods) == r
    return done and (image is None or all(p.spec.containers[0].image == image for p in pods))


def set_image(image: str) -> dict:
    return {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}


async def test_create_names_labels_revision_and_conditions(cluster: Cluster) -> None:
    await cluster.client.create(deployment("web", 4))
    await cluster.run_until(lambda: complete(cluster, "web"))
    (rs,) = await replicasets(cluster, "web")
    h = rs.metadata.labels[POD_TEMPLATE_HASH]  # type: ignore[index]
    assert rs.name == f"web-{h}"
    assert rs.spec.selector.match_labels == {"app": "web", POD_TEMPLATE_HASH: h}
    assert rs.spec.template.metadata.labels[POD_TEMPLATE_HASH] == h  # type: ignore[union-attr,index]
    assert rs.metadata.annotations[REVISION] == "1"  # type: ignore[index]
    d = await cluster.deploy("web")
    assert d.metadata.annotations[REVISION] == "1"  # type: ignore[index]
    conds = {c.type: (c.status, c.reason) for c in d.status.conditions or []}  # type: ignore[union-attr]
    assert conds == {
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("True", "NewReplicaSetAvailable"),
    }


@pytest.mark.parametrize(("surge", "unavailable"), [(3, 2), ("25%", "25%"), (0, 1), (1, 0)])
async def test_rolling_update_invariants_hold_at_every_step(
    cluster: Cluster, surge: object, unavailable: object
) -> None:
    replicas = 10
    d = deployment("web", replicas, strategy={"rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
    await cluster.client.create(d)
    await cluster.run_until(lambda: complete(cluster, "web"))
    max_surge = scaled_value(surge, replicas, True)  # type: ignore[arg-type]
    max_unavailable = scaled_value(unavailable, replicas, False)  # type: ignore[arg-type]
    seen: list[tuple[int, int]] = []

    async def check() -> None:
        pods = await cluster.pods()
        ready = sum(1 for p in pods if is_ready(p))
        seen.append((len(pods), ready))
        assert len(pods) <= replicas + max_surge, seen[-5:]
        assert ready >= replicas - max_unavailable, seen[-5:]

    await cluster.client.patch(Deployment, "web", set_image("img:2"), NS)
    await cluster.run_until(lambda: complete(cluster, "web", "img:2"), each=check, ticks=400)
    rss = await replicasets(cluster, "web")
    assert [(r.metadata.annotations[REVISION], r.spec.replicas) for r in rss] == [("1", 0), ("2", replicas)]  # type: ignore[index]
    assert max(total for total, _ in seen) > replicas or max_surge == 0  # it did surge
    assert (await cluster.deploy("web")).metadata.annotations[REVISION] == "2"  # type: ignore[index]


async def test_recreate_never_runs_old_and_new_together(cluster: Cluster) -> None:
    await cluster.client.create(deployment("web", 5, strategy={"type": "Recreate"}))
    await cluster.run_until(lambda: complete(cluster, "web"))

    async def check() -> None:
        images = {p.spec.containers[0].image for p in await cluster.pods(active_only=False)}
        assert len(images) <= 1, images

    await cluster.client.patch(
        Deployment, "web", {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "img:2"}]}}}}, NS
    )
    await cluster.run_until(lambda: complete(cluster, "web", "img:2"), each=check)


async def test_scale_pause_and_resume(cluster: Cluster) -> None:
    await cluster.client.create(deployment("web", 4))
    await cluster.run_until(lambda: complete(cluster, "web"))
    await cluster.client.patch(Deployment, "web", {"spec": {"replicas": 7}}, NS)
    await cluster.run_until(lambda: complete(cluster, "web"))
    assert len(await cluster.pods()) == 7

    await cluster.client.patch(Deployment, "web", {"spec": {"paused": True}}, NS)
    await cluster.client.patch(Deployment, "web", set_image("img:2"), NS)
    await cluster.client.patch(Deployment, "web", {"spec": {"replicas": 3}}, NS)
    await cluster.run_until(lambda: paused_at(cluster, 3))  # paused: scaled, not rolled
    assert len(await replicasets(cluster, "web")) == 1
    progressing = next(c for c in (await cluster.deploy("web")).status.conditions or [] if c.type == "Progressing")  # type: ignore[union-attr]
    assert progressing.reason == "DeploymentPaused"

    await cluster.client.patch(Deployment, "web", {"spec": {"paused": False}}, NS)
    await cluster.run_until(lambda: complete(cluster, "web", "img:2"))


async def paused_at(c: Cluster, replicas: int) -> bool:
    d = await c.deploy("web")
    pods = await c.pods()
    images = {p.spec.containers[0].image for p in pods}
    return bool(d.status and d.status.available_replicas == replicas and len(pods) == replicas and images == {"img:1"})


async def test_scale_mid_rollout_is_proportional(cluster: Cluster) -> None:
    strategy = {"rollingUpdate": {"maxSurge": 2, "maxUnavailable": 0}}
    await cluster.client.create(deployment("web", 10, strategy=strategy))
    await cluster.run_until(lambda: complete(cluster, "web"))
    cluster.kubelet.ready_delay = 1e9  # new pods never become ready: the rollout stalls midway
    await cluster.client.patch(Deployment, "web", set_image("img:2"), NS)

    async def stalled() -> bool:
        rss = await replicasets(cluster, "web")
        return len(rss) == 2 and rss[1].spec.replicas == 2

    await cluster.run_until(stalled)
    await cluster.client.patch(Deployment, "web", {"spec": {"replicas": 20}}, NS)

    async def scaled() -> bool:
        return sum(r.spec.replicas for r in await replicasets(cluster, "web")) == 22

    await cluster.run_until(scaled)
    old, new = await replicasets(cluster, "web")
    assert (old.spec.replicas, new.spec.replicas) == (18, 4)  # 10:2 spread over the 10 added


async def test_rollback_reuses_the_old_replicaset_with_a_new_revision(cluster: Cluster) -> None:
    await cluster.client.create(deployment("web", 3))
    await cluster.run_until(lambda: complete(cluster, "web"))
    await cluster.client.patch(Deployment, "web", set_image("img:2"), NS)
    await cluster.run_until(lambda: complete(cluster, "web", "img:2"))
    first, _ = await replicasets(cluster, "web")

    d = await cluster.deploy("web")
    rev, d.spec.template = rollback_target(d, await replicasets(cluster, "web"), None)
    assert rev == 1
    await cluster.client.update(d)
    await cluster.run_until(lambda: complete(cluster, "web", "img:1"))
    rss = await replicasets(cluster, "web")
    assert len(rss) == 2  # no third ReplicaSet: the first one came back
    assert rss[-1].name == first.name and rss[-1].metadata.annotations[REVISION] == "3"  # type: ignore[index]
    assert (await cluster.deploy("web")).metadata.annotations[REVISION] == "3"  # type: ignore[index]
    with pytest.raises(ValueError, match="revision 9 not found"):
        rollback_target(await cluster.deploy("web"), rss, 9)


async def test_revision_history_limit_cleans_up(cluster: Cluster) -> None:
    await cluster.client.create(deployment("web", 2, revisionHistoryLimit=1))
    for image in ("img:1", "img:2", "img:3", "img:4"):
        await cluster.client.patch(Deployment, "web", set_image(image), NS)
        await cluster.run_until(lambda image=image: complete(cluster, "web", image))  # type: ignore[misc]
    await cluster.run_until(lambda: _rs_count(cluster, 2))
    rss = await replicasets(cluster, "web")
    assert [r.metadata.annotations[REVISION] for r in rss] == ["3", "4"]  # type: ignore[index]


async def _rs_count(c: Cluster, n: int) -> bool:
    return len(await replicasets(c, "web")) == n


def test_validation() -> None:
    with pytest.raises(ValueError, match="may not be 0"):
        deployment("web", 1, strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}})
    with pytest.raises(ValueError, match="percent"):
        deployment("web", 1, strategy={"rollingUpdate": {"maxSurge": "5"}})
    with pytest.raises(ValueError):
        Deployment.model_validate(
            {
                "metadata": {"name": "x"},
                "spec": {
                    "selector": {"matchLabels": {"a": "b"}},
                    "template": {"spec": {"containers": [{"name": "c"}]}},
                },
            }
        )
    assert issubclass(FieldValueError, ValueError)


async def test_rollout_status_messages(cluster: Cluster) -> None:
    await cluster.client.create(deployment("web", 3))
    messages: list[str] = []

    async def done() -> bool:
        msg, finished = status_message(await cluster.deploy("web"))
        if not messages or messages[-1] != msg:
            messages.append(msg)
        return finished

    await cluster.run_until(done)
    assert messages[-1] == 'deployment "web" successfully rolled out'
    assert any("of 3 updated replicas are available..." in m for m in messages), messages
