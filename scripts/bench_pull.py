"""Image pull speed: kray's registry client against a raw download of the same blobs.

    .venv/bin/python scripts/bench_pull.py [--layers 4] [--layer-mib 32] [--runs 5]

A real distribution registry (Debian's docker-registry, through tests/registryserver) on
127.0.0.1 with token auth serves an image of `--layers` gzip layers of incompressible data.
Each run pulls it into an empty store with `RegistryClient.pull` (token, manifest, config,
layers 3 at a time, every digest checked, blobs renamed into the store) and then unpacks it
(`ImageStore.unpack`). The baselines, measured in the same run on the same registry:
  download: `curl` of every blob one after another, with the bearer token, to a file;
  unpack:   `tar -xzf` of the same layers, one after another, into an empty folder.
Medians over `--runs`; ratios are kray / baseline (lower is better, 1.0 = no overhead).
A second pull of an image already in the store (pull policy Always: only the manifest is read)
is timed too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from kray.runtime.imagebuild import write_layout  # noqa: E402
from kray.runtime.imageref import parse_reference  # noqa: E402
from kray.runtime.images import ImageStore  # noqa: E402
from kray.runtime.registry import Credentials, RegistryClient  # noqa: E402
from tests.registryserver import SERVICE, start_registry  # noqa: E402


def build_image(work: Path, layers: int, mib: int) -> Path:
    dirs = []
    for i in range(layers):
        d = work / f"layer{i}"
        (d / "data").mkdir(parents=True)
        for j in range(mib):
            (d / "data" / f"blob{i}-{j}").write_bytes(os.urandom(1 << 20))
        dirs.append(d)
    out = work / "layout"
    write_layout(out, dirs, config={"Cmd": ["true"]})
    return out


def token(url: str, repo: str) -> str:
    resp = httpx.get(url, params={"service": SERVICE, "scope": f"repository:{repo}:pull"}, auth=("alice", "s3cret"))
    resp.raise_for_status()
    return str(resp.json()["token"])


def raw_download(host: str, realm: str, repo: str, digests: list[str], dest: Path) -> float:
    started = time.perf_counter()
    auth = f"Authorization: Bearer {token(realm, repo)}"
    for d in digests:
        url = f"http://{host}/v2/{repo}/blobs/{d}"
        subprocess.run(["curl", "-sfL", "-H", auth, "-o", str(dest / d.split(":")[1]), url], check=True)
    return time.perf_counter() - started


def raw_unpack(blobs: Path, digests: list[str], dest: Path) -> float:
    started = time.perf_counter()
    for d in digests:
        subprocess.run(["tar", "-xzf", str(blobs / d.split(":")[1]), "-C", str(dest)], check=True)
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--layer-mib", type=int, default=32)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if not shutil.which("curl"):
        print("bench_pull: curl is needed for the baseline", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="kray-bench-pull-"))
    reg = start_registry(work / "registry", auth="token")
    try:
        layout = build_image(work, args.layers, args.layer_mib)
        reg.push_layout(layout, "bench/app", "v1")
        ref = parse_reference(f"{reg.host}/bench/app:v1")
        creds = Credentials("alice", "s3cret")
        results: dict[str, list[float]] = {"pull": [], "download": [], "unpack": [], "tar": [], "again": []}
        for run in range(args.runs):
            store = ImageStore(work / f"store{run}", use_overlay=False)
            client = RegistryClient()
            started = time.perf_counter()
            info = client.pull(ref, "app:v1", store, creds)
            results["pull"].append(time.perf_counter() - started)
            started = time.perf_counter()
            store.unpack("app:v1")
            results["unpack"].append(time.perf_counter() - started)
            started = time.perf_counter()
            client.pull(ref, "app:v1", store, creds)
            results["again"].append(time.perf_counter() - started)
            client.close()
            raw = work / f"raw{run}"
            raw.mkdir()
            assert reg.realm is not None
            results["download"].append(raw_download(reg.host, reg.realm, "bench/app", info.layers, raw))
            rootfs = work / f"rootfs{run}"
            rootfs.mkdir()
            results["tar"].append(raw_unpack(raw, info.layers, rootfs))
            for path in (store.root, raw, rootfs):
                shutil.rmtree(path, ignore_errors=True)
        med = {k: statistics.median(v) for k, v in results.items()}
        size_mib = info.size / (1 << 20)
        print(f"image: {args.layers} gzip layers, {size_mib:.1f} MiB compressed; {args.runs} runs, medians")
        print(f"pull (token+manifest+config+layers, digests checked): {med['pull']:.3f} s"
              f" = {size_mib / med['pull']:.0f} MiB/s")  # fmt: skip
        print(f"  baseline: curl of the same blobs, in turn:           {med['download']:.3f} s"
              f"   ratio {med['pull'] / med['download']:.2f}")  # fmt: skip
        print(f"unpack (ImageStore.unpack, whiteouts honoured):        {med['unpack']:.3f} s")
        print(f"  baseline: tar -xzf of the same layers, in turn:      {med['tar']:.3f} s"
              f"   ratio {med['unpack'] / med['tar']:.2f}")  # fmt: skip
        print(f"pull again, all blobs present (policy Always):         {med['again'] * 1000:.1f} ms")
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
