"""Image garbage collection, as the kubelet's image GC manager does it.

Every `image_gc_period` the kubelet looks at the images the runtime holds and at what its
containers (running or exited) use, and remembers when it first saw each image and when one was
last in use. When the image filesystem (CRI ImageFsInfo's mountpoint, measured with statvfs) is
at least `image_gc_high_threshold_percent` full, it removes images no container uses, the least
recently used first, until usage is down to `image_gc_low_threshold_percent`. It never removes an
image a container uses, a pinned one (an import: nothing to pull it from again), or one first
seen less than `image_minimum_gc_age` ago (a pod may be about to use it). When that cannot free
enough it says so with an `ImageGCFailed` Event on the Node.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kray.actors.framework.ports import Clock

from .ports import CriPort

log = logging.getLogger(__name__)

StatFs = Callable[[str], tuple[int, int]]  # mountpoint -> (capacity bytes, available bytes)
NodeWarning = Callable[[str, str], Awaitable[None]]  # (reason, message) as an Event on the Node


def statvfs(path: str) -> tuple[int, int]:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


@dataclass
class ImageRecord:
    first_detected: float
    last_used: float
    size: int
    pinned: bool


@dataclass(frozen=True)
class GCPolicy:
    high_threshold_percent: int = 85
    low_threshold_percent: int = 80
    minimum_gc_age: float = 120.0

    def __post_init__(self) -> None:
        if not 0 <= self.low_threshold_percent <= self.high_threshold_percent <= 100:
            raise ValueError(
                f"image GC thresholds: want 0 <= low ({self.low_threshold_percent}) <= high"
                f" ({self.high_threshold_percent}) <= 100"
            )


class ImageGC:
    def __init__(
        self, cri: CriPort, clock: Clock, policy: GCPolicy, warn: NodeWarning, statfs: StatFs = statvfs
    ) -> None:
        self.cri, self.clock, self.policy, self.warn, self.statfs = cri, clock, policy, warn, statfs
        self.records: dict[str, ImageRecord] = {}  # image id -> what was seen of it
        self.freed_total = 0

    async def detect(self) -> set[str]:
        """Refresh the records; returns the ids of the images containers use now."""
        now = self.clock.monotonic()
        images = await self.cri.list_images()
        in_use = {c.image_ref for c in await self.cri.list_containers() if c.image_ref}
        seen = set()
        for img in images:
            seen.add(img.id)
            rec = self.records.get(img.id)
            if rec is None:
                rec = self.records[img.id] = ImageRecord(now, 0.0, img.size, img.pinned)
            rec.size, rec.pinned = img.size, img.pinned
            if img.id in in_use:
                rec.last_used = now
        for gone in set(self.records) - seen:
            del self.records[gone]
        return in_use

    async def step(self) -> int:
        """One GC round: bytes freed (0 when the filesystem is below the high threshold)."""
        in_use = await self.detect()
        info = await self.cri.image_fs_info()
        if not info.image_filesystems:
            return 0
        mountpoint = info.image_filesystems[0].fs_id.mountpoint
        capacity, available = self.statfs(mountpoint)
        if capacity <= 0:
            return 0
        usage_percent = 100 - available * 100 // capacity
        if usage_percent < self.policy.high_threshold_percent:
            return 0
        to_free = capacity * (100 - self.policy.low_threshold_percent) // 100 - available
        log.info(
            "image filesystem %s is %d%% full (high threshold %d%%): freeing %d bytes",
            mountpoint, usage_percent, self.policy.high_threshold_percent, to_free,
        )  # fmt: skip
        freed = await self.free(to_free, in_use)
        if freed < to_free:
            await self.warn(
                "ImageGCFailed",
                f"Failed to garbage collect required amount of images. Attempted to free {to_free} bytes,"
                f" but only found {freed} bytes eligible to free.",
            )
        return freed

    async def free(self, to_free: int, in_use: set[str]) -> int:
        """Remove unused images, least recently used first, until `to_free` bytes went."""
        now = self.clock.monotonic()
        candidates = [
            (rec.last_used, rec.first_detected, image_id)
            for image_id, rec in self.records.items()
            if image_id not in in_use and not rec.pinned and now - rec.first_detected >= self.policy.minimum_gc_age
        ]
        freed = 0
        for _, _, image_id in sorted(candidates):
            if freed >= to_free:
                break
            try:
                await self.cri.remove_image(image_id)
            except Exception as exc:  # one image that will not go must not stop the rest
                log.warning("image GC: removing %s failed: %s", image_id, exc)
                continue
            freed += self.records.pop(image_id).size
            log.info("image GC removed %s", image_id)
        self.freed_total += freed
        return freed
