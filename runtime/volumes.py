"""Pod volumes on the node, CSI-shaped: `node_publish(volume, pod_uid)` prepares a host path that
the kubelet then hands to the runtime as a CRI `Mount{container_path, host_path, readonly}`;
`node_unpublish` undoes it, `cleanup_pod` removes everything a pod had.

Layout (like the kubelet's): `<root>/<pod-uid>/volumes/<plugin>/<volume-name>`.

Plugins:
* emptyDir  - a directory there, or a tmpfs for `medium: Memory` (sizeLimit becomes its size);
              shared by the pod's containers, removed with the pod.
* hostPath  - the node's path itself, after the `type` check (Directory, DirectoryOrCreate,
              File, FileOrCreate, Socket, CharDevice, BlockDevice; "" checks nothing).
* configMap / secret - key -> file projection (items, per-item mode, defaultMode). The runtime
              makes no API calls, so the caller hands the content in. Files are written the way the
              kubelet's atomic writer does (`..data` -> a timestamped folder, one symlink per
              file), so an update swaps all files at once. Secrets live on a tmpfs (never on disk).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class VolumeError(RuntimeError):
    pass


@dataclass
class KeyToPath:
    key: str
    path: str
    mode: int | None = None


@dataclass
class Volume:
    """One pod volume; which fields matter depends on `kind`."""

    name: str
    kind: str  # emptyDir | hostPath | configMap | secret
    medium: str = ""  # emptyDir: "" (node disk) or "Memory" (tmpfs)
    size_limit: int | None = None  # emptyDir Memory: tmpfs size in bytes
    path: str = ""  # hostPath: the node path
    type: str = ""  # hostPath: the type check
    data: dict[str, bytes | str] = field(default_factory=dict)  # configMap/secret content
    items: list[KeyToPath] | None = None  # None: every key, as a file named after it
    default_mode: int = 0o644
    optional: bool = False


class VolumePlugin(Protocol):
    kind: str

    def publish(self, vol: Volume, target: Path) -> Path: ...

    def unpublish(self, vol: Volume, target: Path) -> None: ...


def _mount_tmpfs(target: Path, size: int | None, mode: int = 0o777) -> None:
    target.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(target):
        return
    opts = f"mode={mode:o}" + (f",size={size}" if size else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(target)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise VolumeError(f"mount tmpfs at {target}: {proc.stderr.strip()}")


def _umount(target: Path) -> None:
    for _ in range(50):
        if not os.path.ismount(target):
            return
        if subprocess.run(["umount", str(target)], capture_output=True).returncode == 0:
            return
        time.sleep(0.05)  # EBUSY while a container that used it exits
    subprocess.run(["umount", "-l", str(target)], capture_output=True)


class EmptyDirPlugin:
    kind = "emptyDir"

    def publish(self, vol: Volume, target: Path) -> Path:
        if vol.medium == "Memory":
            _mount_tmpfs(target, vol.size_limit)
        else:
            target.mkdir(parents=True, exist_ok=True)
            os.chmod(target, 0o777)  # like the kubelet: any container user may write
        return target

    def unpublish(self, vol: Volume, target: Path) -> None:
        _umount(target)
        shutil.rmtree(target, ignore_errors=True)


_HOSTPATH_CHECKS = {
    "Directory": stat.S_ISDIR,
    "File": stat.S_ISREG,
    "Socket": stat.S_ISSOCK,
    "CharDevice": stat.S_ISCHR,
    "BlockDevice": stat.S_ISBLK,
}


class HostPathPlugin:
    kind = "hostPath"

    def publish(self, vol: Volume, target: Path) -> Path:
        path = Path(vol.path)
        if not path.is_absolute():
            raise VolumeError(f"hostPath {vol.name}: {vol.path!r} is not absolute")
        kind = vol.type
        if kind == "DirectoryOrCreate" and not path.exists():
            path.mkdir(parents=True, mode=0o755)
        elif kind == "FileOrCreate" and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o644)
        base = kind.removesuffix("OrCreate")
        if base in _HOSTPATH_CHECKS:
            try:
                mode = os.stat(path).st_mode
            except FileNotFoundError:
                raise VolumeError(f"hostPath {vol.name}: {path} does not exist (type {kind})") from None
            if not _HOSTPATH_CHECKS[base](mode):
                raise VolumeError(f"hostPath {vol.name}: {path} is not a {base}")
        elif kind not in ("", "DirectoryOrCreate", "FileOrCreate"):
            raise VolumeError(f"hostPath {vol.name}: unknown type {kind!r}")
        return path  # no mount of our own: the runtime bind-mounts the node path directly

    def unpublish(self, vol: Volume, target: Path) -> None:
        return None  # the node's path is not ours to remove


class ProjectedFilesPlugin:
    """configMap and secret: files from `data`, swapped in atomically on every publish."""

    def __init__(self, kind: str, in_memory: bool) -> None:
        self.kind = kind
        self.in_memory = in_memory

    def publish(self, vol: Volume, target: Path) -> Path:
        files = self._files(vol)
        if self.in_memory:
            _mount_tmpfs(target, None, 0o755)
        else:
            target.mkdir(parents=True, exist_ok=True)
        write_atomic(target, files)
        return target

    @staticmethod
    def _files(vol: Volume) -> dict[str, tuple[bytes, int]]:
        items = vol.items
        if items is None:
            items = [KeyToPath(k, k) for k in sorted(vol.data)]
        out: dict[str, tuple[bytes, int]] = {}
        for it in items:
            if it.key not in vol.data:
                if vol.optional:
                    continue
                raise VolumeError(f"{vol.name}: key {it.key!r} not in the data handed in")
            rel = os.path.normpath(it.path)
            if rel.startswith(("..", "/")) or rel == ".":
                raise VolumeError(f"{vol.name}: item path {it.path!r} must stay inside the volume")
            value = vol.data[it.key]
            raw = value.encode() if isinstance(value, str) else value
            out[rel] = (raw, it.mode if it.mode is not None else vol.default_mode)
        return out

    def unpublish(self, vol: Volume, target: Path) -> None:
        _umount(target)
        shutil.rmtree(target, ignore_errors=True)


def write_atomic(target: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """The kubelet's atomic writer: content in `..<timestamp>/`, `..data` pointing at it, and a
    top-level symlink per file through `..data`; readers see the old or the new set, never a mix."""
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.") + f"{time.time_ns() % 10**9:09d}"
    new = target / stamp
    new.mkdir(mode=0o755)
    for rel, (raw, mode) in files.items():
        p = new / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(raw)
        os.chmod(p, mode)
    link_tmp = target / "..data_tmp"
    with contextlib.suppress(FileNotFoundError):
        link_tmp.unlink()
    os.symlink(stamp, link_tmp)
    old = os.readlink(target / "..data") if (target / "..data").is_symlink() else None
    os.replace(link_tmp, target / "..data")
    tops = {rel.split("/", 1)[0] for rel in files}
    for top in tops:
        link = target / top
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link) if link.is_dir() else link.unlink()
            os.symlink(f"..data/{top}", link)
    for entry in target.iterdir():  # keys dropped since the last publish
        if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in tops:
            entry.unlink()
    if old and old != stamp:
        shutil.rmtree(target / old, ignore_errors=True)


def default_plugins() -> dict[str, VolumePlugin]:
    plugins: list[VolumePlugin] = [
        EmptyDirPlugin(),
        HostPathPlugin(),
        ProjectedFilesPlugin("configMap", in_memory=False),
        ProjectedFilesPlugin("secret", in_memory=True),
    ]
    return {p.kind: p for p in plugins}


class VolumeManager:
    def __init__(self, root: Path | str, plugins: dict[str, VolumePlugin] | None = None) -> None:
        self.root = Path(root)
        self.plugins = plugins if plugins is not None else default_plugins()

    def pod_dir(self, pod_uid: str) -> Path:
        if not pod_uid or "/" in pod_uid or pod_uid.startswith("."):
            raise VolumeError(f"bad pod uid {pod_uid!r}")
        return self.root / pod_uid

    def target(self, vol: Volume, pod_uid: str) -> Path:
        return self.pod_dir(pod_uid) / "volumes" / vol.kind / vol.name

    def _plugin(self, vol: Volume) -> VolumePlugin:
        try:
            return self.plugins[vol.kind]
        except KeyError:
            raise VolumeError(f"volume {vol.name}: no plugin for kind {vol.kind!r}") from None

    def node_publish(self, vol: Volume, pod_uid: str, target: Path | None = None) -> Path:
        """Make `vol` ready for `pod_uid`; returns the host path to bind into containers.
        Safe to repeat (configMap/secret: refreshes the content)."""
        return self._plugin(vol).publish(vol, target or self.target(vol, pod_uid))

    def node_unpublish(self, vol: Volume, pod_uid: str, target: Path | None = None) -> None:
        self._plugin(vol).unpublish(vol, target or self.target(vol, pod_uid))

    def cleanup_pod(self, pod_uid: str) -> None:
        """Unmount and delete every volume of the pod (after its containers are gone)."""
        pod = self.pod_dir(pod_uid)
        vols = pod / "volumes"
        if vols.is_dir():
            for kind_dir in vols.iterdir():
                for d in kind_dir.iterdir():
                    _umount(d)
        shutil.rmtree(pod, ignore_errors=True)
