"""Table-driven Filter/Score tests for each in-tree plugin."""

from __future__ import annotations

from typing import Any

import pytest

from kray.actors.scheduler.cycle_state import CycleState
from kray.actors.scheduler.node_info import NodeInfo
from kray.actors.scheduler.plugins import (
    inter_pod_affinity,
    node_affinity,
    node_name,
    node_ports,
    node_resources_fit,
    node_unschedulable,
    pod_topology_spread,
    taint_toleration,
)
from kray.actors.scheduler.pod_info import PodInfo
from kray.actors.scheduler.status import Code
from kray.crds import Node, Pod

from .builders import make_scheduler, node, pod


def node_info(n: Node, *existing: Pod) -> NodeInfo:
    info = NodeInfo(n.metadata.name or "", n)
    for p in existing:
        info.add_pod(PodInfo.of(p))
    return info


def run_filter(plugin: Any, p: Pod, info: NodeInfo) -> tuple[Code, tuple[str, ...]]:
    state, pi = CycleState(), PodInfo.of(p)
    if hasattr(plugin, "pre_filter"):
        pre = plugin.pre_filter(state, pi)
        if pre.code is Code.SKIP:
            return Code.SUCCESS, ()
        assert pre.ok, pre
    s = plugin.filter(state, pi, info)
    return s.code, s.reasons


U, UU, OK = Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE, Code.SUCCESS


@pytest.mark.parametrize(
    ("p", "info", "want"),
    [
        (pod("a", cpu=1), node_info(node("n", cpu=2)), (OK, ())),
        (pod("a", cpu=3), node_info(node("n", cpu=2)), (U, ("Insufficient cpu",))),
        (pod("a", cpu="500m"), node_info(node("n", cpu=1), pod("b", cpu="600m")), (U, ("Insufficient cpu",))),
        (pod("a", gpu=2), node_info(node("n", gpu=1)), (U, ("Insufficient nvidia.com/gpu",))),
        (pod("a", gpu=1), node_info(node("n")), (U, ("Insufficient nvidia.com/gpu",))),
        (
            pod("a", cpu=9, memory="64Gi"),
            node_info(node("n")),
            (U, ("Insufficient cpu", "Insufficient memory")),
        ),
        (pod("a"), node_info(node("n", pods=1), pod("b")), (U, ("Too many pods",))),
        (pod("a", cpu=1, gpu=1), node_info(node("n", gpu=8), pod("b", gpu=7)), (OK, ())),
    ],
)
def test_node_resources_fit_filter(p: Pod, info: NodeInfo, want: tuple[Code, tuple[str, ...]]) -> None:
    assert run_filter(node_resources_fit.NodeResourcesFit(), p, info) == want


@pytest.mark.parametrize(
    ("strategy", "want_higher"),
    [("LeastAllocated", "empty"), ("MostAllocated", "busy")],
)
def test_node_resources_fit_score_strategies(strategy: str, want_higher: str) -> None:
    plugin = node_resources_fit.NodeResourcesFit({"scoringStrategy": {"type": strategy}})
    empty = node_info(node("empty", cpu=8))
    busy = node_info(node("busy", cpu=8), pod("x", cpu=6, memory="16Gi"))
    pi, state = PodInfo.of(pod("a", cpu=1, memory="1Gi")), CycleState()
    scores = {"empty": plugin.score(state, pi, empty), "busy": plugin.score(state, pi, busy)}
    assert max(scores, key=lambda k: scores[k]) == want_higher


def test_node_resources_fit_gpu_packing_weights() -> None:
    args = {"scoringStrategy": {"type": "MostAllocated", "resources": [{"name": "nvidia.com/gpu", "weight": 1}]}}
    plugin = node_resources_fit.NodeResourcesFit(args)
    pi, state = PodInfo.of(pod("a", gpu=1)), CycleState()
    assert plugin.score(state, pi, node_info(node("n", gpu=8), pod("x", gpu=6))) == 87
    assert plugin.score(state, pi, node_info(node("n", gpu=8))) == 12


def test_node_resources_fit_rejects_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="unknown scoring strategy"):
        node_resources_fit.NodeResourcesFit({"scoringStrategy": {"type": "Random"}})


@pytest.mark.parametrize(
    ("p", "n", "want"),
    [
        (pod("a"), node("n1"), OK),
        (pod("a", node_name="n1"), node("n1"), OK),
        (pod("a", node_name="n2"), node("n1"), UU),
    ],
)
def test_node_name(p: Pod, n: Node, want: Code) -> None:
    assert run_filter(node_name.NodeName(), p, node_info(n))[0] == want


TOLERATE_CORDON = [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]


@pytest.mark.parametrize(
    ("p", "n", "want"),
    [
        (pod("a"), node("n"), (OK, ())),
        (pod("a"), node("n", unschedulable=True), (UU, ("node(s) were unschedulable",))),
        (pod("a", tolerations=TOLERATE_CORDON), node("n", unschedulable=True), (OK, ())),
    ],
)
def test_node_unschedulable(p: Pod, n: Node, want: tuple[Code, tuple[str, ...]]) -> None:
    assert run_filter(node_unschedulable.NodeUnschedulable(), p, node_info(n)) == want


ZONE_A = {"topology.kubernetes.io/zone": "a", "gpu": "a100"}
REQUIRED_A100 = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["a100"]}]}]
        }
    }
}
BY_NAME = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]}]
        }
    }
}
AFF_REASON = ("node(s) didn't match Pod's node affinity/selector",)


@pytest.mark.parametrize(
    ("p", "n", "want"),
    [
        (pod("a"), node("n"), (OK, ())),
        (pod("a", nodeSelector={"gpu": "a100"}), node("n", labels=ZONE_A), (OK, ())),
        (pod("a", nodeSelector={"gpu": "h100"}), node("n", labels=ZONE_A), (UU, AFF_REASON)),
        (pod("a", affinity=REQUIRED_A100), node("n", labels=ZONE_A), (OK, ())),
        (pod("a", affinity=REQUIRED_A100), node("n"), (UU, AFF_REASON)),
        (pod("a", affinity=BY_NAME), node("n"), (OK, ())),
        (pod("a", affinity=BY_NAME), node("m"), (UU, AFF_REASON)),
    ],
)
def test_node_affinity_filter(p: Pod, n: Node, want: tuple[Code, tuple[str, ...]]) -> None:
    assert run_filter(node_affinity.NodeAffinity(), p, node_info(n)) == want


def test_node_affinity_preferred_score() -> None:
    preferred = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}},
                {
                    "weight": 5,
                    "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                },
            ]
        }
    }
    plugin, state, pi = node_affinity.NodeAffinity(), CycleState(), PodInfo.of(pod("a", affinity=preferred))
    nodes = [
        node_info(node("x", labels={"gpu": "1", "zone": "b"})),
        node_info(node("y", labels={"gpu": "1"})),
        node_info(node("z")),
    ]
    assert plugin.pre_score(state, pi, nodes).ok
    scores = {n.name: plugin.score(state, pi, n) for n in nodes}
    plugin.normalize_score(state, pi, scores)
    assert scores == {"x": 100, "y": 66, "z": 0}


BAD_GPU = [{"key": "gpu", "value": "bad", "effect": "NoSchedule"}]


@pytest.mark.parametrize(
    ("tolerations", "taints", "want"),
    [
        (None, None, (OK, ())),
        (None, BAD_GPU, (UU, ("node(s) had untolerated taint {gpu: bad}",))),
        ([{"key": "gpu", "operator": "Equal", "value": "bad", "effect": "NoSchedule"}], BAD_GPU, (OK, ())),
        (
            [{"key": "gpu", "operator": "Equal", "value": "good"}],
            BAD_GPU,
            (UU, ("node(s) had untolerated taint {gpu: bad}",)),
        ),
        ([{"operator": "Exists"}], BAD_GPU, (OK, ())),
        (None, [{"key": "spot", "effect": "PreferNoSchedule"}], (OK, ())),
        (None, [{"key": "dying", "effect": "NoExecute"}], (UU, ("node(s) had untolerated taint {dying: }",))),
    ],
)
def test_taint_toleration_filter(tolerations: Any, taints: Any, want: tuple[Code, tuple[str, ...]]) -> None:
    extra = {"tolerations": tolerations} if tolerations else {}
    assert (
        run_filter(taint_toleration.TaintToleration(), pod("a", **extra), node_info(node("n", taints=taints))) == want
    )


def test_taint_toleration_score_prefers_fewer_soft_taints() -> None:
    plugin, state, pi = taint_toleration.TaintToleration(), CycleState(), PodInfo.of(pod("a"))
    soft = [{"key": "spot", "effect": "PreferNoSchedule"}]
    nodes = [node_info(node("clean")), node_info(node("spot", taints=soft))]
    scores = {n.name: plugin.score(state, pi, n) for n in nodes}
    plugin.normalize_score(state, pi, scores)
    assert scores == {"clean": 100, "spot": 0}


PORT = [{"name": "main", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]}]


@pytest.mark.parametrize(
    ("existing", "want"),
    [([], OK), ([pod("b", containers=PORT)], U)],
)
def test_node_ports(existing: list[Pod], want: Code) -> None:
    assert run_filter(node_ports.NodePorts(), pod("a", containers=PORT), node_info(node("n"), *existing))[0] == want


def _cluster_filter(plugin_name: str, nodes: list[Node], bound: list[Pod], p: Pod) -> dict[str, Code]:
    """Run one handle-using plugin's PreFilter + Filter against a small cluster."""
    s, *_ = make_scheduler(nodes=nodes)
    for b in bound:
        s.on_pod_add(b)
    s.cache.update_snapshot(s.snapshot)
    plugin = s.framework.plugin(plugin_name)
    state, pi = CycleState(), PodInfo.of(p)
    pre = plugin.pre_filter(state, pi)
    if pre.code is Code.SKIP:
        return {n.name: OK for n in s.snapshot.node_list}
    return {n.name: plugin.filter(state, pi, n).code for n in s.snapshot.node_list}


def _zones(*zones: str) -> list[Node]:
    return [node(f"n{i}", labels={"zone": z}) for i, z in enumerate(zones)]


SPREAD = [
    {
        "maxSkew": 1,
        "topologyKey": "zone",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "w"}},
    }
]
W = {"app": "w"}


@pytest.mark.parametrize(
    ("bound", "want"),
    [
        ([], {"n0": OK, "n1": OK}),
        ([pod("b", labels=W, node_name="n0")], {"n0": U, "n1": OK}),
        ([pod("b", labels=W, node_name="n0"), pod("c", labels=W, node_name="n1")], {"n0": OK, "n1": OK}),
        ([pod("b", labels={"app": "other"}, node_name="n0")], {"n0": OK, "n1": OK}),
    ],
)
def test_pod_topology_spread_filter(bound: list[Pod], want: dict[str, Code]) -> None:
    p = pod("a", labels=W, topologySpreadConstraints=SPREAD)
    assert _cluster_filter(pod_topology_spread.NAME, _zones("a", "b"), bound, p) == want


def test_pod_topology_spread_missing_label_is_unresolvable() -> None:
    nodes = [*_zones("a"), node("bare")]
    got = _cluster_filter(pod_topology_spread.NAME, nodes, [], pod("a", labels=W, topologySpreadConstraints=SPREAD))
    assert got == {"n0": OK, "bare": UU}


def _anti(key: str = "kubernetes.io/hostname") -> dict[str, Any]:
    term = {"labelSelector": {"matchLabels": W}, "topologyKey": key}
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}


def _aff(key: str = "zone") -> dict[str, Any]:
    term = {"labelSelector": {"matchLabels": W}, "topologyKey": key}
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}


@pytest.mark.parametrize(
    ("bound", "p", "want"),
    [
        # incoming anti-affinity on hostname: not next to a matching pod
        ([pod("b", labels=W, node_name="n0")], pod("a", affinity=_anti()), {"n0": U, "n1": OK}),
        # existing pod's anti-affinity forbids the incoming pod that it matches
        ([pod("b", affinity=_anti(), node_name="n0")], pod("a", labels=W), {"n0": U, "n1": OK}),
        ([pod("b", affinity=_anti(), node_name="n0")], pod("a"), {"n0": OK, "n1": OK}),
        # affinity by zone: only where a matching pod runs
        ([pod("b", labels=W, node_name="n1")], pod("a", affinity=_aff()), {"n0": U, "n1": OK}),
        # first pod of a self-matching group may go anywhere
        ([], pod("a", labels=W, affinity=_aff()), {"n0": OK, "n1": OK}),
        ([], pod("a", affinity=_aff()), {"n0": U, "n1": U}),
    ],
)
def test_inter_pod_affinity_filter(bound: list[Pod], p: Pod, want: dict[str, Code]) -> None:
    assert _cluster_filter(inter_pod_affinity.NAME, _zones("a", "b"), bound, p) == want
