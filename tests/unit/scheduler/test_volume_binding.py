"""VolumeBinding: table-driven PreFilter/Filter, Reserve's assume cache, PreBind's writes and wait,
and pods with claims through the whole scheduler (fakes) and a shard (in-memory API server)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kray.actors.framework.ports import StoreListWatcher
from kray.actors.scheduler.binder import ApiBinder
from kray.actors.scheduler.cache import SchedulerCache, Snapshot
from kray.actors.scheduler.config import SchedulerConfigError, load_scheduler_config
from kray.actors.scheduler.cycle_state import CycleState
from kray.actors.scheduler.fakes import FakeBinder, FakeVolumeClient, RecordingReporter
from kray.actors.scheduler.framework import Framework
from kray.actors.scheduler.node_info import NodeInfo
from kray.actors.scheduler.plugins import DEFAULT_PLUGINS, volume_binding
from kray.actors.scheduler.plugins.volume_binding import (
    ERR_BIND_CONFLICT,
    ERR_NODE_CONFLICT,
    ERR_PV_NOT_EXIST,
    ERR_UNBOUND_IMMEDIATE,
    VolumeBinding,
)
from kray.actors.scheduler.pod_info import PodInfo
from kray.actors.scheduler.ports import FakeClock
from kray.actors.scheduler.profile import Profile
from kray.actors.scheduler.queue import NODE_ADD, PV_ADD, PV_UPDATE, PVC_ADD, PVC_UPDATE, STORAGE_CLASS_ADD
from kray.actors.scheduler.scheduler import Scheduler
from kray.actors.scheduler.shard import ShardCore
from kray.actors.scheduler.status import Code, Status
from kray.crds import Node, Pod
from kray.crds.core.storage import (
    ANN_SELECTED_NODE,
    LOCAL_PATH_PROVISIONER,
    PersistentVolume,
    PersistentVolumeClaim,
    PersistentVolumeClaimStatus,
    StorageClass,
)
from kray.crds.meta import Resource

from .builders import connect, node, pod
from .test_shard_helpers import Cluster, memory_cluster, node_body, pod_body

OK, U, UU, ERR = Code.SUCCESS, Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE, Code.ERROR
WFFC, LOCAL, IMMEDIATE = "wffc", "local", "fast"
NODES = ("a", "b", "c")


# --- builders -------------------------------------------------------------------------------


def pvc(
    name: str,
    size: str = "1Gi",
    cls: str | None = WFFC,
    volume: str | None = None,
    phase: str | None = None,
    deleting: bool = False,
) -> PersistentVolumeClaim:
    meta: dict[str, Any] = {"name": name, "namespace": "default", "uid": f"uid-{name}"}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    if volume:
        spec["volumeName"] = volume
    body: dict[str, Any] = {"metadata": meta, "spec": spec}
    if phase or volume:
        body["status"] = {"phase": phase or "Bound"}
    return PersistentVolumeClaim.model_validate(body)


def pv(
    name: str, size: str = "1Gi", cls: str | None = WFFC, on: str | None = None, claim: str | None = None
) -> PersistentVolume:
    spec: dict[str, Any] = {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"]}
    if cls is not None:
        spec["storageClassName"] = cls
    if on is None:
        spec["hostPath"] = {"path": f"/data/{name}"}
    else:
        spec["local"] = {"path": f"/data/{name}"}
        term = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [on]}]}
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [term]}}
    if claim:
        spec["claimRef"] = {"kind": "PersistentVolumeClaim", "namespace": "default", "name": claim}
    status = {"phase": "Bound" if claim else "Available"}
    return PersistentVolume.model_validate({"metadata": {"name": name}, "spec": spec, "status": status})


def storage_class(name: str, mode: str, provisioner: str = "kray.io/no-provisioner") -> StorageClass:
    return StorageClass.model_validate(
        {"metadata": {"name": name}, "provisioner": provisioner, "volumeBindingMode": mode}
    )


CLASSES = [
    storage_class(WFFC, "WaitForFirstConsumer"),
    storage_class(LOCAL, "WaitForFirstConsumer", LOCAL_PATH_PROVISIONER),
    storage_class(IMMEDIATE, "Immediate"),
]


def vpod(name: str, *claims: str) -> Pod:
    volumes = [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)]
    return pod(name, volumes=volumes)


def plugin_with(
    objects: list[Resource], client: FakeVolumeClient | None = None, **args: Any
) -> tuple[VolumeBinding, Framework]:
    clock = FakeClock()
    fw = Framework(SchedulerCache(clock), Snapshot(), clock, None, client)
    vc = fw.cache.volumes
    for obj in objects:
        if isinstance(obj, PersistentVolumeClaim):
            vc.set_pvc(obj)
        elif isinstance(obj, PersistentVolume):
            vc.set_pv(obj)
        elif isinstance(obj, StorageClass):
            vc.set_class(obj)
    for name in NODES:
        fw.cache.add_node(node(name))
    return VolumeBinding(args, fw), fw


def infos() -> list[NodeInfo]:
    return [NodeInfo(n, node(n)) for n in NODES]


def filter_all(plugin: VolumeBinding, p: Pod) -> tuple[CycleState, dict[str, Status]]:
    state, pi = CycleState(), PodInfo.of(p)
    pre = plugin.pre_filter(state, pi)
    assert pre.ok, pre
    return state, {n.name: plugin.filter(state, pi, n) for n in infos()}


def passing(statuses: dict[str, Status]) -> list[str]:
    return sorted(n for n, s in statuses.items() if s.ok)


# --- PreFilter --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "want"),
    [
        ([], (Code.SKIP, ())),
        ([pvc("data", cls=WFFC)], (OK, ())),
        ([], (UU, ('persistentvolumeclaim "data" not found',))),
        ([pvc("data", deleting=True)], (UU, ('persistentvolumeclaim "data" is being deleted',))),
        ([pvc("data", cls=IMMEDIATE)], (UU, (ERR_UNBOUND_IMMEDIATE,))),
        ([pvc("data", cls=None)], (UU, (ERR_UNBOUND_IMMEDIATE,))),
        ([pvc("data", cls="gold")], (UU, ('storageclass.storage.k8s.io "gold" not found',))),
        ([pvc("data", cls=IMMEDIATE, volume="pv1")], (OK, ())),  # bound: Immediate is fine
    ],
    ids=["no-claims", "wffc", "missing", "deleting", "immediate", "no-class", "unknown-class", "bound"],
)
def test_pre_filter(claims: list[PersistentVolumeClaim], want: tuple[Code, tuple[str, ...]]) -> None:
    plugin, _ = plugin_with([*CLASSES, *claims])
    p = pod("web") if want[0] is Code.SKIP else vpod("web", "data")
    s = plugin.pre_filter(CycleState(), PodInfo.of(p))
    assert (s.code, s.reasons) == want


# --- Filter -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("objects", "want_pass", "reason"),
    [
        # Bound claims: the PV's node affinity decides.
        ([pvc("data", volume="pv1"), pv("pv1", on="a", claim="data")], ["a"], ERR_NODE_CONFLICT),
        ([pvc("data", volume="pv1"), pv("pv1", on=None, claim="data")], ["a", "b", "c"], ""),
        ([pvc("data", volume="gone")], [], ERR_PV_NOT_EXIST),
        # Unbound WaitForFirstConsumer claims with static PVs: a fitting Available PV on the node.
        ([pvc("data"), pv("pv-a", on="a"), pv("pv-b", on="b", cls="other")], ["a"], ERR_BIND_CONFLICT),
        (
            [pvc("data", size="2Gi"), pv("pv-a", on="a", size="1Gi"), pv("pv-c", on="c", size="4Gi")],
            ["c"],
            ERR_BIND_CONFLICT,
        ),
        ([pvc("data"), pv("pv-a", on="a", claim="other")], [], ERR_BIND_CONFLICT),  # held for another claim
        ([pvc("data"), pv("pv-b", on="b", claim="data")], ["b"], ERR_BIND_CONFLICT),  # pre-bound to this claim
        ([pvc("data"), pv("pv-any", on=None)], ["a", "b", "c"], ""),
        # A local-path class provisions on any node.
        ([pvc("data", cls=LOCAL)], ["a", "b", "c"], ""),
        ([pvc("data", cls=WFFC)], [], ERR_BIND_CONFLICT),
    ],
    ids=[
        "bound-on-a",
        "bound-no-affinity",
        "bound-pv-missing",
        "static-only-a",
        "static-too-small",
        "static-taken",
        "static-prebound",
        "static-no-affinity",
        "local-path",
        "wffc-no-pv",
    ],
)
def test_filter(objects: list[Resource], want_pass: list[str], reason: str) -> None:
    plugin, _ = plugin_with([*CLASSES, *objects])
    _, statuses = filter_all(plugin, vpod("web", "data"))
    assert passing(statuses) == want_pass
    for name, s in statuses.items():
        if name not in want_pass:
            assert (s.code, s.reasons) == (UU, (reason,))


def test_two_claims_cannot_take_the_same_pv() -> None:
    objects = [pvc("d1"), pvc("d2"), pv("a1", on="a"), pv("b1", on="b"), pv("b2", on="b"), pv("c1", on="c")]
    plugin, _ = plugin_with([*CLASSES, *objects])
    state, statuses = filter_all(plugin, vpod("web", "d1", "d2"))
    assert passing(statuses) == ["b"]
    chosen = state.read(volume_binding.NAME).by_node["b"]
    assert sorted(chosen.values()) == ["b1", "b2"]


def test_smallest_fitting_pv_is_chosen() -> None:
    objects = [pvc("data", size="1Gi"), pv("big", on="a", size="10Gi"), pv("small", on="a", size="2Gi")]
    plugin, _ = plugin_with([*CLASSES, *objects])
    state, statuses = filter_all(plugin, vpod("web", "data"))
    assert passing(statuses) == ["a"]
    assert state.read(volume_binding.NAME).by_node["a"] == {"default/data": "small"}


def test_reserve_assumes_the_pv_and_unreserve_gives_it_back() -> None:
    plugin, fw = plugin_with([*CLASSES, pvc("d1"), pvc("d2"), pv("a1", on="a")])
    first, second = vpod("first", "d1"), vpod("second", "d2")
    state, statuses = filter_all(plugin, first)
    assert passing(statuses) == ["a"]
    assert plugin.reserve(state, PodInfo.of(first), "a").ok
    assumed = fw.cache.volumes.pv("a1")
    assert assumed is not None and assumed.spec.claim_ref is not None and assumed.spec.claim_ref.name == "d1"
    # Scheduled right after, before anything was written: the PV is already taken.
    assert passing(filter_all(plugin, second)[1]) == []
    plugin.unreserve(state, PodInfo.of(first), "a")
    assert passing(filter_all(plugin, second)[1]) == ["a"]


def test_a_newer_pv_from_the_informer_replaces_the_assumption() -> None:
    plugin, fw = plugin_with([*CLASSES, pvc("d1"), pv("a1", on="a")])
    state, _ = filter_all(plugin, vpod("first", "d1"))
    plugin.reserve(state, PodInfo.of(vpod("first", "d1")), "a")
    assert fw.cache.volumes.is_assumed("a1")
    fresh = pv("a1", on="a")
    fresh.metadata.resource_version = "99"
    fw.cache.volumes.set_pv(fresh)
    assert not fw.cache.volumes.is_assumed("a1")
    assert fw.cache.volumes.pv("a1") is fresh


def test_events_to_register() -> None:
    plugin, _ = plugin_with([])
    events = plugin.events_to_register()
    for e in (PVC_ADD, PVC_UPDATE, PV_ADD, PV_UPDATE, STORAGE_CLASS_ADD, NODE_ADD):
        assert e in events


# --- PreBind ----------------------------------------------------------------------------------


async def fake_pv_controller(client: FakeVolumeClient, delay: float = 0.05) -> None:
    """Binds each claim that has a selected node: to the PV pre-bound to it, else to a new
    local-path PV on that node (what the real PV controller does), after ``delay``."""
    while True:
        await asyncio.sleep(delay)
        for (kind, _), obj in list(client.objects.items()):
            if kind != "PersistentVolumeClaim":
                continue
            assert isinstance(obj, PersistentVolumeClaim)
            selected = (obj.metadata.annotations or {}).get(ANN_SELECTED_NODE)
            if selected is None or obj.spec.volume_name:
                continue
            name = obj.metadata.name or ""
            prebound = [
                p
                for (k, _), p in client.objects.items()
                if k == "PersistentVolume"
                and isinstance(p, PersistentVolume)
                and p.spec.claim_ref is not None
                and p.spec.claim_ref.name == name
            ]
            volume = prebound[0] if prebound else client.add(pv(f"pvc-{name}", on=selected, cls=LOCAL, claim=name))
            bound = obj.model_copy(deep=True)
            bound.spec.volume_name = volume.metadata.name
            bound.status = PersistentVolumeClaimStatus(phase="Bound")
            client.add(bound)


@contextlib.asynccontextmanager
async def controller(client: FakeVolumeClient, delay: float = 0.05) -> AsyncIterator[None]:
    task = asyncio.ensure_future(fake_pv_controller(client, delay))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def feed(client: FakeVolumeClient, fw: Framework) -> None:
    """The fake API's changes into the plugin's cache, as the shard's informers do."""
    vc = fw.cache.volumes

    def listen(event: str, obj: Resource) -> None:
        if isinstance(obj, PersistentVolumeClaim):
            vc.delete_pvc(obj) if event == "deleted" else vc.set_pvc(obj)
        elif isinstance(obj, PersistentVolume):
            vc.delete_pv(obj) if event == "deleted" else vc.set_pv(obj)
        elif isinstance(obj, StorageClass):
            vc.set_class(obj)

    client.listeners.append(listen)


def prebind_setup(
    objects: list[Resource], **args: Any
) -> tuple[VolumeBinding, Framework, FakeVolumeClient, CycleState, PodInfo]:
    client = FakeVolumeClient()
    plugin, fw = plugin_with([], client, **args)
    feed(client, fw)
    for obj in [*CLASSES, *objects]:
        client.add(obj)
    p = PodInfo.of(vpod("web", "data"))
    state = CycleState()
    assert plugin.pre_filter(state, p).ok
    for n in infos():
        plugin.filter(state, p, n)
    return plugin, fw, client, state, p


async def test_pre_bind_selects_the_node_and_waits_for_the_provisioned_pv() -> None:
    plugin, _, client, state, p = prebind_setup([pvc("data", cls=LOCAL)])
    assert plugin.reserve(state, p, "b").ok
    async with controller(client):
        status = await plugin.pre_bind(state, p, "b")
    assert status.ok, status
    stored = client.stored(PersistentVolumeClaim, "data", "default")
    assert stored.metadata.annotations[ANN_SELECTED_NODE] == "b"
    assert stored.spec.volume_name == "pvc-data" and stored.status.phase == "Bound"


async def test_pre_bind_pre_binds_the_chosen_static_pv() -> None:
    plugin, _, client, state, p = prebind_setup([pvc("data"), pv("pv-a", on="a")])
    assert plugin.reserve(state, p, "a").ok
    async with controller(client):
        status = await plugin.pre_bind(state, p, "a")
    assert status.ok, status
    volume = client.stored(PersistentVolume, "pv-a")
    assert (volume.spec.claim_ref.namespace, volume.spec.claim_ref.name) == ("default", "data")
    assert volume.spec.claim_ref.uid == "uid-data"
    stored = client.stored(PersistentVolumeClaim, "data", "default")
    assert stored.metadata.annotations[ANN_SELECTED_NODE] == "a"
    assert stored.spec.volume_name == "pv-a"


async def test_pre_bind_rereads_and_retries_on_conflict() -> None:
    plugin, _, client, state, p = prebind_setup([pvc("data", cls=LOCAL)])
    plugin.reserve(state, p, "a")
    # Someone else writes the claim; the scheduler's cache does not see it yet.
    listeners, client.listeners = client.listeners, []
    other = client.stored(PersistentVolumeClaim, "data", "default").model_copy(deep=True)
    other.metadata.labels = {"team": "ml"}
    client.add(other)
    client.listeners = listeners
    async with controller(client):
        status = await plugin.pre_bind(state, p, "a")
    assert status.ok, status
    assert client.conflicts == 1
    stored = client.stored(PersistentVolumeClaim, "data", "default")
    assert stored.metadata.labels == {"team": "ml"} and stored.metadata.annotations[ANN_SELECTED_NODE] == "a"


async def test_pre_bind_times_out_to_an_error() -> None:
    plugin, _, client, state, p = prebind_setup(
        [pvc("data", cls=LOCAL)], bindTimeoutSeconds=0.2, pollIntervalSeconds=0.02
    )
    plugin.reserve(state, p, "a")
    status = await plugin.pre_bind(state, p, "a")  # no PV controller: never bound
    assert status.code is ERR
    assert "timed out after 0.2s" in status.message
    assert client.stored(PersistentVolumeClaim, "data", "default").metadata.annotations[ANN_SELECTED_NODE] == "a"


async def test_pre_bind_claim_deleted_while_waiting_is_unschedulable() -> None:
    plugin, _, client, state, p = prebind_setup([pvc("data", cls=LOCAL)], bindTimeoutSeconds=5)
    plugin.reserve(state, p, "a")

    async def delete_soon() -> None:
        await asyncio.sleep(0.05)
        client.remove(client.stored(PersistentVolumeClaim, "data", "default"))

    task = asyncio.ensure_future(delete_soon())
    status = await asyncio.wait_for(plugin.pre_bind(state, p, "a"), 2)
    await task
    assert (status.code, status.reasons) == (U, ('persistentvolumeclaim "data" was deleted',))


async def test_pre_bind_without_a_client_is_an_error_and_skips_pods_without_claims() -> None:
    plugin, _ = plugin_with([*CLASSES, pvc("data", cls=LOCAL)])
    p, state = PodInfo.of(vpod("web", "data")), CycleState()
    plugin.pre_filter(state, p)
    plugin.filter(state, p, infos()[0])
    plugin.reserve(state, p, "a")
    assert (await plugin.pre_bind(state, p, "a")).code is ERR
    plain = PodInfo.of(pod("plain"))
    assert (await plugin.pre_bind(CycleState(), plain, "a")).ok


# --- config and profile -----------------------------------------------------------------------


def test_default_profile_runs_volume_binding_after_fit_and_before_the_binder() -> None:
    names = [n for n, _ in DEFAULT_PLUGINS]
    assert names.index("NodeAffinity") < names.index("NodeResourcesFit") < names.index("VolumeBinding")
    assert names.index("VolumeBinding") < names.index("DefaultBinder")
    s = Scheduler(FakeBinder(), clock=FakeClock(), volume_client=FakeVolumeClient())
    from kray.actors.scheduler.framework import FilterPlugin, PreBindPlugin, ReservePlugin

    for point in (FilterPlugin, ReservePlugin, PreBindPlugin):
        assert "VolumeBinding" in [p.name for p in s.framework.points(point)]


def test_scheduler_config_accepts_volume_binding_and_checks_its_args() -> None:
    config = {
        "profiles": [
            {
                "plugins": {"preBind": {"enabled": [{"name": "VolumeBinding"}]}},
                "pluginConfig": [{"name": "VolumeBinding", "args": {"bindTimeoutSeconds": 600}}],
            }
        ]
    }
    (profile,) = load_scheduler_config(config)
    assert next(p for p in profile.plugins if p.name == "VolumeBinding").args == {"bindTimeoutSeconds": 600}
    config["profiles"][0]["pluginConfig"][0]["args"] = {"bindTimeoutSeconds": 0}
    with pytest.raises(SchedulerConfigError, match="VolumeBinding"):
        load_scheduler_config(config)


# --- the whole scheduler ----------------------------------------------------------------------


def wired_scheduler(nodes: list[Node]) -> tuple[Scheduler, FakeBinder, RecordingReporter, FakeVolumeClient, FakeClock]:
    binder, clock, reporter, client = FakeBinder(), FakeClock(), RecordingReporter(), FakeVolumeClient()
    profile = Profile.from_dict({"pluginConfig": [{"name": "VolumeBinding", "args": {"bindTimeoutSeconds": 5}}]})
    s = Scheduler(binder, reporter, clock, profile, volume_client=client)
    connect(binder, s)

    def listen(event: str, obj: Resource) -> None:
        kind = {PersistentVolumeClaim: "pvc", PersistentVolume: "pv", StorageClass: "storage_class"}[type(obj)]
        action = {"added": "add", "modified": "update", "deleted": "delete"}[event]
        getattr(s, f"on_{kind}_{action}")(obj)

    client.listeners.append(listen)
    for n in nodes:
        binder.add_node(n)
        s.on_node_add(n)
    return s, binder, reporter, client, clock


async def test_scheduler_binds_a_pod_with_a_local_path_claim() -> None:
    s, binder, reporter, client, _ = wired_scheduler([node(n) for n in NODES])
    for obj in [*CLASSES, pvc("data", cls=LOCAL)]:
        client.add(obj)
    s.on_pod_add(vpod("web", "data"))
    async with controller(client):
        await s.run_until_idle()
    assert binder.bound.keys() == {"default/web"}, reporter.unschedulable_messages
    stored = client.stored(PersistentVolumeClaim, "data", "default")
    assert stored.metadata.annotations[ANN_SELECTED_NODE] == binder.bound["default/web"]
    assert stored.status.phase == "Bound"


async def test_scheduler_retries_a_pod_when_its_claim_appears() -> None:
    s, binder, reporter, client, clock = wired_scheduler([node("a")])
    for obj in CLASSES:
        client.add(obj)
    s.on_pod_add(vpod("web", "data"))
    await s.run_until_idle()
    assert reporter.unschedulable_messages["default/web"] == (
        '0/1 nodes are available: persistentvolumeclaim "data" not found.'
    )
    assert "default/web" in s.queue.unschedulable
    client.add(pvc("data"))
    client.add(pv("pv-a", on="a"))
    assert "default/web" not in s.queue.unschedulable  # the PVC/PV events moved it out
    clock.advance(10)
    async with controller(client):
        await s.run_until_idle()
    assert binder.bound == {"default/web": "a"}
    assert client.stored(PersistentVolume, "pv-a").spec.claim_ref.name == "data"


async def test_two_pods_back_to_back_do_not_share_a_static_pv() -> None:
    s, binder, reporter, client, _ = wired_scheduler([node("a"), node("b")])
    for obj in [*CLASSES, pvc("d1"), pvc("d2"), pv("only", on="a")]:
        client.add(obj)
    s.on_pod_add(vpod("p1", "d1"))
    s.on_pod_add(vpod("p2", "d2"))
    # Both scheduling cycles run before any binding cycle (as in a shard, where binds are tasks).
    first, second = s.schedule_one(), s.schedule_one()
    assert len(first) == 1 and second == []
    assert "node(s) didn't find available persistent volumes to bind" in str(reporter.unschedulable_messages)
    async with controller(client):
        assert (await s.bind(first[0])).ok
    assert len(binder.bound) == 1


# --- a shard on the in-memory API server --------------------------------------------------------


async def api_pv_controller(c: Cluster) -> None:
    """Provisions a local-path PV on the selected node and binds the claim, through the API."""
    while True:
        await asyncio.sleep(0.05)
        for claim in (await c.client.list(PersistentVolumeClaim, "default")).items:
            node_name = (claim.metadata.annotations or {}).get(ANN_SELECTED_NODE)
            if node_name is None or claim.spec.volume_name:
                continue
            name = claim.metadata.name or ""
            await c.client.create(pv(f"pvc-{name}", on=node_name, cls=LOCAL, claim=name))
            claim.spec.volume_name = f"pvc-{name}"
            claim = await c.client.update(claim)
            claim.status = PersistentVolumeClaimStatus(phase="Bound")
            await c.client.update_status(claim)


async def test_shard_binds_a_pod_with_a_local_path_claim() -> None:
    async with memory_cluster() as c:
        for n in NODES:
            await c.client.create_raw(node_body(n), Node)
        await c.client.create(storage_class(LOCAL, "WaitForFirstConsumer", LOCAL_PATH_PROVISIONER))
        await c.client.create(pvc("data", cls=LOCAL))
        lw = StoreListWatcher(c.store)
        shard = ShardCore(
            0,
            1,
            pods=lw,
            nodes=lw,
            pod_groups=lw,
            pvcs=lw,
            pvs=lw,
            storage_classes=lw,
            volume_client=c.client,
            binder=ApiBinder(c.client),
        )
        body = pod_body("web")
        body["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
        await c.client.create_raw(body, Pod)
        tasks = [asyncio.ensure_future(shard.run()), asyncio.ensure_future(api_pv_controller(c))]
        try:
            deadline = asyncio.get_running_loop().time() + 10
            while not (await c.client.get(Pod, "web", "default")).spec.node_name:
                assert asyncio.get_running_loop().time() < deadline, "pod never bound"
                await asyncio.sleep(0.05)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        bound = await c.client.get(Pod, "web", "default")
        claim = await c.client.get(PersistentVolumeClaim, "data", "default")
        assert (claim.metadata.annotations or {})[ANN_SELECTED_NODE] == bound.spec.node_name
        assert claim.spec.volume_name == "pvc-data"
