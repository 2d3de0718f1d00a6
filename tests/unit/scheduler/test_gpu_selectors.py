"""GPU model and memory selection through GPU-feature-discovery node labels
(nvidia.com/gpu.product, nvidia.com/gpu.memory in MiB, nvidia.com/gpu.count)."""

from __future__ import annotations

from typing import Any

from kray.crds import Node, Pod

from .builders import make_scheduler, node, pod

PRODUCT, MEMORY, COUNT = "nvidia.com/gpu.product", "nvidia.com/gpu.memory", "nvidia.com/gpu.count"


def gfd_node(name: str, product: str, memory_mib: int, gpus: int = 8) -> Node:
    labels = {PRODUCT: product, MEMORY: str(memory_mib), COUNT: str(gpus)}
    return node(name, cpu=64, memory="512Gi", gpu=gpus, labels=labels)


def cluster_nodes() -> list[Node]:
    return [
        gfd_node("a100", "NVIDIA-A100-SXM4-80GB", 81920),
        gfd_node("h100", "NVIDIA-H100-80GB-HBM3", 81559),
        gfd_node("h200", "NVIDIA-H200", 143771),
    ]


def memory_above(mib: int) -> dict[str, Any]:
    term = {"matchExpressions": [{"key": MEMORY, "operator": "Gt", "values": [str(mib)]}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


async def place(p: Pod, *bound: Pod) -> tuple[str | None, str | None]:
    s, binder, reporter, _ = make_scheduler(nodes=cluster_nodes())
    for b in bound:
        await binder.bind(b, b.spec.node_name or "")
    s.on_pod_add(p)
    await s.run_until_idle()
    key = f"default/{p.metadata.name}"
    return binder.bound.get(key), reporter.unschedulable_messages.get(key)


async def test_node_selector_on_gpu_product() -> None:
    for _ in range(3):  # not a lucky tie-break: only one node matches
        assert await place(pod("p", gpu=4, nodeSelector={PRODUCT: "NVIDIA-H200"})) == ("h200", None)


async def test_node_affinity_gt_on_gpu_memory() -> None:
    assert await place(pod("p", gpu=4, affinity=memory_above(100_000))) == ("h200", None)
    placed, _ = await place(pod("p", gpu=4, affinity=memory_above(81_600)))
    assert placed in ("a100", "h200")  # h100 has 81559 MiB: not greater


async def test_unschedulable_message_is_kube_style() -> None:
    busy = pod("busy", gpu=6, node_name="h200")
    want = pod("p", gpu=4, nodeSelector={PRODUCT: "NVIDIA-H200"}, affinity=memory_above(100_000))
    assert await place(want, busy) == (
        None,
        "0/3 nodes are available: 2 node(s) didn't match Pod's node affinity/selector, 1 Insufficient nvidia.com/gpu.",
    )
