"""The DaemonSet controller on the in-memory cluster (ApiServer over MemoryKV, FakeClock), driven
by step(): one pod per eligible node, node filtering (selector, affinity, taints, default
tolerations), node churn, duplicates, failed pods with back-off, rolling updates within
maxUnavailable/maxSurge, OnDelete, status counts, and a controller restart."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from memcluster import NOW, MemoryCluster

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.controllers import daemonset_util
from kray.actors.controllers.daemonset import build_daemonset_controller
from kray.actors.controllers.podutil import is_ready
from kray.actors.controllers.teststandin import KubeletStandIn
from kray.actors.framework import FakeClock, Manager, Request, StoreListWatcher
from kray.client.errors import Conflict, NotFound
from kray.crds import Event, Node, Pod
from kray.crds.apps_daemonset import CONTROLLER_REVISION_HASH, POD_TEMPLATE_GENERATION, DaemonSet

NS = "default"


class Cluster(MemoryCluster):
    """API server + store informers + the DaemonSet controller + a kubelet stand-in that marks
    pods Ready and finishes deletions; ``bind`` plays the scheduler for the pinned node."""

    def __init__(self, nodes: int = 3, ready_delay: float = 0.0) -> None:
        super().__init__(self._wire)
        self.node_names = [f"node-{i}" for i in range(nodes)]
        self.ready_delay = ready_delay
        self.kubelet = KubeletStandIn(
            StoreListWatcher(self.store),
            self.client,
            nodes=self.node_names,
            bind=False,
            ready_delay=ready_delay,
            clock=self.clock,
        )
        self.binding = True

    def _wire(self, manager: Manager) -> None:
        self.controller = build_daemonset_controller(manager)

    async def start(self) -> Cluster:
        await self.api.start()
        for name in self.node_names:
            await self.client.create(node(name))
        assert await self.manager.start_informers(5)
        assert await self.kubelet.start(5)
        return self

    async def stop(self) -> None:
        await self.kubelet.stop()
        await super().stop()

    async def bind(self) -> None:
        """The scheduler's part: an unbound daemon pod goes to the node its affinity pins."""
        for pod in await self.pods():
            target = daemonset_util.target_node_name(pod)
            if pod.spec.node_name or not target:
                continue
            patch = {"metadata": {"resourceVersion": pod.metadata.resource_version}, "spec": {"nodeName": target}}
            try:
                await self.client.patch(Pod, pod.name, patch, NS)
            except (Conflict, NotFound):
                pass

    async def tick(self, seconds: float = 0.5) -> None:
        await self.settle()
        await self.manager.step()
        await self.settle()
        if self.binding:
            await self.bind()
            await self.settle()
        await self.kubelet.step()
        await self.clock.advance_and_settle(seconds)

    async def run_until(self, cond: Callable[[], Awaitable[bool]], ticks: int = 60, seconds: float = 0.5) -> None:
        for _ in range(ticks):
            if await cond():
                return
            await self.tick(seconds)
        raise AssertionError("the cluster did not converge")

    async def pods(self, active_only: bool = True) -> list[Pod]:
        pods = (await self.client.list(Pod, NS)).items
        return [p for p in pods if not active_only or p.metadata.deletion_timestamp is None]

    async def by_node(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for p in await self.pods():
            out.setdefault(daemonset_util.target_node_name(p) or "", []).append(p.name)
        return {k: sorted(v) for k, v in sorted(out.items())}

    async def ds(self, name: str = "agent") -> DaemonSet:
        return await self.client.get(DaemonSet, name, NS)

    async def add_node(self, name: str, **fields: Any) -> None:
        await self.client.create(node(name, **fields))
        self.kubelet.nodes.append(name)


def node(name: str, labels: dict[str, str] | None = None, taints: list[dict[str, Any]] | None = None) -> Node:
    return Node.model_validate(
        {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
         "spec": {"taints": taints} if taints else {}}
    )  # fmt: skip


def daemonset(
    name: str = "agent", image: str = "agent:1", pod_spec: dict[str, Any] | None = None, **spec: Any
) -> DaemonSet:
    labels = {"app": name}
    return DaemonSet.model_validate(
        {
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "c", "image": image}], **(pod_spec or {})},
                },
                **spec,
            },
        }
    )


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = await Cluster().start()
    yield c
    await c.stop()


def status_is(cluster: Cluster, **counts: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        s = (await cluster.ds()).status
        return s is not None and all(getattr(s, k) == v for k, v in counts.items())

    return check


# ---- one pod per node ----


async def test_one_pod_per_node_pinned_owned_and_labelled(cluster: Cluster) -> None:
    ds = await cluster.client.create(daemonset())
    await cluster.run_until(status_is(cluster, desired_number_scheduled=3, number_ready=3, number_available=3))
    pods = await cluster.pods()
    assert len(pods) == 3
    assert sorted(p.spec.node_name or "" for p in pods) == cluster.node_names
    for p in pods:
        assert p.name.startswith("agent-") and len(p.name) == len("agent-") + 5
        ref = p.metadata.owner_references[0]  # type: ignore[index]
        # What `kray drain` recognises: kind DaemonSet, apps/v1, controller=true.
        assert (ref.kind, ref.api_version, ref.name, ref.uid, ref.controller) == (
            "DaemonSet", "apps/v1", "agent", ds.metadata.uid, True,
        )  # fmt: skip
        labels = p.metadata.labels or {}
        assert labels["app"] == "agent" and labels[POD_TEMPLATE_GENERATION] == "1"
        assert labels[CONTROLLER_REVISION_HASH]
        terms = p.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms  # type: ignore[union-attr]
        assert [t.to_dict() for t in terms] == [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [p.spec.node_name]}]}
        ]
        keys = {(t.key, t.effect) for t in p.spec.tolerations or []}
        assert ("node.kubernetes.io/not-ready", "NoExecute") in keys
        assert ("node.kubernetes.io/unschedulable", "NoSchedule") in keys
        assert ("node.kubernetes.io/network-unavailable", "NoSchedule") not in keys  # not hostNetwork
    s = (await cluster.ds()).status
    assert s is not None
    assert (s.current_number_scheduled, s.updated_number_scheduled, s.number_misscheduled, s.number_unavailable) == (
        3, 3, 0, 0,
    )  # fmt: skip
    assert s.observed_generation == 1
    reasons = [e.reason for e in (await cluster.client.list(Event, NS)).items]
    assert reasons.count("SuccessfulCreate") == 3
    # Steady state: more passes change nothing.
    for _ in range(3):
        cluster.controller.enqueue(Request(NS, "agent"))
        await cluster.tick()
    assert len(await cluster.pods(active_only=False)) == 3


async def test_node_selector_and_required_affinity_filter_nodes() -> None:
    cluster = await Cluster(nodes=0).start()
    try:
        await cluster.add_node("gpu-a", labels={"gpu": "true", "zone": "a"})
        await cluster.add_node("gpu-b", labels={"gpu": "true", "zone": "b"})
        await cluster.add_node("cpu-a", labels={"zone": "a"})
        affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}  # fmt: skip
        await cluster.client.create(daemonset(pod_spec={"nodeSelector": {"gpu": "true"}, "affinity": affinity}))
        await cluster.run_until(status_is(cluster, desired_number_scheduled=1, number_ready=1))
        assert list(await cluster.by_node()) == ["gpu-a"]
    finally:
        await cluster.stop()


async def test_untolerated_taints_exclude_while_default_tolerations_admit(cluster: Cluster) -> None:
    await cluster.add_node("dedicated", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    await cluster.add_node("cordoned", taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}])
    not_ready = "node.kubernetes.io/not-ready"
    await cluster.add_node(
        "notready", taints=[{"key": not_ready, "effect": "NoExecute"}, {"key": not_ready, "effect": "NoSchedule"}]
    )
    # not-ready NoSchedule is not a default toleration: a node with both gets no new daemon pod.
    await cluster.add_node("unreach", taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}])
    await cluster.client.create(daemonset())
    await cluster.run_until(status_is(cluster, desired_number_scheduled=5, current_number_scheduled=5))
    assert set(await cluster.by_node()) == {*cluster.node_names, "cordoned", "unreach"}

    # A toleration in the template admits the dedicated node too.
    tolerations = [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]
    await cluster.client.patch(DaemonSet, "agent", {"spec": {"template": {"spec": {"tolerations": tolerations}}}}, NS)
    await cluster.run_until(status_is(cluster, desired_number_scheduled=6, updated_number_scheduled=6, number_ready=6))
    assert "dedicated" in await cluster.by_node()


async def test_node_added_removed_and_relabelled(cluster: Cluster) -> None:
    await cluster.client.create(daemonset(pod_spec={"nodeSelector": {"role": "edge"}}))
    await cluster.run_until(status_is(cluster, desired_number_scheduled=0))
    assert await cluster.pods() == []

    await cluster.add_node("edge-1", labels={"role": "edge"})
    await cluster.run_until(status_is(cluster, desired_number_scheduled=1, number_ready=1))
    assert list(await cluster.by_node()) == ["edge-1"]

    # Labelling an existing node in brings a pod; labelling it out (misscheduled) takes it away.
    await cluster.client.patch(Node, "node-0", {"metadata": {"labels": {"role": "edge"}}}, None)
    await cluster.run_until(status_is(cluster, desired_number_scheduled=2, number_ready=2))
    await cluster.client.patch(Node, "edge-1", {"metadata": {"labels": {"role": None}}}, None)

    async def only_node0() -> bool:
        return (
            list(await cluster.by_node()) == ["node-0"]
            and await status_is(cluster, desired_number_scheduled=1, number_misscheduled=0)()
        )

    await cluster.run_until(only_node0)
    assert "SuccessfulDelete" in [e.reason for e in (await cluster.client.list(Event, NS)).items]

    # A node that goes away: its unscheduled daemon pod (nothing else would remove it) is deleted.
    cluster.binding = False
    await cluster.add_node("edge-2", labels={"role": "edge"})
    await cluster.run_until(lambda: _has_node(cluster, "edge-2"))
    await cluster.client.delete(Node, "edge-2")
    await cluster.run_until(lambda: _lacks_node(cluster, "edge-2"))


async def _has_node(cluster: Cluster, name: str) -> bool:
    return name in await cluster.by_node()


async def _lacks_node(cluster: Cluster, name: str) -> bool:
    return name not in await cluster.by_node()


async def test_duplicate_pods_trimmed_keeping_the_oldest(cluster: Cluster) -> None:
    ds = await cluster.client.create(daemonset())
    await cluster.run_until(status_is(cluster, number_ready=3))
    keep = (await cluster.by_node())["node-1"][0]
    # Two more pods for node-1 appear later (say a controller that lost its expectations).
    for _ in range(2):
        cluster.clock.advance(5)
        await cluster.client.create(daemonset_util.new_daemon_pod(ds, "node-1", "whatever"))
    await cluster.settle()
    assert len((await cluster.by_node())["node-1"]) == 3

    async def one_each() -> bool:
        return all(len(v) == 1 for v in (await cluster.by_node()).values())

    await cluster.run_until(one_each)
    assert (await cluster.by_node())["node-1"] == [keep]


async def test_failed_pod_is_replaced_with_back_off(cluster: Cluster) -> None:
    await cluster.client.create(daemonset())
    await cluster.run_until(status_is(cluster, number_ready=3))

    async def fail_on_node2() -> str:
        pod = next(p for p in await cluster.pods() if p.spec.node_name == "node-2")
        await cluster.client.patch(Pod, pod.name, {"status": {"phase": "Failed"}}, NS, subresource="status")
        return pod.name

    async def without_time(rounds: int = 3) -> None:
        for _ in range(rounds):  # controller, scheduler and kubelet, with the clock standing still
            await cluster.settle()
            await cluster.manager.step()
            await cluster.settle()
            await cluster.bind()
            await cluster.settle()
            await cluster.kubelet.step()

    first = await fail_on_node2()
    await without_time()
    second = (await cluster.by_node())["node-2"]
    assert second != [first] and len(second) == 1  # deleted and replaced at once
    assert "FailedDaemonPod" in [e.reason for e in (await cluster.client.list(Event, NS)).items]

    # The replacement fails too, within the back-off (1s): it is left alone until that passes.
    await fail_on_node2()
    await without_time()
    assert (await cluster.by_node())["node-2"] == second
    await cluster.clock.advance_and_settle(1.1)
    await without_time()
    third = (await cluster.by_node())["node-2"]
    assert third != second and len(third) == 1
    await cluster.run_until(status_is(cluster, number_ready=3))


async def test_rolling_update_respects_max_unavailable() -> None:
    cluster = await Cluster(nodes=5, ready_delay=2.0).start()
    try:
        spec = {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}}
        await cluster.client.create(daemonset(**spec))
        await cluster.run_until(status_is(cluster, number_available=5))

        await cluster.client.patch(DaemonSet, "agent", {"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "agent:2"}]}}}}, NS)  # fmt: skip
        worst = 5
        for _ in range(80):
            await cluster.tick()
            pods = await cluster.pods()
            ready = sum(1 for p in pods if is_ready(p))
            worst = min(worst, ready)
            if len(pods) == 5 and ready == 5 and all(p.spec.containers[0].image == "agent:2" for p in pods):
                break
        else:
            raise AssertionError("the rollout did not finish")
        assert worst == 3  # never below desired - maxUnavailable, and it did use the room
        await cluster.run_until(
            status_is(cluster, updated_number_scheduled=5, number_available=5, observed_generation=2)
        )
    finally:
        await cluster.stop()


async def test_rolling_update_with_surge_creates_before_deleting() -> None:
    cluster = await Cluster(nodes=3, ready_delay=2.0).start()
    try:
        spec = {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}
        await cluster.client.create(daemonset(**spec))
        await cluster.run_until(status_is(cluster, number_available=3))
        await cluster.client.patch(
            DaemonSet, "agent", {"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}}, NS
        )
        worst, most = 3, 3
        for _ in range(80):
            await cluster.tick()
            pods = await cluster.pods()
            worst = min(worst, sum(1 for p in pods if is_ready(p)))
            most = max(most, len(pods))
            if await status_is(cluster, updated_number_scheduled=3, number_available=3)() and len(pods) == 3:
                break
        else:
            raise AssertionError("the surge rollout did not finish")
        assert worst == 3  # never a node without a ready daemon
        assert most == 4  # one surge pod at a time
    finally:
        await cluster.stop()


async def test_on_delete_only_reports(cluster: Cluster) -> None:
    await cluster.client.create(daemonset(updateStrategy={"type": "OnDelete"}))
    await cluster.run_until(status_is(cluster, number_ready=3, updated_number_scheduled=3))
    before = await cluster.by_node()
    await cluster.client.patch(
        DaemonSet, "agent", {"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}}, NS
    )
    await cluster.run_until(status_is(cluster, updated_number_scheduled=0, observed_generation=2))
    for _ in range(5):
        await cluster.tick()
    assert await cluster.by_node() == before
    # Deleting a pod by hand brings the new revision on that node.
    await cluster.client.delete(Pod, before["node-0"][0], NS)
    await cluster.run_until(status_is(cluster, updated_number_scheduled=1, number_ready=3))


async def test_status_counts_misscheduled_and_min_ready() -> None:
    cluster = await Cluster(nodes=2, ready_delay=1.0).start()
    try:
        await cluster.client.create(daemonset(minReadySeconds=10))
        await cluster.run_until(status_is(cluster, number_ready=2))
        s = (await cluster.ds()).status
        assert s is not None
        assert (s.desired_number_scheduled, s.number_available, s.number_unavailable) == (2, 0, 2)
        await cluster.run_until(status_is(cluster, number_available=2, number_unavailable=0), ticks=40)
        # A NoExecute-tolerated but NoSchedule-untolerated taint: the pod may stay (not desired,
        # not misscheduled either); an untolerated NoExecute one makes it misscheduled and removed.
        await cluster.client.patch(Node, "node-1", {"spec": {"taints": [{"key": "x", "effect": "NoSchedule"}]}}, None)
        await cluster.run_until(status_is(cluster, desired_number_scheduled=1, number_misscheduled=1))
        assert "node-1" in await cluster.by_node()
        await cluster.client.patch(Node, "node-1", {"spec": {"taints": [{"key": "x", "effect": "NoExecute"}]}}, None)
        await cluster.run_until(lambda: _lacks_node(cluster, "node-1"))
        await cluster.run_until(status_is(cluster, desired_number_scheduled=1, number_misscheduled=0))
    finally:
        await cluster.stop()


async def test_controller_restart_rebuilds_from_the_store(cluster: Cluster) -> None:
    await cluster.client.create(daemonset())
    await cluster.run_until(status_is(cluster, number_ready=3))
    before = await cluster.by_node()
    await cluster.restart_controller()
    await cluster.add_node("node-9")
    await cluster.run_until(status_is(cluster, desired_number_scheduled=4, number_ready=4))
    after = await cluster.by_node()
    assert {k: v for k, v in after.items() if k != "node-9"} == before  # nothing recreated
    assert len(after["node-9"]) == 1


async def test_orphans_are_adopted_not_duplicated(cluster: Cluster) -> None:
    # A pod from a DaemonSet that was deleted with --cascade=orphan, then recreated.
    ds = await cluster.client.create(daemonset())
    await cluster.run_until(status_is(cluster, number_ready=3))
    names = await cluster.by_node()
    for p in await cluster.pods():
        await cluster.client.patch(Pod, p.name, {"metadata": {"ownerReferences": None}}, NS)
    await cluster.client.delete(DaemonSet, "agent", NS)
    await cluster.settle()
    await cluster.client.create(daemonset())
    await cluster.run_until(status_is(cluster, number_ready=3, current_number_scheduled=3))
    for _ in range(3):
        await cluster.tick()
    assert await cluster.by_node() == names
    new = await cluster.ds()
    assert new.metadata.uid != ds.metadata.uid
    assert all(p.metadata.owner_references[0].uid == new.metadata.uid for p in await cluster.pods())  # type: ignore[index]


# ---- pure helpers ----


def test_pin_replaces_required_terms_and_keeps_preferred() -> None:
    from kray.crds.core.scheduling import Affinity

    affinity = Affinity.model_validate({"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["old"]}]},
            {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}}]}})  # fmt: skip
    pinned = daemonset_util.pin_to_node(affinity, "n1")
    na = pinned.node_affinity
    assert na is not None and na.required_during_scheduling_ignored_during_execution is not None
    assert na.required_during_scheduling_ignored_during_execution.to_dict() == {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]
    }
    assert na.preferred_during_scheduling_ignored_during_execution
    required = affinity.node_affinity.required_during_scheduling_ignored_during_execution  # type: ignore[union-attr]
    assert required.node_selector_terms[0].match_fields[0].values == ["old"]  # type: ignore[union-attr,index]  # unchanged


def test_default_tolerations_replace_matching_ones() -> None:
    toleration = {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 30,
    }
    ds = daemonset(pod_spec={"hostNetwork": True, "tolerations": [toleration]})
    tolerations = daemonset_util.daemon_tolerations(ds)
    not_ready = [t for t in tolerations if t.key == "node.kubernetes.io/not-ready"]
    assert len(not_ready) == 1 and not_ready[0].toleration_seconds is None  # made infinite
    assert any(t.key == "node.kubernetes.io/network-unavailable" for t in tolerations)
    assert len(tolerations) == 7


def test_node_should_run_verdicts() -> None:
    ds = daemonset()
    assert daemonset_util.node_should_run(node("a"), ds) == (True, True)
    assert daemonset_util.node_should_run(node("a", taints=[{"key": "k", "effect": "NoSchedule"}]), ds) == (False, True)
    assert daemonset_util.node_should_run(node("a", taints=[{"key": "k", "effect": "NoExecute"}]), ds) == (False, False)
    assert daemonset_util.node_should_run(node("a", taints=[{"key": "k", "effect": "PreferNoSchedule"}]), ds) == (
        True, True,
    )  # fmt: skip
    pinned = daemonset(pod_spec={"nodeName": "b"})
    assert daemonset_util.node_should_run(node("a"), pinned) == (False, False)
    deleting = node("a")
    deleting.metadata.deletion_timestamp = NOW
    assert daemonset_util.node_should_run(deleting, ds) == (False, True)


def test_backoff_doubles_and_resets() -> None:
    clock = FakeClock()
    b = daemonset_util.Backoff(clock, initial=1, maximum=4)
    assert not b.in_backoff_since_update("k")
    b.next("k")
    assert b.in_backoff_since_update("k") and b.get("k") == 1
    clock.advance(1.5)
    assert not b.in_backoff_since_update("k")
    b.next("k")
    b.next("k")
    b.next("k")
    assert b.get("k") == 4  # capped
    clock.advance(9)  # quiet for more than 2 * maximum: back to the start
    b.next("k")
    assert b.get("k") == 1
