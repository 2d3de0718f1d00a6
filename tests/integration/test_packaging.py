"""A plain wheel carries the whole `kray` namespace: the package-dir mapping and the protos."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_maps_folders_into_one_namespace(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("kray-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in (
        "kray/cli/main.py",
        "kray/actors/apiserver/app.py",
        "kray/actors/store/etcd.py",
        "kray/crds/meta.py",
        "kray/runtime/oci.py",
        "kray/deviceplugins/__init__.py",
        "kray/actors/store/etcdpb/rpc.proto",
    ):
        assert module in names, module
    # Nothing leaks out under the folder names, which belong to other PyPI projects.
    assert not any(n.startswith(("actors/", "crds/", "runtime/", "deviceplugins/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "kray = kray.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
