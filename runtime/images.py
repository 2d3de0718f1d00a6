"""The node's image store: images pulled from registries (registry.py) or imported from OCI
image layouts (tars or folders).

Layout under `root/`: `blobs/sha256/<hex>` (content store shared by all images), `images.json`
(name -> manifest digest and config), `rootfs/<manifest-hex>/` (each image unpacked once, layers
applied in order with whiteouts). Each container gets an overlayfs over the unpacked rootfs (a copy
when overlay is unavailable), so containers never write into the shared cache.

The image name `host` is special: no layers; the container's rootfs is an empty mount point over
which the bundle bind-mounts the node's own directories read-only plus a tmpfs /tmp
(ContainerConfig.host_image, oci.host_rootfs_mounts).
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST_IMAGE = "host"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class ImageError(RuntimeError):
    pass


@dataclass
class ImageInfo:
    name: str
    digest: str  # manifest digest
    config_digest: str
    layers: list[str]
    size: int
    config: dict[str, Any] = field(default_factory=dict)  # Entrypoint, Cmd, Env, WorkingDir, User
    # Where a registry pull got it ("docker.io/library/busybox@sha256:..."); "" for an import,
    # which has no registry to ask again (CRI's repo_digests).
    repo_digest: str = ""


def normalize(name: str) -> str:
    """`busybox` -> `busybox:latest`; digests and explicit tags are left alone."""
    last = name.rsplit("/", 1)[-1]
    if "@" in name or ":" in last:
        return name
    return f"{name}:latest"


def _safe_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    # tar_filter refuses absolute names and anything landing outside `dest` (also through a symlink
    # a previous layer planted), but it also strips setuid and sticky bits, which images need.
    checked = tarfile.tar_filter(member, dest)
    return checked.replace(mode=member.mode, deep=False)


def _open_layer(path: Path) -> tarfile.TarFile:
    """A layer tar, plain, gzip or zstd (told by its magic bytes, as containerd does)."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return tarfile.open(fileobj=gzip.open(path), mode="r|")
    if magic == ZSTD_MAGIC:
        try:
            import zstandard
        except ImportError:
            raise ImageError(
                f"layer {path.name} is zstd-compressed: install the zstandard package on the node"
                " (pip install 'kray[zstd]')"
            ) from None
        reader = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)  # noqa: SIM115
        return tarfile.open(fileobj=reader, mode="r|")  # type: ignore[call-overload]
    return tarfile.open(path, mode="r|")


def apply_layer(layer: Path, dest: Path) -> None:
    """Apply one layer tar (plain or gzip) onto `dest`, honouring OCI whiteouts: `.wh.<name>`
    deletes <name> from the lower layers and `.wh..wh..opq` empties its directory first."""
    members: list[tarfile.TarInfo] = []
    tf = _open_layer(layer)
    # Stream once to find the whiteouts, then extract in a second pass: an opaque marker must clear
    # the lower content before any of this layer's entries in that directory land.
    with tf:
        for m in tf:
            members.append(m)
    for m in members:
        base = os.path.basename(m.name)
        parent = dest / os.path.dirname(m.name.lstrip("/"))
        if not _inside(dest, parent):
            continue  # a path through a symlink out of the rootfs: never touch the node's files
        if base == OPAQUE:
            if parent.is_dir() and not parent.is_symlink():
                for child in parent.iterdir():
                    _remove(child)
        elif base.startswith(WHITEOUT):
            _remove(parent / base[len(WHITEOUT) :])
    tf = _open_layer(layer)
    with tf:
        for m in tf:
            base = os.path.basename(m.name)
            if base.startswith(WHITEOUT):
                continue
            target = dest / m.name.lstrip("/")
            if not _inside(dest, target.parent):
                raise ImageError(f"{layer.name}: {m.name} would land outside the rootfs")
            # A layer replaces whatever the lower ones had at this path (file <-> dir <-> link).
            if (target.exists() or target.is_symlink()) and not (m.isdir() and target.is_dir()):
                _remove(target)
            tf.extract(m, dest, numeric_owner=True, filter=_safe_filter)


def _inside(root: Path, path: Path) -> bool:
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


def _remove(p: Path) -> None:
    if p.is_symlink() or p.is_file():
        p.unlink()
    elif p.is_dir():
        shutil.rmtree(p)
    elif p.exists():
        p.unlink()


def overlay_supported() -> bool:
    try:
        return "overlay" in Path("/proc/filesystems").read_text()
    except OSError:
        return False


class ImageStore:
    def __init__(self, root: Path | str, use_overlay: bool | None = None) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        (self.root / "rootfs").mkdir(exist_ok=True)
        self.db = self.root / "images.json"
        self.use_overlay = overlay_supported() if use_overlay is None else use_overlay

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """images.json under an exclusive lock; changes to the yielded dict are saved."""
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            db: dict[str, Any] = json.loads(self.db.read_text()) if self.db.exists() else {}
            before = json.dumps(db, sort_keys=True)
            yield db
            if json.dumps(db, sort_keys=True) != before:
                tmp = self.db.with_suffix(".tmp")
                tmp.write_text(json.dumps(db, indent=1))
                os.replace(tmp, self.db)

    def usage(self) -> tuple[int, int]:
        """(bytes, inodes) the store takes on disk: blobs and unpacked rootfs caches (hard links
        counted once each time they appear, as `du -l`)."""
        used = inodes = 0
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in (*dirnames, *filenames):
                with contextlib.suppress(OSError):
                    st = os.lstat(os.path.join(dirpath, name))
                    used += st.st_blocks * 512
                    inodes += 1
        return used, inodes

    def prune(self, min_age: float = 3600.0) -> list[str]:
        """Remove blobs and rootfs caches that no image names, last touched over `min_age`
        seconds ago (younger ones may belong to a pull in progress). Returns what went."""
        with self._locked() as db:
            live = {d for img in db.values() for d in (img["digest"], img["config_digest"], *img["layers"])}
        cutoff = time.time() - min_age
        gone = []
        for path in [*self.blobs.iterdir(), *(self.root / "rootfs").iterdir()]:
            digest = "sha256:" + path.name.lstrip(".").split(".")[0].split("-")[0]
            if digest in live and not path.name.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError):
                if path.lstat().st_mtime > cutoff or (path.is_dir() and self._in_use(path)):
                    continue
                _remove(path)
                gone.append(path.name)
        return gone

    def blob_path(self, digest: str) -> Path:
        algo, _, hexd = digest.partition(":")
        if algo != "sha256" or len(hexd) != 64:
            raise ImageError(f"unsupported digest {digest!r}")
        return self.blobs / hexd

    def import_image(self, source: Path | str, name: str) -> ImageInfo:
        """Import an OCI image layout (a directory, or a tar of one) under `name`."""
        source = Path(source)
        name = normalize(name)
        if source.is_dir():
            return self._import_layout(source, name)
        with tempfile.TemporaryDirectory(prefix="kray-import-", dir=self.root) as tmp:
            with tarfile.open(source) as tf:
                tf.extractall(tmp, filter="data")
            return self._import_layout(Path(tmp), name)

    def _import_layout(self, layout: Path, name: str) -> ImageInfo:
        index = json.loads((layout / "index.json").read_text())
        desc = self._pick_manifest(layout, index, name.rsplit(":", 1)[-1])
        manifest_digest = desc["digest"]
        man = json.loads(self._copy_blob(layout, manifest_digest).read_bytes())
        if "manifests" in man:  # a nested index (multi-platform): take linux/amd64
            desc = self._pick_manifest(layout, man, None)
            manifest_digest = desc["digest"]
            man = json.loads(self._copy_blob(layout, manifest_digest).read_bytes())
        cfg = json.loads(self._copy_blob(layout, man["config"]["digest"]).read_bytes())
        for ld in man.get("layers", []):
            self._copy_blob(layout, ld["digest"])
        return self.register(name, manifest_digest, man, cfg)

    def register(
        self, name: str, manifest_digest: str, manifest: dict[str, Any], config: dict[str, Any], repo_digest: str = ""
    ) -> ImageInfo:
        """Record `name` as the image whose manifest, config and layers are already in the store."""
        layers = [ld["digest"] for ld in manifest.get("layers", [])]
        missing = [d for d in (manifest["config"]["digest"], *layers) if not self.has_blob(d)]
        if missing:
            raise ImageError(f"{name}: blobs missing from the store: {', '.join(missing)}")
        size = sum(int(ld.get("size", 0)) for ld in manifest.get("layers", []))
        info = ImageInfo(
            normalize(name), manifest_digest, manifest["config"]["digest"], layers, size, config.get("config") or {}
        )
        info.repo_digest = repo_digest
        with self._locked() as db:
            db[info.name] = info.__dict__
        return info

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def write_blob(self, digest: str, chunks: Iterable[bytes]) -> Path:
        """Store a blob streamed in `chunks`, refusing it unless its content hashes to `digest`.
        Written beside its final name and renamed into place: a blob in the store is whole."""
        dst = self.blob_path(digest)
        if dst.exists():
            return dst
        h = hashlib.sha256()
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            with open(tmp, "wb") as fo:
                for chunk in chunks:
                    h.update(chunk)
                    fo.write(chunk)
            if "sha256:" + h.hexdigest() != digest:
                raise ImageError(f"blob {digest} does not match its content (got sha256:{h.hexdigest()})")
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
        return dst

    @staticmethod
    def _pick_manifest(layout: Path, index: dict[str, Any], tag: str | None) -> dict[str, Any]:
        manifests = index.get("manifests") or []
        if not manifests:
            raise ImageError(f"{layout}: index has no manifests")
        for m in manifests:
            if tag and (m.get("annotations") or {}).get(REF_ANNOTATION) == tag:
                return dict(m)
        for m in manifests:
            plat = m.get("platform") or {}
            if plat.get("os", "linux") == "linux" and plat.get("architecture", "amd64") == "amd64":
                return dict(m)
        return dict(manifests[0])

    def _copy_blob(self, layout: Path, digest: str) -> Path:
        """Copy a blob into the store, checking its digest; returns its path in the store."""
        if self.has_blob(digest):
            return self.blob_path(digest)
        with open(layout / "blobs" / digest.replace(":", "/"), "rb") as fi:
            return self.write_blob(digest, iter(lambda: fi.read(1 << 20), b""))

    def list_images(self) -> list[ImageInfo]:
        with self._locked() as db:
            return [ImageInfo(**v) for _, v in sorted(db.items())]

    def image_status(self, name: str) -> ImageInfo | None:
        with self._locked() as db:
            v = db.get(normalize(name))
        return ImageInfo(**v) if v else None

    def remove_image(self, name: str) -> bool:
        """Forget `name`; blobs and the unpacked rootfs go when no other image (or mounted
        container) still uses them."""
        with self._locked() as db:
            v = db.pop(normalize(name), None)
            if v is None:
                return False
            live = {d for img in db.values() for d in (img["digest"], img["config_digest"], *img["layers"])}
            live_roots = {img["digest"] for img in db.values()}
        for d in (v["digest"], v["config_digest"], *v["layers"]):
            if d not in live:
                with contextlib.suppress(FileNotFoundError):
                    self.blob_path(d).unlink()
        if v["digest"] not in live_roots:
            cache = self._rootfs_dir(v["digest"])
            if not self._in_use(cache):
                shutil.rmtree(cache, ignore_errors=True)
        return True

    def _rootfs_dir(self, digest: str) -> Path:
        return self.root / "rootfs" / digest.partition(":")[2]

    @staticmethod
    def _in_use(path: Path) -> bool:
        with contextlib.suppress(OSError):
            return str(path) in Path("/proc/self/mountinfo").read_text()
        return False

    def unpack(self, name: str) -> Path:
        """The image's rootfs, unpacked once per manifest digest (read-only by convention)."""
        info = self.image_status(name)
        if info is None:
            raise ImageError(f"image {name!r} not found")
        dest = self._rootfs_dir(info.digest)
        if dest.is_dir():
            return dest
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name[:12]}-", dir=dest.parent))
        try:
            for layer in info.layers:
                apply_layer(self.blob_path(layer), tmp)
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, dest)  # atomic: a concurrent unpack of the same image loses harmlessly
            except OSError:
                if not dest.is_dir():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return dest

    def mount_rootfs(self, name: str, target: Path | str, scratch: Path | str) -> str:
        """Give a container its own writable rootfs at `target`, its writes in `scratch`.
        Returns how: "overlay", "copy" or "host"."""
        target, scratch = Path(target), Path(scratch)
        target.mkdir(parents=True, exist_ok=True)
        if name == HOST_IMAGE:
            return "host"  # an empty mount point: the bundle's mounts bring the node's dirs in
        lower = self.unpack(name)
        if self.use_overlay:
            upper, work = scratch / "upper", scratch / "work"
            upper.mkdir(parents=True, exist_ok=True)
            work.mkdir(parents=True, exist_ok=True)
            opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
            proc = subprocess.run(
                ["mount", "-t", "overlay", "overlay", "-o", opts, str(target)], capture_output=True, text=True
            )
            if proc.returncode == 0:
                return "overlay"
        shutil.rmtree(target)
        subprocess.run(["cp", "-a", str(lower), str(target)], check=True)
        return "copy"

    @staticmethod
    def unmount_rootfs(target: Path | str) -> None:
        target = Path(target)
        for _ in range(50):
            if not os.path.ismount(target):
                return
            if subprocess.run(["umount", str(target)], capture_output=True).returncode == 0:
                return
            time.sleep(0.05)  # EBUSY while the container's last processes exit
        subprocess.run(["umount", "-l", str(target)], check=False)
