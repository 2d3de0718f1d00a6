"""OCI runtime-spec bundles: turn a container description into a `config.json`.

The defaults follow containerd's (capabilities, masked and read-only /proc paths, the standard
/proc /dev /sys mounts), so a container started by kray sees what it would see under Kubernetes.
"""

from __future__ import annotations

import json
import os
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OCI_VERSION = "1.0.2"

# containerd's default capability set (oci/spec.go: defaultUnixCaps).
DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

# Every capability the 5.x/6.x kernels know; a privileged container gets all of them.
ALL_CAPS: tuple[str, ...] = (
    *DEFAULT_CAPS,
    "CAP_DAC_READ_SEARCH",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_LEASE",
    "CAP_AUDIT_CONTROL",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
)

READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD_US = 100_000

# Host directories never bind-mounted into a `host` image rootfs: the runtime mounts its own
# /proc /sys /dev, and /tmp is a private tmpfs so a container cannot scribble on the node's.
_HOST_SKIP = {"proc", "sys", "dev", "tmp", "run", "lost+found", "boot", "mnt", "media"}


@dataclass
class Mount:
    destination: str
    source: str
    type: str = "bind"
    options: list[str] = field(default_factory=lambda: ["rbind", "rprivate"])

    def to_spec(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "type": self.type,
            "source": self.source,
            "options": list(self.options),
        }

    @classmethod
    def bind(cls, source: str, destination: str, readonly: bool = False) -> Mount:
        opts = ["rbind", "rprivate", "ro" if readonly else "rw"]
        return cls(destination=destination, source=source, type="bind", options=opts)


@dataclass
class Device:
    """A device node to create in the container (GPUs: /dev/nvidia0, /dev/nvidiactl, ...)."""

    path: str
    type: str  # "c" or "b"
    major: int
    minor: int
    file_mode: int = 0o666
    uid: int = 0
    gid: int = 0

    @classmethod
    def from_host(cls, path: str) -> Device:
        st = os.stat(path)
        import stat as _stat

        kind = "b" if _stat.S_ISBLK(st.st_mode) else "c"
        return cls(
            path=path,
            type=kind,
            major=os.major(st.st_rdev),
            minor=os.minor(st.st_rdev),
            file_mode=_stat.S_IMODE(st.st_mode),
        )


@dataclass
class DeviceRule:
    """A cgroup devices-controller rule; major/minor None means every number."""

    allow: bool
    type: str = "a"
    major: int | None = None
    minor: int | None = None
    access: str = "rwm"

    def to_spec(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"allow": self.allow, "type": self.type, "access": self.access}
        if self.major is not None:
            rule["major"] = self.major
        if self.minor is not None:
            rule["minor"] = self.minor
        return rule


@dataclass
class Resources:
    memory_limit_bytes: int | None = None
    cpu_millicores: int | None = None  # limit: becomes CFS quota over a 100ms period
    cpu_request_millicores: int | None = None  # request: becomes cpu.shares
    pids_limit: int | None = None

    def to_spec(self) -> dict[str, Any]:
        res: dict[str, Any] = {}
        if self.memory_limit_bytes is not None:
            res["memory"] = {"limit": int(self.memory_limit_bytes)}
        cpu: dict[str, Any] = {}
        if self.cpu_millicores is not None:
            cpu["period"] = CPU_PERIOD_US
            # Same rounding as the kubelet: at least 1ms of quota per period.
            cpu["quota"] = max(1000, self.cpu_millicores * CPU_PERIOD_US // 1000)
        if self.cpu_request_millicores is not None:
            cpu["shares"] = max(2, self.cpu_request_millicores * 1024 // 1000)
        if cpu:
            res["cpu"] = cpu
        if self.pids_limit is not None:
            res["pids"] = {"limit": int(self.pids_limit)}
        return res


@dataclass
class ContainerConfig:
    """What kray knows about one container; everything the bundle needs."""

    args: list[str]
    rootfs: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)
    hostname: str | None = None
    mounts: list[Mount] = field(default_factory=list)
    readonly_rootfs: bool = False
    resources: Resources = field(default_factory=Resources)
    # Namespaces to join, type -> path (e.g. {"network": "/var/run/netns/pod-x"}); the pod sandbox
    # hands these in so the containers of one pod share them.
    join_namespaces: dict[str, str] = field(default_factory=dict)
    # Namespaces shared with the node (hostNetwork -> {"network", "uts"}, hostIPC -> {"ipc"}).
    host_namespaces: set[str] = field(default_factory=set)
    privileged: bool = False
    capabilities: list[str] | None = None  # None: DEFAULT_CAPS (ALL_CAPS when privileged)
    devices: list[Device] = field(default_factory=list)
    device_rules: list[DeviceRule] = field(default_factory=list)
    cgroups_path: str | None = None  # e.g. "/kray/<pod>/<container>"
    annotations: dict[str, str] = field(default_factory=dict)
    # `host` image mode: the rootfs directory is an empty mount point and the node's own
    # top-level directories are bind-mounted into it read-only (see host_rootfs_mounts).
    host_image: bool = False
    no_new_privileges: bool = False


NAMESPACE_TYPES = ("pid", "network", "ipc", "uts", "mount")


def host_rootfs_mounts(host_root: str = "/") -> list[Mount]:
    """Mounts that make an empty rootfs look like the node: each top-level directory of the host
    bind-mounted read-only (recursively, so /usr and the venv under /work come along), then a
    private writable tmpfs on /tmp. /proc, /dev and /sys come from the default mounts."""
    mounts: list[Mount] = []
    for entry in sorted(os.listdir(host_root)):
        if entry in _HOST_SKIP:
            continue
        src = os.path.join(host_root, entry)
        real = os.path.realpath(src)
        if not os.path.isdir(real):
            continue
        # Merged-/usr hosts have /bin -> usr/bin; binding the resolved path gives the same view.
        mounts.append(Mount.bind(real, "/" + entry, readonly=True))
    mounts.append(Mount("/tmp", "tmpfs", "tmpfs", ["nosuid", "nodev", "mode=1777"]))
    return mounts


def default_mounts(privileged: bool, sysfs_rw: bool = False) -> list[Mount]:
    ro = "rw" if (privileged or sysfs_rw) else "ro"
    return [
        Mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        Mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        Mount(
            "/dev/pts",
            "devpts",
            "devpts",
            ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        Mount("/dev/shm", "shm", "tmpfs", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        Mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        Mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", ro]),
        Mount("/sys/fs/cgroup", "cgroup", "cgroup", ["nosuid", "noexec", "nodev", "relatime", ro]),
    ]


def build_spec(cfg: ContainerConfig) -> dict[str, Any]:
    """The runtime-spec document for `cfg` (a dict ready for json.dump)."""
    # containerd asks for 1048576 open files; never more than the node lets us raise to.
    nofile = min(1048576, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    caps = list(cfg.capabilities or (ALL_CAPS if cfg.privileged else DEFAULT_CAPS))
    env = {"PATH": DEFAULT_PATH, **cfg.env}
    if cfg.hostname and "HOSTNAME" not in env:
        env["HOSTNAME"] = cfg.hostname
    process: dict[str, Any] = {
        "terminal": False,
        "user": {"uid": cfg.uid, "gid": cfg.gid, "additionalGids": list(cfg.additional_gids)},
        "args": list(cfg.args),
        "env": [f"{k}={v}" for k, v in env.items()],
        "cwd": cfg.cwd,
        "capabilities": {
            "bounding": caps,
            "effective": caps,
            "permitted": caps,
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
        "noNewPrivileges": cfg.no_new_privileges,
    }
    if not cfg.privileged:
        process["oomScoreAdj"] = 0

    namespaces: list[dict[str, str]] = []
    for ns in NAMESPACE_TYPES:
        if ns in cfg.host_namespaces and ns not in ("pid", "mount"):
            continue  # no entry: the container stays in the node's namespace
        entry = {"type": ns}
        if ns in cfg.join_namespaces:
            entry["path"] = cfg.join_namespaces[ns]
        namespaces.append(entry)

    mounts = default_mounts(cfg.privileged)
    if "network" in cfg.host_namespaces:
        # A sysfs mount needs a network namespace of its own; on the host one bind the node's.
        mounts = [m for m in mounts if m.destination not in ("/sys", "/sys/fs/cgroup")]
        mounts.append(Mount("/sys", "/sys", "bind", ["rbind", "rprivate", "nosuid", "noexec", "nodev", "ro"]))
    if cfg.host_image:
        mounts.extend(host_rootfs_mounts())
    mounts.extend(cfg.mounts)

    rules = [DeviceRule(allow=cfg.privileged), *cfg.device_rules]
    # Each device handed in gets a cgroup rule too, so callers only list the nodes.
    rules += [DeviceRule(True, d.type, d.major, d.minor, "rwm") for d in cfg.devices]
    resources = cfg.resources.to_spec()
    resources["devices"] = [r.to_spec() for r in rules]

    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "resources": resources,
        "devices": [
            {
                "path": d.path,
                "type": d.type,
                "major": d.major,
                "minor": d.minor,
                "fileMode": d.file_mode,
                "uid": d.uid,
                "gid": d.gid,
            }
            for d in cfg.devices
        ],
    }
    if not cfg.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    if cfg.cgroups_path:
        linux["cgroupsPath"] = cfg.cgroups_path

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": cfg.rootfs, "readonly": cfg.readonly_rootfs},
        "mounts": [m.to_spec() for m in mounts],
        "linux": linux,
        "annotations": dict(cfg.annotations),
    }
    # The runtime can only set a hostname in a UTS namespace that is not the node's.
    if cfg.hostname and "uts" not in cfg.host_namespaces:
        spec["hostname"] = cfg.hostname
    return spec


def write_bundle(bundle_dir: str | Path, cfg: ContainerConfig) -> Path:
    """Write `config.json` into `bundle_dir` (created); returns the bundle directory."""
    bundle = Path(bundle_dir)
    bundle.mkdir(parents=True, exist_ok=True)
    tmp = bundle / "config.json.tmp"
    tmp.write_text(json.dumps(build_spec(cfg), indent=1))
    os.replace(tmp, bundle / "config.json")
    return bundle
