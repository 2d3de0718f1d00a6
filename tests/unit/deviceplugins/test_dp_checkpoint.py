"""The device manager's checkpoint file: round trip, corrupt files, atomic replacement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kray.deviceplugins.checkpoint import Checkpoint, ContainerDevices, CorruptCheckpointError
from kray.deviceplugins.manager import DeviceManager


def _allocs() -> dict[tuple[str, str], dict[str, ContainerDevices]]:
    gpu = ContainerDevices(
        resource="nvidia.com/gpu",
        device_ids=["GPU-a", "GPU-b"],
        envs={"NVIDIA_VISIBLE_DEVICES": "GPU-a,GPU-b"},
        devices=[{"containerPath": "/dev/nvidia0", "hostPath": "/dev/nvidia0", "permissions": "rw"}],
    )
    widget = ContainerDevices(resource="example.com/widget", device_ids=["widget-0"])
    return {("uid-1", "train"): {"nvidia.com/gpu": gpu, "example.com/widget": widget}, ("uid-2", "c"): {}}


def test_round_trip(tmp_path: Path) -> None:
    cp = Checkpoint(tmp_path / "cp")
    assert cp.load() == {}
    allocs = _allocs()
    cp.save(allocs)
    loaded = cp.load()
    assert loaded[("uid-1", "train")] == allocs[("uid-1", "train")]
    assert not (tmp_path / "cp.tmp").exists()


@pytest.mark.parametrize(
    "mangle",
    [
        lambda text: text[: len(text) // 2],  # truncated
        lambda text: text.replace("GPU-b", "GPU-c"),  # edited: checksum no longer matches
        lambda text: "[]",
        lambda text: json.dumps({**json.loads(text), "version": 99}),
    ],
)
def test_corrupt_files_are_detected(tmp_path: Path, mangle) -> None:  # type: ignore[no-untyped-def]
    cp = Checkpoint(tmp_path / "cp")
    cp.save(_allocs())
    (tmp_path / "cp").write_text(mangle((tmp_path / "cp").read_text()))
    with pytest.raises(CorruptCheckpointError):
        cp.load()


def test_manager_survives_a_corrupt_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "cp").write_text("{not json")
    m = DeviceManager(tmp_path, checkpoint_path=tmp_path / "cp")
    m.start()
    try:
        assert m.checkpoint_error is not None
        assert m.allocated_pods() == set()
        assert (tmp_path / "cp.corrupt").exists()
    finally:
        m.stop()


def test_manager_restores_and_frees(tmp_path: Path) -> None:
    Checkpoint(tmp_path / "cp").save(_allocs())
    m = DeviceManager(tmp_path, checkpoint_path=tmp_path / "cp")
    m.start()
    try:
        assert m.checkpoint_error is None
        assert m.in_use("nvidia.com/gpu") == {"GPU-a", "GPU-b"}
        assert m.allocation("uid-1", "train")["nvidia.com/gpu"].envs["NVIDIA_VISIBLE_DEVICES"] == "GPU-a,GPU-b"
        assert sorted(m.retain_pods({"uid-2"})) == ["GPU-a", "GPU-b", "widget-0"]
        assert m.in_use("nvidia.com/gpu") == set()
        assert Checkpoint(tmp_path / "cp").load().get(("uid-1", "train")) is None
    finally:
        m.stop()
