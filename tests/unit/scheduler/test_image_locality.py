"""ImageLocality: nodes that already hold a pod's images score higher, scaled by image spread."""

from __future__ import annotations

from kray.actors.scheduler.cycle_state import CycleState
from kray.actors.scheduler.plugins.image_locality import ImageLocality
from kray.actors.scheduler.pod_info import PodInfo, normalize_image
from kray.actors.scheduler.status import Code
from kray.crds import Node, Pod

from .builders import make_scheduler, node, pod

GB = 1024**3
TRAIN = "registry.example.com/ml/train:2"


def with_images(n: Node, *images: tuple[list[str], int]) -> Node:
    body = n.model_dump(by_alias=True, exclude_none=True)
    body["status"]["images"] = [{"names": names, "sizeBytes": size} for names, size in images]
    return Node.model_validate(body)


def image_pod(name: str, image: str) -> Pod:
    p = pod(name, cpu=1)
    p.spec.containers[0].image = image
    return p


def test_image_names_are_normalized_like_the_kubelet_reports_them() -> None:
    assert normalize_image("busybox") == "docker.io/library/busybox:latest"
    assert normalize_image("user/app:1") == "docker.io/user/app:1"
    assert normalize_image("localhost:5000/app") == "localhost:5000/app:latest"
    assert normalize_image(TRAIN) == TRAIN
    assert normalize_image("ghcr.io/x/y@sha256:abc") == "ghcr.io/x/y@sha256:abc"


async def test_the_node_with_the_image_wins() -> None:
    nodes = [
        with_images(node("warm"), ([TRAIN], 2 * GB)),
        node("cold"),
        with_images(node("other"), (["docker.io/library/busybox:latest"], 5 * 1024**2)),
    ]
    for i in range(5):  # not a lucky tie-break
        s, binder, _, _ = make_scheduler(nodes=nodes, seed=i)
        s.on_pod_add(image_pod("p", TRAIN))
        await s.run_until_idle()
        assert binder.bound["default/p"] == "warm"


def test_scores_scale_with_size_and_spread() -> None:
    big = [with_images(node(f"n{i}"), ([TRAIN], 2 * GB)) for i in range(2)] + [node(f"e{i}") for i in range(2)]
    s, _, _, _ = make_scheduler(nodes=big)
    s.cache.update_snapshot(s.snapshot)
    plugin = ImageLocality(None, s.framework)
    state, pi = CycleState(), PodInfo.of(image_pod("p", TRAIN))
    assert plugin.pre_score(state, pi, s.snapshot.node_list).code is Code.SUCCESS
    scores = {n.name: plugin.score(state, pi, n) for n in s.snapshot.node_list}
    # 2 GB held on half the nodes counts as 1 GB: clamped to the 1000 MB per-container ceiling.
    assert scores == {"n0": 100, "n1": 100, "e0": 0, "e1": 0}
    small = image_pod("q", "busybox")
    assert plugin.pre_score(CycleState(), PodInfo.of(small), s.snapshot.node_list).code is Code.SKIP
    s.on_node_update(node("n1"))  # n1 dropped the image: the cache's spread count follows
    assert s.cache.image_nodes[TRAIN] == 1
    s.on_node_delete("n0")
    assert TRAIN not in s.cache.image_nodes
