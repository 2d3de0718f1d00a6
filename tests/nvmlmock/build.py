"""Build the mock libnvidia-ml.so.1 (``mock_nvml.c``) and describe the GPUs it pretends to have.

``build_mock_nvml(dir)`` compiles the library into ``dir`` (skipped when the source has not
changed); ``MockLayout.write(path)`` writes the config file the library reads at ``nvmlInit``
(pointed to by ``KRAY_MOCK_NVML_CONFIG``), ``events_path``/``lost_path`` are its fault-injection
files and ``set_utilization`` changes what its GPUs report as busy while a process runs.
``two_islands()`` and ``nvswitch()`` are the two 8-GPU servers the tests use.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SOURCE = Path(__file__).with_name("mock_nvml.c")
LIBRARY_NAME = "libnvidia-ml.so.1"  # the name pynvml dlopens on Linux
CONFIG_ENV = "KRAY_MOCK_NVML_CONFIG"

# NVML_TOPOLOGY_* levels, spelled out so a layout reads like nvidia-smi topo -m.
SINGLE, HOSTBRIDGE, NODE, SYSTEM = 10, 30, 40, 50

H200_MEMORY = 143771 * 1024**2  # what NVML reports as total memory on an H200 SXM
H200_NVLINKS = 18  # NVLink 4 links per Hopper GPU
# The PCI bus ids of the eight GPUs in an HGX H100/H200 baseboard.
HGX_BUSES = ("18", "2A", "3A", "5D", "9A", "AB", "BA", "DB")


class CompilerMissingError(RuntimeError):
    pass


def build_mock_nvml(out_dir: Path) -> Path:
    """Compile ``mock_nvml.c`` into ``out_dir/libnvidia-ml.so.1``; reuse it if the source is unchanged."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    out_dir.mkdir(parents=True, exist_ok=True)
    library, stamp = out_dir / LIBRARY_NAME, out_dir / f"{LIBRARY_NAME}.sha256"
    if library.exists() and stamp.exists() and stamp.read_text() == digest:
        return library
    gcc = shutil.which("gcc")
    if gcc is None:
        # Not a skip: CI installs gcc (scripts/install_system.sh), so a missing one is a broken setup.
        raise CompilerMissingError("gcc is needed to build the mock NVML library: apt-get install gcc libc6-dev")
    partial = out_dir / f"{LIBRARY_NAME}.{os.getpid()}.tmp"
    # Warnings stay warnings: another gcc's new diagnostics must not fail the test suite.
    flags = ["-O2", "-Wall", "-Wextra", "-shared", "-fPIC", f"-Wl,-soname,{LIBRARY_NAME}"]
    proc = subprocess.run([gcc, *flags, "-o", str(partial), str(SOURCE), "-lpthread"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"gcc could not build {SOURCE.name}:\n{proc.stderr}")
    partial.replace(library)  # atomic: a concurrent reader never sees half a library
    stamp.write_text(digest)
    return library


@dataclass(frozen=True)
class MockGpu:
    uuid: str
    bus_id: str  # NVML's spelling: 8-digit domain, upper-case hex
    name: str = "NVIDIA H200"
    memory_bytes: int = H200_MEMORY
    compute_capability: str = "9.0"
    minor: int = 0
    mig: int = 0  # 1 enabled, 0 disabled, -1 not supported (pre-Ampere)
    links: int = H200_NVLINKS
    numa_node: int | None = None  # written to the fake sysfs by write_sysfs
    util: int = 0  # percent busy; -1: the GPU does not report it (NVML_ERROR_NOT_SUPPORTED)
    used: int = 0  # bytes of memory in use (at most memory_bytes)

    def line(self) -> str:
        return (
            f"gpu uuid={self.uuid} name={self.name.replace(' ', '_')} mem={self.memory_bytes} "
            f"bus={self.bus_id} cc={self.compute_capability} minor={self.minor} mig={self.mig} links={self.links} "
            f"util={self.util} used={self.used}"
        )


@dataclass
class MockLayout:
    gpus: list[MockGpu]
    # (gpu, gpu index or a non-GPU bus id such as an NVSwitch's, links)
    nvlinks: list[tuple[int, int | str, int]] = field(default_factory=list)
    ancestors: dict[tuple[int, int], int] = field(default_factory=dict)  # unlisted pairs: SYSTEM
    driver: str = "550.54.15"

    def write(self, path: Path) -> Path:
        lines = [f"driver {self.driver}", *(g.line() for g in self.gpus)]
        lines += [f"nvlink {a} {b} {n}" for a, b, n in self.nvlinks]
        lines += [f"ancestor {a} {b} {level}" for (a, b), level in self.ancestors.items()]
        path.write_text("\n".join(lines) + "\n")
        return path

    def write_sysfs(self, root: Path) -> Path:
        """A /sys/bus/pci/devices stand-in holding each GPU's numa_node (sysfs: 4-digit domain)."""
        for g in self.gpus:
            if g.numa_node is not None:
                node_dir = root / g.bus_id.lower()[-12:]
                node_dir.mkdir(parents=True, exist_ok=True)
                (node_dir / "numa_node").write_text(f"{g.numa_node}\n")
        return root


def events_path(config: Path) -> Path:
    """Lines ``<uuid> <xid>`` appended here are XID events (uuid ``-``: not attributable)."""
    return config.with_name(config.name + ".events")


def lost_path(config: Path) -> Path:
    """UUIDs listed here answer NVML_ERROR_GPU_IS_LOST."""
    return config.with_name(config.name + ".lost")


def util_path(config: Path) -> Path:
    """Lines ``<uuid> <util> <used>`` here override a GPU's utilization and memory in use."""
    return config.with_name(config.name + ".util")


def set_utilization(config: Path, usage: dict[str, tuple[int, int]]) -> None:
    """What each GPU (by UUID) reports from now on: (percent busy or -1, memory used in bytes)."""
    path = util_path(config)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text("".join(f"{u} {busy} {used}\n" for u, (busy, used) in usage.items()))
    partial.replace(path)  # atomic: the mock never reads half a file


def inject_xid(config: Path, uuid: str | None, xid: int) -> None:
    with events_path(config).open("a") as f:
        f.write(f"{uuid or '-'} {xid}\n")  # one write of a whole line: the mock skips partial ones


def set_lost(config: Path, uuids: list[str]) -> None:
    lost_path(config).write_text("".join(f"{u}\n" for u in uuids))


def _hgx_gpus() -> list[MockGpu]:
    # GPUs 0-3 hang off CPU socket 0, 4-7 off socket 1, as on an HGX baseboard.
    return [
        MockGpu(
            uuid=f"GPU-{i:08x}-6a1b-4c2d-8e3f-{0x5E7D1A000000 + i:012x}",
            bus_id=f"00000000:{bus}:00.0",
            minor=i,
            numa_node=i // 4,
        )
        for i, bus in enumerate(HGX_BUSES)
    ]


def _socket_ancestors() -> dict[tuple[int, int], int]:
    """GPU pairs 2k/2k+1 share a PCIe switch, the rest of a socket meet at its NUMA node;
    pairs across sockets are left to the SYSTEM default."""
    levels: dict[tuple[int, int], int] = {}
    for a in range(8):
        for b in range(a + 1, 8):
            if a // 4 == b // 4:
                levels[(a, b)] = SINGLE if a // 2 == b // 2 else NODE
    return levels


def two_islands(links_per_pair: int = 4) -> MockLayout:
    """Eight GPUs in two NVLink islands of four (0-3, 4-7), every pair in an island linked."""
    nvlinks: list[tuple[int, int | str, int]] = [
        (a, b, links_per_pair) for base in (0, 4) for a in range(base, base + 4) for b in range(a + 1, base + 4)
    ]
    return MockLayout(gpus=_hgx_gpus(), nvlinks=nvlinks, ancestors=_socket_ancestors())


NVSWITCH_BUSES = ("00000000:C0:00.0", "00000000:C1:00.0", "00000000:C2:00.0", "00000000:C3:00.0")
NVSWITCH_LINKS = (5, 4, 4, 5)  # how an H100/H200's 18 links spread over the four NVSwitches


def nvswitch() -> MockLayout:
    """Eight GPUs that reach each other only through four NVSwitches (HGX H200)."""
    nvlinks: list[tuple[int, int | str, int]] = [
        (g, bus, n) for g in range(8) for bus, n in zip(NVSWITCH_BUSES, NVSWITCH_LINKS, strict=True)
    ]
    return MockLayout(gpus=_hgx_gpus(), nvlinks=nvlinks, ancestors=_socket_ancestors())
