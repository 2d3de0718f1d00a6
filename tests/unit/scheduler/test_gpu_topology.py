"""GpuTopology: healthy/free filtering, NVLink-island best-fit scoring, device choice at Reserve,
and the cache learning held devices from the kray.io/gpu-devices annotation."""

from __future__ import annotations

import pytest

from kray.actors.scheduler.cycle_state import CycleState
from kray.actors.scheduler.devices import DeviceTopology, choose
from kray.actors.scheduler.node_info import NodeInfo
from kray.actors.scheduler.plugins.gpu_topology import GpuTopology, placement
from kray.actors.scheduler.pod_info import PodInfo
from kray.actors.scheduler.status import Code
from kray.crds import Pod
from kray.crds.devices import NodeDevices

from .builders import GPU, make_scheduler, node, pod
from .gpu_builders import annotated_devices, gpu_ids, holding, node_devices


def gpu_node(name: str, nd: NodeDevices | None, *existing: Pod, gpus: int = 8) -> NodeInfo:
    info = NodeInfo(name, node(name, cpu=64, memory="512Gi", gpu=gpus))
    info.devices = DeviceTopology.of(nd) if nd is not None else None
    for p in existing:
        info.add_pod(PodInfo.of(p))
    return info


def indices(devices: tuple[str, ...] | list[str], name: str = "n") -> list[int]:
    ids = gpu_ids(name)
    return [ids.index(d) for d in devices]


# (case, pod's GPUs, node, devices it should get (None: no placement))
PLACEMENT_CASES = [
    ("4 GPUs take one whole island", 4, gpu_node("n", node_devices("n")), [0, 1, 2, 3]),
    (
        "2 GPUs fill the partly used island (best fit), the whole island stays free",
        2,
        gpu_node("n", node_devices("n"), holding("a", "n", [0, 1])),
        [2, 3],
    ),
    (
        "best fit works the other way round too",
        2,
        gpu_node("n", node_devices("n"), holding("a", "n", [4])),
        [5, 6],
    ),
    (
        "1 GPU goes to the most fragmented island",
        1,
        gpu_node("n", node_devices("n"), holding("a", "n", [4, 5, 6])),
        [7],
    ),
    ("an unhealthy device is never picked", 4, gpu_node("n", node_devices("n", unhealthy=(2,))), [4, 5, 6, 7]),
    ("8 GPUs with one unhealthy: no placement", 8, gpu_node("n", node_devices("n", unhealthy=(2,))), None),
    (
        "no island fits: span the islands, largest free first",
        4,
        gpu_node("n", node_devices("n"), holding("a", "n", [0, 1, 2]), holding("b", "n", [4])),
        [5, 6, 7, 3],
    ),
    ("time-sliced devices: count only, no ids", 1, gpu_node("n", node_devices("n", replicas=4)), None),
]


@pytest.mark.parametrize(
    ("gpus", "info", "want"), [c[1:] for c in PLACEMENT_CASES], ids=[c[0] for c in PLACEMENT_CASES]
)
def test_placement(gpus: int, info: NodeInfo, want: list[int] | None) -> None:
    got = placement(PodInfo.of(pod("p", gpu=gpus)), info)
    assert (indices(got.devices) if got else None) == want


def run_filter(p: Pod, info: NodeInfo) -> tuple[Code, tuple[str, ...]]:
    plugin, state, pi = GpuTopology(), CycleState(), PodInfo.of(p)
    if plugin.pre_filter(state, pi).code is Code.SKIP:
        return Code.SUCCESS, ()
    s = plugin.filter(state, pi, info)
    return s.code, s.reasons


NO_HEALTHY = (Code.UNSCHEDULABLE, ("Insufficient healthy nvidia.com/gpu",))
FITS = (Code.SUCCESS, ())
FILTER_CASES = [
    ("8 free healthy", pod("p", gpu=8), gpu_node("n", node_devices("n")), FITS),
    (
        "unhealthy devices do not count though allocatable says 8",
        pod("p", gpu=8),
        gpu_node("n", node_devices("n", unhealthy=(5,))),
        NO_HEALTHY,
    ),
    (
        "held devices do not count",
        pod("p", gpu=5),
        gpu_node("n", node_devices("n"), holding("a", "n", [0, 1, 4, 5])),
        NO_HEALTHY,
    ),
    (
        "a pod holding GPUs without the annotation still uses up the count",
        pod("p", gpu=7),
        gpu_node("n", node_devices("n"), pod("old", gpu=2, node_name="n")),
        NO_HEALTHY,
    ),
    ("no NodeDevices: left to NodeResourcesFit", pod("p", gpu=8), gpu_node("n", None), FITS),
    (
        "time-sliced: left to NodeResourcesFit",
        pod("p", gpu=8),
        gpu_node("n", node_devices("n", replicas=2, unhealthy=(0,))),
        FITS,
    ),
    (
        "no GPU request: skipped",
        pod("p", cpu=1),
        gpu_node("n", node_devices("n", unhealthy=(0, 1, 2, 3, 4, 5, 6, 7))),
        FITS,
    ),
]


@pytest.mark.parametrize(("p", "info", "want"), [c[1:] for c in FILTER_CASES], ids=[c[0] for c in FILTER_CASES])
def test_filter(p: Pod, info: NodeInfo, want: tuple[Code, tuple[str, ...]]) -> None:
    assert run_filter(p, info) == want


def score(gpus: int, info: NodeInfo) -> int:
    return GpuTopology().score(CycleState(), PodInfo.of(pod("p", gpu=gpus)), info)


def test_scores_prefer_island_fit_best_fit_and_better_links() -> None:
    whole = gpu_node("n", node_devices("n"))
    split = gpu_node("n", node_devices("n"), holding("a", "n", [0, 1]), holding("b", "n", [4, 5]))
    assert score(4, whole) == 100  # an exact island
    assert score(4, split) == 0  # 2 + 2 across islands, no matrix: as bad as across sockets
    partly = gpu_node("n", node_devices("n"), holding("a", "n", [0, 1]))
    assert score(2, partly) > score(2, whole)  # best fit beats breaking a whole island
    nvlink = gpu_node("n", node_devices("n", link_type="NVLink"))
    pix = gpu_node("n", node_devices("n", link_type="PIX"))
    assert score(2, nvlink) > score(2, pix) > 0
    # With a links matrix, spanning islands over PXB beats spanning over SYS.
    ids = list(range(8))

    def matrix(cross: str) -> list[list[str]]:
        return [["SELF" if i == j else "NVLink" if i // 4 == j // 4 else cross for j in ids] for i in ids]

    pxb = gpu_node("n", node_devices("n", links=matrix("PXB")), holding("a", "n", [0, 1]), holding("b", "n", [4, 5]))
    sys = gpu_node("n", node_devices("n", links=matrix("SYS")), holding("a", "n", [0, 1]), holding("b", "n", [4, 5]))
    assert score(4, pxb) > score(4, sys) == 0


def test_choose_uses_the_matrix_for_ungrouped_devices() -> None:
    ids = list(range(4))
    links = [["SELF" if i == j else "NVLink" if {i, j} == {2, 3} else "SYS" for j in ids] for i in ids]
    topo = DeviceTopology.of(node_devices("n", n=4, islands=[], links=links))
    p = choose(topo, topo.healthy, 2)
    assert p is not None and p.worst_link == 5  # islands unknown: picks by fullness, matrix reports SYS
    assert topo.worst_link(("GPU-n-2", "GPU-n-3")) == 0


async def test_two_nodes_the_island_fit_wins_and_the_pod_is_annotated() -> None:
    s, binder, _, _ = make_scheduler(
        nodes=[node("frag", cpu=64, memory="512Gi", gpu=8), node("fit", cpu=64, memory="512Gi", gpu=8)]
    )
    s.on_node_devices(node_devices("frag"))
    s.on_node_devices(node_devices("fit"))
    bound: dict[str, Pod] = {}
    binder.listeners.append(lambda kind, p: bound.__setitem__(p.metadata.name or "", p))
    # frag: 2 + 2 free across its islands; fit: one island used, one whole island free.
    for name, where, devs in [("a", "frag", [0, 1]), ("b", "frag", [4, 5]), ("c", "fit", [0, 1, 2, 3])]:
        held = holding(name, where, devs)
        binder.nodes[where].add_pod(PodInfo.of(held))
        s.on_pod_add(held)
    s.on_pod_add(pod("train", gpu=4))
    await s.run_until_idle()
    assert binder.bound["default/train"] == "fit"
    assert indices(annotated_devices(bound["train"]), "fit") == [4, 5, 6, 7]
    assert s.cache.nodes["fit"].used_devices.keys() == set(gpu_ids("fit"))


async def test_assumed_devices_are_taken_before_binds_confirm_and_unhealthy_requeues() -> None:
    from kray.actors.scheduler.fakes import FakeBinder

    binder = FakeBinder(auto_deliver=False)  # binds confirm only when delivered
    s, _, reporter, _ = make_scheduler(binder=binder, nodes=[node("n", cpu=64, memory="512Gi", gpu=8)])
    s.on_node_devices(node_devices("n", unhealthy=(7,)))
    for i in range(3):
        s.on_pod_add(pod(f"p{i}", gpu=2))
    await s.run_until_idle()
    devices = [s.cache.pods[f"default/p{i}"].info.gpu_devices for i in range(3)]
    # Best fit: the first pair goes to the island with only 3 healthy GPUs, keeping the other whole.
    assert [indices(d) for d in devices] == [[4, 5], [0, 1], [2, 3]]
    binder.deliver()
    s.on_pod_add(pod("big", gpu=2))  # only GPU 6 is free and healthy
    await s.run_until_idle()
    assert "default/big" not in binder.bound
    assert (
        reporter.unschedulable_messages["default/big"]
        == "0/1 nodes are available: 1 Insufficient healthy nvidia.com/gpu."
    )
    s.on_node_devices(node_devices("n"))  # GPU 7 recovered: the pod is retried on that event
    s.clock.advance(30)  # type: ignore[attr-defined]
    await s.run_until_idle()
    assert binder.bound["default/big"] == "n"
    assert indices(s.cache.pods["default/big"].info.gpu_devices) == [6, 7]


async def test_a_restarted_scheduler_rebuilds_held_devices_from_annotations() -> None:
    s, binder, _, _ = make_scheduler(nodes=[node("n", cpu=64, memory="512Gi", gpu=8)])
    s.on_node_devices(node_devices("n"))
    bound: list[Pod] = []
    binder.listeners.append(lambda kind, p: bound.append(p))
    s.on_pod_add(pod("a", gpu=3))
    await s.run_until_idle()
    # A fresh scheduler sees only what the store holds: the node, its devices, the bound pod.
    fresh, _, _, _ = make_scheduler(binder=binder, nodes=[node("n", cpu=64, memory="512Gi", gpu=8)])
    for p in bound:
        fresh.on_pod_add(p)
    fresh.on_node_devices(node_devices("n"))  # devices after pods: order does not matter
    fresh.on_pod_add(pod("b", gpu=4))
    await fresh.run_until_idle()
    assert indices(fresh.cache.pods["default/b"].info.gpu_devices) == [4, 5, 6, 7]


async def test_unreserve_releases_the_devices() -> None:
    from kray.actors.scheduler.status import Status

    class RefusingBinder:
        async def bind(self, p: Pod, node_name: str, annotations: object = None) -> Status:
            return Status.error("refused")

    s, _, _, _ = make_scheduler(nodes=[node("n", cpu=64, memory="512Gi", gpu=8)])
    s.framework.binder = RefusingBinder()  # type: ignore[assignment]
    s.framework.plugin("DefaultBinder").binder = s.framework.binder
    s.on_node_devices(node_devices("n"))
    s.on_pod_add(pod("a", gpu=4))
    await s.step()
    assert "default/a" not in s.cache.pods
    assert not s.cache.nodes["n"].used_devices


async def test_preemption_frees_named_devices_for_a_higher_priority_pod() -> None:
    s, binder, _, _ = make_scheduler(nodes=[node("n", cpu=64, memory="512Gi", gpu=8)])
    s.on_node_devices(node_devices("n", unhealthy=(7,)))
    for name, devs in (("low", [0, 1, 2, 3]), ("mid", [4, 5])):
        held = holding(name, "n", devs).model_copy(deep=True)
        held.spec.priority = 10 if name == "low" else 100
        await binder.bind(held, "n")
    s.on_pod_add(pod("urgent", gpu=4, priority=50))
    await s.step()
    # 1 healthy GPU free: only evicting "low" (priority 10 < 50) frees enough; "mid" stays.
    assert "default/low" not in binder.bound and binder.bound["default/mid"] == "n"
    s.clock.advance(30)  # type: ignore[attr-defined]
    await s.run_until_idle()
    assert binder.bound["default/urgent"] == "n"
    assert indices(s.cache.pods["default/urgent"].info.gpu_devices) == [0, 1, 2, 3]


async def test_init_containers_count_as_the_kubelet_reads_the_annotation() -> None:
    """The annotation lists the pod's effective request, max(max over init, sum over app) as
    Kubernetes' PodRequests; the kubelet's hints give each init container the first devices
    and the app containers consecutive slices, so the two sides agree on every container."""
    from kray.deviceplugins.hints import requested_devices

    s, binder, _, _ = make_scheduler(nodes=[node("n", cpu=64, memory="512Gi", gpu=8)])
    s.on_node_devices(node_devices("n"))
    bound: dict[str, Pod] = {}
    binder.listeners.append(lambda kind, p: bound.__setitem__(p.metadata.name or "", p))

    def ctr(name: str, n: int) -> dict[str, object]:
        return {"name": name, "image": "train:1", "resources": {"limits": {GPU: str(n)}}}

    s.on_pod_add(pod("mixed", initContainers=[ctr("fetch", 3), ctr("warm", 1)], containers=[ctr("a", 1), ctr("b", 1)]))
    await s.run_until_idle()
    devices = annotated_devices(bound["mixed"])
    assert len(devices) == 3 and len({i // 4 for i in indices(devices)}) == 1  # 3 on one island
    p = bound["mixed"]
    assert requested_devices(p, "fetch") == devices and requested_devices(p, "warm") == devices[:1]
    assert [requested_devices(p, "a"), requested_devices(p, "b")] == [devices[:1], devices[1:2]]
    # The next pod sees all three taken: the init container's extra GPU is the pod's too.
    assert set(s.cache.nodes["n"].used_devices) == set(devices)
