"""Write OCI image layouts (as a tar) from directories, without a registry or a daemon.

Used by scripts/build_test_image.sh (the busybox test image) and by tests that need layered images
(whiteouts). `python -m kray.runtime.imagebuild --rootfs DIR [--layer DIR ...] --out X.tar`.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


def tar_dir(src: Path) -> bytes:
    """An uncompressed, reproducible layer tar of `src` (paths relative, numeric owners)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                full = Path(dirpath) / name
                arc = str(full.relative_to(src))
                info = tf.gettarinfo(str(full), arcname=arc)
                info.mtime = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(full, "rb") as f:
                        tf.addfile(info, f)
                else:
                    tf.addfile(info)
    return buf.getvalue()


def _blob(blobs: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return f"sha256:{digest}"


def write_layout(
    out_dir: Path,
    layers: list[Path],
    config: dict[str, Any] | None = None,
    ref: str = "latest",
    compress: bool = True,
) -> str:
    """Write an OCI image layout into `out_dir`; returns the manifest digest."""
    blobs = out_dir / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    layer_descs, diff_ids = [], []
    for layer in layers:
        raw = tar_dir(layer)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        data = gzip.compress(raw, mtime=0) if compress else raw
        layer_descs.append(
            {
                "mediaType": MT_LAYER_GZIP if compress else MT_LAYER_TAR,
                "digest": _blob(blobs, data),
                "size": len(data),
            }
        )
    cfg = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(0)),
        "architecture": "amd64",
        "os": "linux",
        "config": config or {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    cfg_bytes = json.dumps(cfg, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": _blob(blobs, cfg_bytes), "size": len(cfg_bytes)},
        "layers": layer_descs,
    }
    man_bytes = json.dumps(manifest, sort_keys=True).encode()
    man_digest = _blob(blobs, man_bytes)
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [
            {
                "mediaType": MT_MANIFEST,
                "digest": man_digest,
                "size": len(man_bytes),
                "annotations": {"org.opencontainers.image.ref.name": ref},
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
    }
    (out_dir / "index.json").write_text(json.dumps(index))
    (out_dir / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return man_digest


def write_layout_tar(
    out_tar: Path, layers: list[Path], config: dict[str, Any] | None = None, ref: str = "latest"
) -> str:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kray-img-") as tmp:
        digest = write_layout(Path(tmp), layers, config, ref)
        with tarfile.open(out_tar, "w") as tf:
            for entry in sorted(os.listdir(tmp)):
                tf.add(os.path.join(tmp, entry), arcname=entry)
    return digest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kray.runtime.imagebuild")
    ap.add_argument("--rootfs", required=True, help="first (base) layer directory")
    ap.add_argument("--layer", action="append", default=[], help="further layer directories")
    ap.add_argument("--out", required=True, help="output tar of the OCI layout")
    ap.add_argument("--ref", default="latest")
    ap.add_argument("--cmd", nargs="*", default=["sh"])
    args = ap.parse_args(argv)
    layers = [Path(args.rootfs), *map(Path, args.layer)]
    config = {"Cmd": args.cmd, "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
    print(write_layout_tar(Path(args.out), layers, config, args.ref))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
