"""The node runtime the CRI service fronts: pod sandboxes and their containers, on top of
ContainerManager (bundles + shims), ImageStore (overlay rootfs), BridgeNetwork (netns + veth +
IP) and VolumeManager (pod volume cleanup).

A sandbox has no pause container. Its namespaces are pinned as files instead: the network one by
BridgeNetwork under /var/run/netns, IPC and UTS by `unshare --ipc=<file> --uts=<file>` in the
sandbox folder (the UTS one carries the pod's hostname), so containers join them by path. The
pod also gets a shared /dev/shm (tmpfs) and its own /etc/hosts, /etc/hostname, /etc/resolv.conf.
A PID namespace cannot be pinned to a file: with shareProcessNamespace a holder process keeps one
(pidns.py). A runtime without isolation (procrt.py, `isolated = False`) gets none of this: its
sandboxes are the node's namespaces and its containers the node's filesystem.

Everything is on disk under `state_dir`: `sandboxes/<id>/sandbox.json`, `containers/<id>/`
(ContainerManager's folder + `cri.json`), so a restarted service re-adopts what is running.
Records are kept in memory too, re-read only when their file changed: listings (the kubelet's
every sync, its PLEG relist) stay cheap however many pods the node has (records.py). Setting up
a sandbox's namespaces, shm and /etc files is sandboxsetup.py; running commands in a container
(ExecSync, streaming exec) is execs.py; this module holds the other CRI verbs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import threading
import time
from pathlib import Path

from kray.runtime import pidns
from kray.runtime.cgroups import CgroupV1
from kray.runtime.containers import ContainerManager, ContainerStatus
from kray.runtime.cri import api_pb2 as pb
from kray.runtime.cri.ocispec import SpecError, container_config
from kray.runtime.execs import ContainerExecs
from kray.runtime.imageref import ReferenceError, parse_reference
from kray.runtime.images import HOST_IMAGE, ImageError, ImageInfo, ImageStore, normalize
from kray.runtime.network import BridgeNetwork
from kray.runtime.ocirt import CliRuntime, OciError
from kray.runtime.records import (
    AlreadyExists,
    ContainerRecord,
    CriError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    RecordCache,
    SandboxRecord,
    Unavailable,
    to_json,
)
from kray.runtime.registry import Credentials, RegistryClient
from kray.runtime.sandboxsetup import pod_context, setup_sandbox, umount
from kray.runtime.shimfork import ShimLauncher
from kray.runtime.volumes import VolumeManager

__all__ = [
    "AlreadyExists",
    "ContainerRecord",
    "CriError",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "NodeRuntime",
    "NotFound",
    "SandboxRecord",
]


class NodeRuntime(ContainerExecs):
    def __init__(
        self,
        runtime: CliRuntime,
        images: ImageStore,
        network: BridgeNetwork | None,
        state_dir: Path | str,
        volumes: VolumeManager | None = None,
        cgroup_root: str = "kray",
        shm_size: int = 64 << 20,
        shim_launcher: ShimLauncher | None = None,
        registry: RegistryClient | None = None,
    ) -> None:
        self.runtime = runtime
        self.images = images
        self.registry = registry or RegistryClient()
        self.network = network
        self.state_dir = Path(state_dir)
        self.sandbox_root = self.state_dir / "sandboxes"
        self.sandbox_root.mkdir(parents=True, exist_ok=True)
        self.containers = ContainerManager(runtime, self.state_dir / "containers", launcher=shim_launcher)
        self.scratch_root = self.state_dir / "scratch"
        self.log_root = self.state_dir / "logs"
        self.volumes = volumes or VolumeManager(self.state_dir / "pods")
        self.cgroup_root = "/" + cgroup_root.strip("/")
        self.shm_size = shm_size
        self._locks: dict[str, threading.RLock] = {}
        self._locks_guard = threading.Lock()
        self._records = RecordCache()

    def close(self) -> None:
        """Stop the shim launcher, if any (running containers and their shims stay)."""
        self.registry.close()
        if self.containers.launcher is not None:
            self.containers.launcher.close()

    def _lock(self, key: str) -> threading.RLock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.RLock())

    # sandboxes --------------------------------------------------------------------------------
    def _sandbox_file(self, sid: str) -> Path:
        return self.sandbox_root / sid / "sandbox.json"

    def _save_sandbox(self, rec: SandboxRecord) -> None:
        self._records.store(self._sandbox_file(rec.id), rec)

    def sandbox(self, sid: str) -> SandboxRecord:
        rec: SandboxRecord | None = self._records.load(self._sandbox_file(sid), SandboxRecord)
        if rec is None:
            raise NotFound(f"pod sandbox {sid!r} not found")
        return rec

    def sandboxes(self) -> list[SandboxRecord]:
        out = []
        for name in sorted(os.listdir(self.sandbox_root)):
            with contextlib.suppress(NotFound):
                out.append(self.sandbox(name))
        return out

    def run_sandbox(self, config: pb.PodSandboxConfig, runtime_handler: str = "") -> SandboxRecord:
        md = config.metadata
        if not md.name:
            raise InvalidArgument("sandbox config has no metadata.name")
        key = (md.name, md.namespace, md.uid, md.attempt)
        with self._lock("sandbox-create"):
            for other in self.sandboxes():
                m = other.config.get("metadata", {})
                if (m.get("name", ""), m.get("namespace", ""), m.get("uid", ""), m.get("attempt", 0)) == key:
                    raise AlreadyExists(
                        f"pod sandbox for {md.namespace}/{md.name} attempt {md.attempt} exists: {other.id}"
                    )
            sid = secrets.token_hex(16)
            d = self.sandbox_root / sid
            d.mkdir(parents=True)
            nso = config.linux.security_context.namespace_options
            rec = SandboxRecord(
                id=sid,
                config=to_json(config),
                created_at=time.time_ns(),
                hostname=config.hostname or md.name,
                cgroup_parent=config.linux.cgroup_parent or f"{self.cgroup_root}/pod{sid}",
                runtime_handler=runtime_handler,
                # A runtime without isolation (procrt) has nothing but the node's namespaces.
                host_network=nso.network == pb.NODE or not self.runtime.isolated,
                host_ipc=nso.ipc == pb.NODE or not self.runtime.isolated,
                host_pid=nso.pid == pb.NODE or not self.runtime.isolated,
            )
            self._save_sandbox(rec)  # first, so a failure below is cleaned up by RemovePodSandbox
        try:
            setup_sandbox(rec, config, d, self.network, self.runtime.isolated, self.shm_size)
        except Exception as exc:
            self.remove_sandbox(sid)
            if isinstance(exc, CriError):
                raise
            raise CriError(f"run pod sandbox {md.namespace}/{md.name}: {exc}") from exc
        self._save_sandbox(rec)
        return rec

    def stop_sandbox(self, sid: str) -> None:
        """Kill the pod's containers and give its network back; idempotent."""
        rec = self.sandbox(sid)
        with self._lock(sid):
            for c in self.list_containers(sandbox_id=sid):
                self.stop_container(c.id, 0)
            if self.network is not None and not rec.host_network:
                self.network.teardown(sid)
            pidns.stop_holder(rec.pid_holder)
            rec.state, rec.netns_path, rec.pid_holder = "notready", None, 0
            self._save_sandbox(rec)

    def remove_sandbox(self, sid: str) -> None:
        """Remove containers, network, pinned namespaces, shm, cgroups, volumes, state; idempotent."""
        try:
            rec = self.sandbox(sid)
        except NotFound:
            if not (self.sandbox_root / sid).exists():
                return
            rec = None
        with self._lock(sid):
            for c in self.list_containers(sandbox_id=sid):
                self.remove_container(c.id)
            if self.network is not None and (rec is None or not rec.host_network):
                self.network.teardown(sid)
            d = self.sandbox_root / sid
            for p in (d / "ns" / "ipc", d / "ns" / "uts", d / "shm"):
                umount(p)
            if rec is not None:
                pidns.stop_holder(rec.pid_holder)
                CgroupV1(rec.cgroup_parent).remove(timeout=5.0)
                uid = rec.config.get("metadata", {}).get("uid", "")
                if uid:
                    with contextlib.suppress(Exception):
                        self.volumes.cleanup_pod(uid)
            shutil.rmtree(d, ignore_errors=True)
            self._records.forget(self._sandbox_file(sid))
        with self._locks_guard:
            self._locks.pop(sid, None)

    # containers -------------------------------------------------------------------------------
    def _record_file(self, cid: str) -> Path:
        return self.containers.dir(cid) / "cri.json"

    def container_record(self, cid: str) -> ContainerRecord:
        rec: ContainerRecord | None = self._records.load(self._record_file(cid), ContainerRecord)
        if rec is None:
            raise NotFound(f"container {cid!r} not found")
        return rec

    def container(self, cid: str) -> tuple[ContainerRecord, ContainerStatus]:
        return self.container_record(cid), self.containers.status(cid)

    def list_containers(self, sandbox_id: str | None = None) -> list[ContainerRecord]:
        """Records only (no status: that is a few more reads per container)."""
        out = []
        root = self.containers.state_root
        for name in sorted(os.listdir(root)) if root.is_dir() else []:
            with contextlib.suppress(NotFound):
                rec = self.container_record(name)
                if sandbox_id is None or rec.sandbox_id == sandbox_id:
                    out.append(rec)
        return out

    def resolve_image(self, ref: str) -> ImageInfo | None:
        """An image of the store by name (`busybox` = `busybox:latest`), id or manifest digest."""
        if not ref:
            return None
        if ref == HOST_IMAGE:  # the node's own filesystem: always present, nothing to pull
            return ImageInfo(name=HOST_IMAGE, digest=HOST_IMAGE, config_digest=HOST_IMAGE, layers=[], size=0)
        info = self.images.image_status(ref)
        if info is not None:
            return info
        for img in self.images.list_images():
            if ref in (img.config_digest, img.digest, img.config_digest.partition(":")[2]):
                return img
        return None

    def create_container(
        self, sid: str, config: pb.ContainerConfig, sandbox_config: pb.PodSandboxConfig | None = None
    ) -> ContainerRecord:
        sb = self.sandbox(sid)
        if sb.state != "ready":
            raise FailedPrecondition(f"pod sandbox {sid} is not ready")
        name, attempt = config.metadata.name, config.metadata.attempt
        if not name:
            raise InvalidArgument("container config has no metadata.name")
        image_name = config.image.image
        host_image = image_name == HOST_IMAGE
        info = None if host_image else self.resolve_image(image_name)
        if info is None and not host_image:
            raise NotFound(f"image {image_name!r} is not in the node's image store (pull it first)")
        with self._lock(sid):
            for other in self.list_containers(sandbox_id=sid):
                md = other.config.get("metadata", {})
                if md.get("name") == name and int(md.get("attempt", 0)) == attempt:
                    raise AlreadyExists(
                        f"container {name} attempt {attempt} already exists in sandbox {sid}: {other.id}"
                    )
            cid = secrets.token_hex(16)
            d = self.containers.dir(cid)
            scratch = self.scratch_root / cid
            try:
                if self.runtime.isolated:
                    mode = self.images.mount_rootfs(info.name if info else HOST_IMAGE, d / "rootfs", scratch)
                else:  # host processes: an image lends its config only (see procrt.py)
                    (d / "rootfs").mkdir(parents=True, exist_ok=True)
                    mode = "host"
                log_dir = sb.config.get("log_directory") or str(self.log_root / sid)
                log_path = Path(log_dir) / (config.log_path or f"{name}/{attempt}.log")
                log_path.parent.mkdir(parents=True, exist_ok=True)
                oci_cfg = container_config(
                    config,
                    info.config if info else {},
                    d / "rootfs",
                    mode == "host",
                    pod_context(sb, self.sandbox_root / sb.id),
                    cid,
                )
                rec = ContainerRecord(
                    id=cid,
                    sandbox_id=sid,
                    config=to_json(config),
                    image_id=info.config_digest if info else HOST_IMAGE,
                    image_name=info.name if info else HOST_IMAGE,
                    log_path=str(log_path),
                    created_at=time.time_ns(),
                    uid=oci_cfg.uid,
                    gid=oci_cfg.gid,
                )
                self.containers.create(cid, oci_cfg, log_path)
                self._records.store(self._record_file(cid), rec)
            except Exception as exc:
                with contextlib.suppress(Exception):
                    self.containers.remove(cid)
                ImageStore.unmount_rootfs(d / "rootfs")
                shutil.rmtree(d, ignore_errors=True)
                shutil.rmtree(scratch, ignore_errors=True)
                if isinstance(exc, SpecError):
                    raise InvalidArgument(str(exc)) from exc
                if isinstance(exc, (ImageError, OciError)):
                    raise CriError(f"create container {name}: {exc}") from exc
                raise
        return rec

    def start_container(self, cid: str) -> None:
        _, st = self.container(cid)
        if st.state != "created":
            raise FailedPrecondition(f"container {cid} is {st.state}, not created")
        try:
            self.containers.start(cid)
        except OciError as exc:
            raise CriError(f"start container {cid}: {exc}") from exc

    def stop_container(self, cid: str, timeout: float) -> ContainerStatus:
        """SIGTERM, SIGKILL after `timeout` seconds (0: SIGKILL at once); idempotent."""
        self.container(cid)
        if timeout <= 0:
            with contextlib.suppress(OciError):
                if self.containers.status(cid).state in ("created", "running"):
                    self.runtime.kill(cid, signal.SIGKILL, all_procs=True)
            return self.containers.wait(cid, 10.0)
        return self.containers.stop(cid, timeout)

    def remove_container(self, cid: str) -> None:
        if not self.containers.dir(cid).exists():
            return
        self.containers.remove(cid)
        self._records.forget(self._record_file(cid))
        ImageStore.unmount_rootfs(self.containers.dir(cid) / "rootfs")
        shutil.rmtree(self.scratch_root / cid, ignore_errors=True)

    # images -----------------------------------------------------------------------------------
    def pull_image(self, ref: str, creds: Credentials | None = None) -> ImageInfo:
        """`oci-archive:<tar>[:name]`, `oci:<dir>[:name]` or an absolute path imports a local
        image layout. Any other reference is pulled from its registry, unless the store has it
        from an import (no registry to ask). Pulls of one name are serialized; blobs are shared."""
        source, name = _local_source(ref)
        if source is not None:
            if not source.exists():
                raise NotFound(f"image source {source} does not exist")
            try:
                return self.images.import_image(source, name)
            except (ImageError, OSError, ValueError, KeyError) as exc:
                raise InvalidArgument(f"import {source}: {exc}") from exc
        info = self.resolve_image(ref)
        if info is not None and not info.repo_digest:
            return info  # `host`, an import, or an id/digest of an image already here
        try:
            parsed = parse_reference(ref)
        except ReferenceError as exc:
            raise InvalidArgument(str(exc)) from None
        with self._lock(f"pull:{normalize(ref)}"):
            try:
                return self.registry.pull(parsed, normalize(ref), self.images, creds)
            except (ImageError, OSError) as exc:
                raise Unavailable(f"{parsed}: {exc}") from exc


def _local_source(ref: str) -> tuple[Path | None, str]:
    for scheme in ("oci-archive:", "oci:"):
        if ref.startswith(scheme):
            rest = ref[len(scheme) :]
            path, _, name = rest.partition(":")  # "<path>[:<name>]"; paths have no ':' in practice
            return Path(path), normalize(name or _name_from(path))
    if ref.startswith("/"):
        return Path(ref), normalize(_name_from(ref))
    return None, ref


def _name_from(path: str) -> str:
    base = os.path.basename(path.rstrip("/"))
    for ext in (".tar.gz", ".tgz", ".tar"):
        if base.endswith(ext):
            return base[: -len(ext)]
    return base
