"""Which scheduler shard owns a pod: a stable hash of namespace/name, mod the shard count.

Gang members hash by their PodGroup instead, so a whole gang lands on one shard: Coscheduling's
Permit can only count members its own shard reserved. The hash is blake2b, not ``hash()``, which
is salted per process and would split pods differently in each shard actor.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from kray.crds import Pod
from kray.crds.scheduling import POD_GROUP_LABEL


def shard_key(pod: Pod) -> str:
    ns = pod.metadata.namespace or "default"
    group = (pod.metadata.labels or {}).get(POD_GROUP_LABEL)
    return f"{ns}/podgroup/{group}" if group else f"{ns}/{pod.metadata.name}"


def shard_of(pod: Pod, shards: int) -> int:
    if shards <= 1:
        return 0
    digest = hashlib.blake2b(shard_key(pod).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index {self.index} out of range for {self.count} shards")

    def owns(self, pod: Pod) -> bool:
        return shard_of(pod, self.count) == self.index
