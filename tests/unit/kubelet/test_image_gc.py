"""Image GC (actors/kubelet/imagegc.py) on the fake CRI: thresholds, least recently used first,
what is never removed (in use, pinned, too young), and the ImageGCFailed warning."""

from __future__ import annotations

import pytest

from kray.actors.framework import FakeClock
from kray.actors.kubelet.fakes import FakeCri, rpc_error
from kray.actors.kubelet.imagegc import GCPolicy, ImageGC
from kray.runtime.cri import api_pb2 as pb

GIB = 1 << 30
MIB = 1 << 20


class Disk:
    """A filesystem whose free space is capacity minus what the fake runtime's images take."""

    def __init__(self, cri: FakeCri, capacity: int, other: int) -> None:
        self.cri, self.capacity, self.other = cri, capacity, other
        self.asked: list[str] = []

    def __call__(self, mountpoint: str) -> tuple[int, int]:
        self.asked.append(mountpoint)
        images = {**dict.fromkeys(self.cri.images), **self.cri.pulled}
        used = sum(self.cri.image_sizes.get(name, 1000) for name in images) + self.other
        return self.capacity, self.capacity - used


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


Setup = tuple[FakeCri, "Disk", ImageGC, list[tuple[str, str]]]


def setup(clock: FakeClock, sizes: dict[str, int], other: int = 0) -> Setup:
    cri = FakeCri(now_ns=lambda: int(clock.monotonic() * 1e9), images={"pinned"})
    for name, size in sizes.items():
        cri.pulled[name] = f"sha256:{name}-digest"
        cri.image_sizes[name] = size
    cri.image_sizes["pinned"] = 2 * GIB
    disk = Disk(cri, 10 * GIB, other)
    warnings: list[tuple[str, str]] = []

    async def warn(reason: str, message: str) -> None:
        warnings.append((reason, message))

    gc = ImageGC(cri, clock, GCPolicy(), warn, statfs=disk)
    return cri, disk, gc, warnings


async def use(cri: FakeCri, image: str, running: bool = True) -> None:
    """A container of `image` (running, or exited: still counts as using it)."""
    sid = await cri.run_pod_sandbox(pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name=f"p-{image}", uid=image)))
    cid = await cri.create_container(
        sid, pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image=image))
    )
    await cri.start_container(cid)
    if not running:
        cri.exit(cid, 0)


async def test_below_the_high_threshold_nothing_goes(clock: FakeClock) -> None:
    cri, disk, gc, warnings = setup(clock, {"a": 1 * GIB, "b": 1 * GIB}, other=4 * GIB)  # 80% full
    clock.advance(600)
    assert await gc.step() == 0
    assert cri.removed_images == [] and warnings == [] and disk.asked == [cri.image_fs_mountpoint]


async def test_frees_least_recently_used_down_to_the_low_threshold(clock: FakeClock) -> None:
    sizes = {"old": 1 * GIB, "mid": 1 * GIB, "new": 1 * GIB, "busy": 1 * GIB, "done": 512 * MIB}
    cri, _disk, gc, warnings = setup(clock, sizes, other=int(2.1 * GIB))  # 8.6 GiB of 10 (pinned: 2): 86%
    for name in ("old", "mid", "new"):  # each used by a container that then went away
        await use(cri, name)
        await gc.detect()
        cri.containers.clear()
        clock.advance(60)
    await use(cri, "busy")
    await use(cri, "done", running=False)  # exited containers still hold their image
    clock.advance(300)
    freed = await gc.step()
    # 86% -> 80% needs 0.6 GiB: the least recently used image alone is enough.
    assert cri.removed_images == ["old"] and freed == 1 * GIB and warnings == []
    assert set(gc.records) == {f"sha256:{n}" for n in ("mid", "new", "busy", "done", "pinned")}
    assert await gc.step() == 0  # now under the high threshold


async def test_never_removes_in_use_pinned_or_young_images_and_says_so(clock: FakeClock) -> None:
    sizes = {"busy": 3 * GIB, "young": 1 * GIB, "spare": 1 * GIB}
    cri, _disk, gc, warnings = setup(clock, sizes, other=5 * GIB // 2)  # 9.5 of 10 GiB: 95%
    await use(cri, "busy")
    await gc.detect()
    clock.advance(300)
    gc.records.pop("sha256:young")  # as if it had been pulled just now
    freed = await gc.step()  # down to 80% needs 1.5 GiB; only "spare" (1 GiB) may go
    assert cri.removed_images == ["spare"] and freed == 1 * GIB
    assert warnings == [
        (
            "ImageGCFailed",
            f"Failed to garbage collect required amount of images. Attempted to free {3 * GIB // 2} bytes,"
            f" but only found {1 * GIB} bytes eligible to free.",
        )
    ]


async def test_one_image_that_will_not_go_does_not_stop_the_rest(clock: FakeClock, monkeypatch) -> None:
    cri, _disk, gc, _warnings = setup(clock, {"a-stuck": 2 * GIB, "other": 2 * GIB}, other=3 * GIB)  # 90%
    await gc.detect()
    clock.advance(300)
    real = cri.remove_image

    async def remove(image: str) -> None:
        if image == "sha256:a-stuck":
            raise rpc_error(__import__("grpc").StatusCode.INTERNAL, "device busy")
        await real(image)

    monkeypatch.setattr(cri, "remove_image", remove)
    freed = await gc.step()
    assert cri.removed_images == ["other"] and freed == 2 * GIB
    assert "sha256:a-stuck" in gc.records  # kept for the next round


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError, match="low"):
        GCPolicy(high_threshold_percent=70, low_threshold_percent=80)
    with pytest.raises(ValueError):
        GCPolicy(high_threshold_percent=101)
