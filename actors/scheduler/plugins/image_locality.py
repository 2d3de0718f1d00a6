"""ImageLocality: prefer nodes that already hold the pod's images (kube-scheduler's plugin).

A node scores the sizes of the pod's images it has (from ``status.images``), each scaled by the
share of nodes that have that image too, so one node holding a rare image does not attract every
pod (spreading a popular image is cheap anyway). The sum is clamped between 23 MB and 1000 MB per
container and mapped onto 0..100, as in Kubernetes. Score only; no Filter.
"""

from __future__ import annotations

from typing import Any

from ..cycle_state import CycleState
from ..framework import MAX_NODE_SCORE, Handle
from ..node_info import NodeInfo
from ..pod_info import PodInfo
from ..status import SKIP, SUCCESS, Status

NAME = "ImageLocality"
MB = 1024 * 1024
MIN_THRESHOLD = 23 * MB
MAX_CONTAINER_THRESHOLD = 1000 * MB


class ImageLocality:
    name = NAME

    def __init__(self, args: dict[str, Any] | None = None, handle: Handle | None = None) -> None:
        if handle is None:
            raise ValueError("ImageLocality needs a handle (it reads the cache's image counts)")
        self.handle = handle

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status:
        counts = self.handle.cache.image_nodes
        spread = {img: counts[img] for img in pod.images if counts.get(img)}
        if not spread:
            return SKIP  # no node holds any of its images: every node would score 0
        state.write(NAME, (spread, max(len(self.handle.snapshot), 1)))
        return SUCCESS

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        spread, total = state.read(NAME)
        held = node.images
        score = 0
        for img, with_image in spread.items():
            size = held.get(img)
            if size is not None:
                score += size * min(with_image, total) // total
        ceiling = MAX_CONTAINER_THRESHOLD * max(len(pod.images), 1)
        score = min(max(score, MIN_THRESHOLD), ceiling)
        return MAX_NODE_SCORE * (score - MIN_THRESHOLD) // (ceiling - MIN_THRESHOLD)
