"""CRI ContainerConfig (+ its pod sandbox and image) -> kray's oci.ContainerConfig.

Follows containerd's CRI plugin where it matters to a workload: image Entrypoint/Cmd/Env/
WorkingDir/User as defaults, capabilities add/drop on containerd's default set, the pod's
namespaces joined by path, CRI mounts as bind mounts with their propagation, resources written
to the spec exactly as the kubelet computed them.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kray.runtime.cri import api_pb2 as pb
from kray.runtime.oci import ALL_CAPS, DEFAULT_CAPS, ContainerConfig, Device, Mount, Resources

PROPAGATION = {
    pb.PROPAGATION_PRIVATE: "rprivate",
    pb.PROPAGATION_HOST_TO_CONTAINER: "rslave",
    pb.PROPAGATION_BIDIRECTIONAL: "rshared",
}


class SpecError(ValueError):
    """The request cannot become a valid container (maps to INVALID_ARGUMENT)."""


@dataclass
class CriResources(Resources):
    """Resources with the kubelet's numbers passed through unchanged (no millicore round trip)."""

    cpu_period: int = 0
    cpu_quota: int = 0
    cpu_shares: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    swap_limit_bytes: int = 0
    unified: dict[str, str] = field(default_factory=dict)

    def to_spec(self) -> dict[str, Any]:
        res = super().to_spec()
        cpu: dict[str, Any] = res.get("cpu", {})
        if self.cpu_period > 0:
            cpu["period"] = self.cpu_period
        if self.cpu_quota > 0:
            cpu["quota"] = self.cpu_quota
        if self.cpu_shares > 0:
            cpu["shares"] = self.cpu_shares
        if self.cpuset_cpus:
            cpu["cpus"] = self.cpuset_cpus
        if self.cpuset_mems:
            cpu["mems"] = self.cpuset_mems
        if cpu:
            res["cpu"] = cpu
        if self.swap_limit_bytes > 0 and "memory" in res:
            res["memory"]["swap"] = self.swap_limit_bytes
        if self.unified:
            res["unified"] = dict(self.unified)
        return res

    @classmethod
    def from_cri(cls, r: pb.LinuxContainerResources) -> CriResources:
        return cls(
            memory_limit_bytes=r.memory_limit_in_bytes or None,
            pids_limit=r.pids_limit or None,
            cpu_period=r.cpu_period,
            cpu_quota=r.cpu_quota,
            cpu_shares=r.cpu_shares,
            cpuset_cpus=r.cpuset_cpus,
            cpuset_mems=r.cpuset_mems,
            swap_limit_bytes=r.memory_swap_limit_in_bytes,
            unified=dict(r.unified),
        )


@dataclass
class PodContext:
    """What CreateContainer needs from the sandbox."""

    hostname: str
    cgroup_parent: str
    netns_path: str | None  # None: host network
    ipc_path: str | None  # None: host IPC
    uts_path: str | None  # None: the container gets a UTS namespace of its own (or the node's)
    host_pid: bool = False
    etc_files: dict[str, str] = field(default_factory=dict)  # container path -> host file
    shm_path: str | None = None
    pid_path: str | None = None  # the pod's shared PID namespace (shareProcessNamespace)


def _caps(sc: pb.LinuxContainerSecurityContext) -> list[str] | None:
    if sc.privileged:
        return None  # oci.build_spec gives a privileged container every capability

    def norm(c: str) -> str:
        c = c.upper()
        return c if c.startswith("CAP_") or c == "ALL" else "CAP_" + c

    add = [norm(c) for c in sc.capabilities.add_capabilities]
    drop = {norm(c) for c in sc.capabilities.drop_capabilities}
    if not add and not drop:
        return None
    caps = list(ALL_CAPS) if "ALL" in add else list(DEFAULT_CAPS) + [c for c in add if c not in DEFAULT_CAPS]
    if "ALL" in drop:
        return [c for c in add if c != "ALL"]
    return [c for c in caps if c not in drop]


def _passwd_lookup(rootfs: Path, user: str) -> tuple[int, int] | None:
    """uid, gid of a user name in the image's /etc/passwd."""
    try:
        for line in (rootfs / "etc" / "passwd").read_text().splitlines():
            parts = line.split(":")
            if len(parts) >= 4 and parts[0] == user:
                return int(parts[2]), int(parts[3])
    except (OSError, ValueError):
        pass
    return None


def _group_lookup(rootfs: Path, group: str) -> int | None:
    try:
        for line in (rootfs / "etc" / "group").read_text().splitlines():
            parts = line.split(":")
            if len(parts) >= 3 and parts[0] == group:
                return int(parts[2])
    except (OSError, ValueError):
        pass
    return None


def resolve_user(sc: pb.LinuxContainerSecurityContext, image_user: str, rootfs: Path) -> tuple[int, int]:
    """(uid, gid) from run_as_user/run_as_group, run_as_username, else the image's User."""
    if sc.HasField("run_as_user"):
        uid = sc.run_as_user.value
        gid = sc.run_as_group.value if sc.HasField("run_as_group") else _gid_of_uid(rootfs, uid)
        return uid, gid
    name, _, group = (sc.run_as_username or image_user or "0").partition(":")
    if name.isdigit():
        uid, gid = int(name), _gid_of_uid(rootfs, int(name))
    else:
        found = _passwd_lookup(rootfs, name)
        if found is None:
            raise SpecError(f"user {name!r} not found in the image's /etc/passwd")
        uid, gid = found
    if group:
        g = int(group) if group.isdigit() else _group_lookup(rootfs, group)
        if g is None:
            raise SpecError(f"group {group!r} not found in the image's /etc/group")
        gid = g
    if sc.HasField("run_as_group"):
        gid = sc.run_as_group.value
    return uid, gid


def _gid_of_uid(rootfs: Path, uid: int) -> int:
    try:
        for line in (rootfs / "etc" / "passwd").read_text().splitlines():
            parts = line.split(":")
            if len(parts) >= 4 and parts[2] == str(uid):
                return int(parts[3])
    except (OSError, ValueError):
        pass
    return 0


def _mounts(cfg: pb.ContainerConfig, pod: PodContext) -> list[Mount]:
    mounts: list[Mount] = []
    wanted = {m.container_path for m in cfg.mounts}
    if pod.shm_path and "/dev/shm" not in wanted:
        mounts.append(Mount.bind(pod.shm_path, "/dev/shm"))  # the pod's shared /dev/shm
    for dest, src in pod.etc_files.items():
        if dest not in wanted:
            mounts.append(Mount.bind(src, dest))
    for m in cfg.mounts:
        if not m.container_path.startswith("/"):
            raise SpecError(f"mount destination {m.container_path!r} is not absolute")
        src = os.path.realpath(m.host_path)  # CRI: follow a symlinked host path
        if not os.path.exists(src):
            raise SpecError(f"mount source {m.host_path} does not exist")
        mnt = Mount.bind(src, m.container_path, readonly=m.readonly or m.recursive_read_only)
        mnt.options[1] = PROPAGATION.get(m.propagation, "rprivate")
        mounts.append(mnt)
    return mounts


def _devices(cfg: pb.ContainerConfig) -> list[Device]:
    out = []
    for d in cfg.devices:
        try:
            dev = Device.from_host(d.host_path)
        except OSError as exc:
            raise SpecError(f"device {d.host_path}: {exc.strerror}") from None
        dev.path = d.container_path or d.host_path
        out.append(dev)
    return out


def container_config(
    cfg: pb.ContainerConfig,
    image_config: dict[str, Any],
    rootfs: Path,
    host_image: bool,
    pod: PodContext,
    cid: str,
) -> ContainerConfig:
    command = list(cfg.command) or list(image_config.get("Entrypoint") or [])
    args = list(cfg.args) if (cfg.args or cfg.command) else list(image_config.get("Cmd") or [])
    argv = command + args
    if not argv:
        raise SpecError("no command: neither the container config nor the image gives one")
    env: dict[str, str] = {}
    if host_image:
        # The node's own interpreter (the one kray runs on, with torch and kray installed) and
        # a PATH that finds it: a host-image pod runs "the node's Python" without a registry.
        env["KRAY_PYTHON"] = sys.executable
        env["PATH"] = f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    for kv in image_config.get("Env") or []:
        k, _, v = kv.partition("=")
        env[k] = v
    for e in cfg.envs:
        env[e.key] = e.value
    sc = cfg.linux.security_context
    uid, gid = resolve_user(sc, str(image_config.get("User") or ""), rootfs)
    ns = sc.namespace_options
    joins: dict[str, str] = {}
    host: set[str] = set()
    if pod.netns_path:
        joins["network"] = pod.netns_path
    else:
        host |= {"network", "uts"}
    if pod.ipc_path:
        joins["ipc"] = pod.ipc_path
    else:
        host.add("ipc")
    if pod.uts_path and pod.netns_path:
        joins["uts"] = pod.uts_path
    if pod.host_pid or ns.pid == pb.NODE:
        joins["pid"] = "/proc/1/ns/pid"  # oci.build_spec always gives pid a namespace: join the node's
    elif pod.pid_path:
        joins["pid"] = pod.pid_path
    return ContainerConfig(
        args=argv,
        rootfs=str(rootfs),
        env=env,
        cwd=cfg.working_dir or str(image_config.get("WorkingDir") or "/"),
        uid=uid,
        gid=gid,
        additional_gids=list(sc.supplemental_groups),
        hostname=pod.hostname,
        mounts=_mounts(cfg, pod),
        readonly_rootfs=sc.readonly_rootfs,
        resources=CriResources.from_cri(cfg.linux.resources),
        join_namespaces=joins,
        host_namespaces=host,
        privileged=sc.privileged,
        capabilities=_caps(sc),
        devices=_devices(cfg),
        cgroups_path=f"{pod.cgroup_parent.rstrip('/')}/{cid}",
        annotations={k: v for k, v in cfg.annotations.items()},
        host_image=host_image,
        no_new_privileges=sc.no_new_privs,
    )
