"""Setting up a pod sandbox's shared parts, with no pause container: the network namespace
from BridgeNetwork, IPC and UTS namespaces pinned as files by `unshare --ipc=<file> --uts=<file>`
(the UTS one carries the pod's hostname), a shared /dev/shm (tmpfs), the pod's own /etc/hosts,
/etc/hostname and /etc/resolv.conf, a PID-namespace holder for shareProcessNamespace (pidns.py),
and pod-level cgroup limits; then the PodContext its containers are created with.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from kray.runtime import pidns
from kray.runtime.cgroups import CgroupV1
from kray.runtime.cri import api_pb2 as pb
from kray.runtime.cri.ocispec import PodContext
from kray.runtime.network import BridgeNetwork
from kray.runtime.records import CriError, FailedPrecondition, SandboxRecord


def run_checked(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CriError(f"{' '.join(argv[:3])}...: {proc.stderr.strip()}")


def umount(path: Path) -> None:
    if os.path.ismount(path) or path.exists():
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def setup_sandbox(
    rec: SandboxRecord,
    config: pb.PodSandboxConfig,
    d: Path,
    network: BridgeNetwork | None,
    isolated: bool,
    shm_size: int,
) -> None:
    """Namespaces, shm, /etc files, PID holder and pod cgroup for a new sandbox in folder `d`; fills `rec`."""
    if not rec.host_network:
        if network is None:
            raise FailedPrecondition("this node runtime has no pod network (start it with --subnet)")
        sb = network.setup(rec.id)
        rec.netns_path, rec.ip = sb.netns_path, sb.ip
    # Pin IPC and UTS: `unshare --ipc=F --uts=F hostname NAME` leaves both namespaces bound to
    # the files, the UTS one already named after the pod.
    ns_dir = d / "ns"
    ns_dir.mkdir()
    argv = ["unshare"]
    if not rec.host_ipc:
        (ns_dir / "ipc").touch()
        argv.append(f"--ipc={ns_dir / 'ipc'}")
        rec.ipc_path = str(ns_dir / "ipc")
    if not rec.host_network:
        (ns_dir / "uts").touch()
        argv.append(f"--uts={ns_dir / 'uts'}")
        rec.uts_path = str(ns_dir / "uts")
    if len(argv) > 1:
        run_checked([*argv, "hostname" if rec.uts_path else "true", *([rec.hostname] if rec.uts_path else [])])
    if not rec.host_ipc:
        shm = d / "shm"
        shm.mkdir()
        run_checked(["mount", "-t", "tmpfs", "-o", f"mode=1777,size={shm_size},nosuid,nodev", "shm", str(shm)])
        rec.shm_path = str(shm)
    write_etc(rec, config, d)
    if isolated and config.linux.security_context.namespace_options.pid == pb.POD:
        rec.pid_holder = pidns.start_holder(d)
    res = config.linux.resources
    if isolated and (res.memory_limit_in_bytes > 0 or res.cpu_quota > 0):
        # Pod-level limits on the pod cgroup; the containers' cgroups nest under it.
        cg = CgroupV1(rec.cgroup_parent)
        cg.ensure()
        if res.memory_limit_in_bytes > 0:
            (cg.dir("memory") / "memory.limit_in_bytes").write_text(str(res.memory_limit_in_bytes))
        if res.cpu_quota > 0:
            (cg.dir("cpu") / "cpu.cfs_period_us").write_text(str(res.cpu_period or 100_000))
            (cg.dir("cpu") / "cpu.cfs_quota_us").write_text(str(res.cpu_quota))


def write_etc(rec: SandboxRecord, config: pb.PodSandboxConfig, d: Path) -> None:
    etc = d / "etc"
    etc.mkdir()
    (etc / "hostname").write_text(rec.hostname + "\n")
    hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    if rec.ip:
        hosts += f"{rec.ip}\t{rec.hostname}\n"
    (etc / "hosts").write_text(hosts)
    dns = config.dns_config
    if dns.servers or dns.searches:
        lines = [f"nameserver {s}" for s in dns.servers]
        lines += [f"search {' '.join(dns.searches)}"] if dns.searches else []
        lines += [f"options {' '.join(dns.options)}"] if dns.options else []
        (etc / "resolv.conf").write_text("\n".join(lines) + "\n")
    elif os.path.exists("/etc/resolv.conf"):
        shutil.copyfile("/etc/resolv.conf", etc / "resolv.conf")  # like Default DNS policy
    else:
        (etc / "resolv.conf").write_text("")


def pod_context(rec: SandboxRecord, sandbox_dir: Path) -> PodContext:
    """How the sandbox's containers join its namespaces and files."""
    etc = sandbox_dir / "etc"
    files = {f"/etc/{n}": str(etc / n) for n in ("hosts", "hostname", "resolv.conf") if (etc / n).exists()}
    return PodContext(
        hostname=rec.hostname,
        cgroup_parent=rec.cgroup_parent,
        netns_path=rec.netns_path,
        ipc_path=rec.ipc_path,
        uts_path=rec.uts_path,
        host_pid=rec.host_pid,
        pid_path=f"/proc/{rec.pid_holder}/ns/pid_for_children" if rec.pid_holder else None,
        etc_files=files,
        shm_path=rec.shm_path,
    )
