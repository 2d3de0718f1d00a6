"""Node-local persistent volumes at the kubelet: mounting a pod's ``persistentVolumeClaim`` and
deleting the directories of released ``kray.io/local-path`` volumes.

Mount (Kubernetes' volume manager for ``local``/``hostPath`` PVs): the claim (the pod's
namespace) must exist and be Bound, its PV must be bound back to it and be for this node (its
node affinity); the PV's directory becomes the runtime's ``hostPath`` volume. ``spec.local.path``
must already exist; ``spec.hostPath`` with ``DirectoryOrCreate`` is created (0777 for volumes
the local-path provisioner made, so any container user can write, else 0755 as the kubelet
does). Read-only when the pod's volume source says so or the PV is ReadOnlyMany only. Failures
are ContainerConfigErrors: the pod waits (FailedMount) and the next sync tries again.

Reclaim (``LocalVolumeReclaimer.step``, every ~10 s): a PV the PV controller marked
``kray.io/reclaim=delete-requested`` whose node affinity names this node has its directory
removed once no pod here uses it, then the PV object is deleted. Only directories the
provisioner made are ever removed: ``pv.kubernetes.io/provisioned-by=kray.io/local-path``, a
``hostPath`` PV, and a path directly under the provisioner's base directory. Anything else is
refused with a ``VolumeFailedDelete`` event on the PV.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from kray.client.errors import Conflict, NotFound
from kray.crds import Node, Pod
from kray.crds.core.storage import (
    ANN_LOCAL_PATH_BASE,
    ANN_PROVISIONED_BY,
    ANN_RECLAIM,
    DEFAULT_LOCAL_PATH_BASE,
    LOCAL_PATH_PROVISIONER,
    RECLAIM_DELETE_REQUESTED,
    PersistentVolume,
    StorageClass,
)
from kray.runtime.cri import api_pb2 as pb
from kray.runtime.volumes import Volume

from .envvars import ContainerConfigError, EnvContext
from .ports import ApiPort

log = logging.getLogger(__name__)

DEFAULT_BASE = DEFAULT_LOCAL_PATH_BASE
RECLAIM_PERIOD = 10.0
HOSTNAME_LABEL = "kubernetes.io/hostname"


def provisioned(pv: PersistentVolume) -> bool:
    return (pv.metadata.annotations or {}).get(ANN_PROVISIONED_BY) == LOCAL_PATH_PROVISIONER


def on_node(pv: PersistentVolume, node_name: str, node: Node | None) -> bool:
    """Whether the PV's node affinity admits this node (no affinity: any node)."""
    required = pv.spec.node_affinity.required if pv.spec.node_affinity else None
    if required is None:
        return True
    names = pv.spec.node_names()
    if names is not None:
        return node_name in names
    labels = dict((node.metadata.labels or {}) if node is not None else {})
    labels.setdefault(HOSTNAME_LABEL, node_name)
    return required.matches(labels, {"metadata.name": node_name})


def make_dir(path: str, mode: int) -> None:
    """DirectoryOrCreate: the directory (and its parents) with `mode`, whatever the umask."""
    p = Path(path)
    if p.is_dir():
        return
    p.mkdir(parents=True, exist_ok=True)
    os.chmod(p, mode)


async def pvc_volume(v: Any, ctx: EnvContext) -> Volume:
    """The runtime's hostPath Volume for a pod's persistentVolumeClaim volume `v`."""
    src = v.persistent_volume_claim
    claim_name = src.claim_name
    pod_ns = ctx.pod.metadata.namespace
    node_name = ctx.pod.spec.node_name or ""
    pvc = await ctx.claim(claim_name)
    if pvc is None:
        raise ContainerConfigError(f'persistentvolumeclaim "{claim_name}" not found')
    if pvc.metadata.deletion_timestamp is not None:
        raise ContainerConfigError(f'persistentvolumeclaim "{claim_name}" is being deleted')
    phase = pvc.status.phase if pvc.status else None
    pv_name = pvc.spec.volume_name
    if phase != "Bound" or not pv_name:
        raise ContainerConfigError(f'persistentvolumeclaim "{claim_name}" is not bound')
    pv = await ctx.persistent_volume(pv_name)
    if pv is None:
        raise ContainerConfigError(f'persistentvolume "{pv_name}" (claim "{claim_name}") not found')
    ref = pv.spec.claim_ref
    if (
        ref is None
        or (ref.namespace, ref.name) != (pod_ns, claim_name)
        or (ref.uid and pvc.metadata.uid and ref.uid != pvc.metadata.uid)
    ):
        raise ContainerConfigError(
            f'persistentvolume "{pv_name}" is not bound to persistentvolumeclaim "{pod_ns}/{claim_name}"'
        )
    if not on_node(pv, node_name, await ctx.node()):
        raise ContainerConfigError(
            f'persistentvolume "{pv_name}" is not on this node: its node affinity does not match node "{node_name}"'
        )
    path = pv.path
    if pv.spec.local is not None:
        if not await asyncio.to_thread(os.path.isdir, path):
            raise ContainerConfigError(f'persistentvolume "{pv_name}": path "{path}" does not exist on this node')
        kind = "Directory"
    else:
        assert pv.spec.host_path is not None
        kind = pv.spec.host_path.type or ""
        if kind == "DirectoryOrCreate":
            mode = 0o777 if provisioned(pv) else 0o755
            try:
                await asyncio.to_thread(make_dir, path, mode)
            except OSError as exc:
                raise ContainerConfigError(f'persistentvolume "{pv_name}": creating "{path}": {exc}') from exc
            kind = "Directory"
    modes = set(pv.spec.access_modes or [])
    if src.read_only or (modes and modes <= {"ReadOnlyMany"}):
        ctx.read_only.add(v.name)
    return Volume(v.name, "hostPath", path=path, type=kind)


class EventPort(Protocol):
    async def event(self, obj: Any, type_: Any, reason: str, message: str) -> Any: ...


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


class LocalVolumeReclaimer:
    """Deletes released local-path volumes of this node (see the module docstring)."""

    def __init__(
        self,
        node_name: str,
        api: ApiPort,
        cri: Any,
        pods: Callable[[], Iterable[Pod]],
        published: Callable[[], Iterable[str]],
        events: EventPort,
        default_base: str = DEFAULT_BASE,
        remove: Callable[[str], None] = shutil.rmtree,
    ) -> None:
        self.node_name, self.api, self.cri, self.events = node_name, api, cri, events
        self.pods, self.published = pods, published
        self.default_base = default_base
        self.remove = remove

    async def step(self) -> list[str]:
        """One pass; the names of the PVs deleted."""
        result = await self.api.list(PersistentVolume)
        wanted = [
            pv
            for pv in result.items
            if (pv.metadata.annotations or {}).get(ANN_RECLAIM) == RECLAIM_DELETE_REQUESTED
            and self.node_name in (pv.spec.node_names() or [])
            and pv.metadata.deletion_timestamp is None
            and (pv.status.phase if pv.status else None) != "Bound"
        ]
        if not wanted:
            return []
        mounted = await self._runtime_paths()
        done = []
        for pv in wanted:
            try:
                if await self._reclaim(pv, mounted):
                    done.append(pv.metadata.name or "")
            except Exception as exc:  # one bad volume must not stop the others
                log.warning("kubelet %s: reclaiming %s failed: %r", self.node_name, pv.metadata.name, exc)
                await self.events.event(pv, "Warning", "VolumeFailedDelete", str(exc))
        return done

    async def _reclaim(self, pv: PersistentVolume, mounted: set[str]) -> bool:
        name = pv.metadata.name or ""
        why = await self.refuse(pv)
        if why is not None:
            await self.events.event(pv, "Warning", "VolumeFailedDelete", why)
            return False
        path = os.path.normpath(pv.path)
        if self._in_use(pv, path, mounted):
            return False  # a pod here still has it: next round
        try:
            await asyncio.to_thread(self._remove_dir, path)
        except OSError as exc:
            await self.events.event(pv, "Warning", "VolumeFailedDelete", f'removing "{path}": {exc}')
            return False
        try:
            pre = {"resourceVersion": pv.metadata.resource_version or ""}
            await self.api.delete(PersistentVolume, name, preconditions=pre)
        except NotFound:
            return False
        except Conflict:
            return False  # changed since listed: look again next round
        log.info("kubelet %s: deleted local volume %s (%s)", self.node_name, name, path)
        return True

    async def base(self, pv: PersistentVolume) -> str:
        """The provisioner's base directory for `pv`: the PV's kray.io/local-path-base, else its
        StorageClass's `path` parameter (where the provisioner puts that class's volumes), else
        the default."""
        base = (pv.metadata.annotations or {}).get(ANN_LOCAL_PATH_BASE)
        if not base and pv.spec.storage_class_name:
            try:
                cls = await self.api.get(StorageClass, pv.spec.storage_class_name)
            except NotFound:
                cls = None
            if cls is not None and cls.provisioner == LOCAL_PATH_PROVISIONER:
                base = (cls.parameters or {}).get("path")
        return os.path.normpath(base or self.default_base)

    async def refuse(self, pv: PersistentVolume) -> str | None:
        """Why this PV's directory may not be removed (None: it may)."""
        if not provisioned(pv) or pv.spec.host_path is None:
            return f'refusing to delete "{pv.path}": not a hostPath volume provisioned by {LOCAL_PATH_PROVISIONER}'
        raw, base = pv.path, await self.base(pv)
        path = os.path.normpath(raw)
        if (
            not raw.startswith("/")
            or path != raw.rstrip("/")
            or not base.startswith("/")
            or base == "/"
            or os.path.dirname(path) != base
        ):
            return f'refusing to delete "{raw}": not a directory directly under the provisioner base "{base}"'
        return None

    def _remove_dir(self, path: str) -> None:
        if os.path.islink(path):
            raise OSError(f"{path} is a symbolic link")
        if os.path.lexists(path):
            self.remove(path)

    def _in_use(self, pv: PersistentVolume, path: str, mounted: set[str]) -> bool:
        for p in [*self.published(), *mounted]:
            p = os.path.normpath(p)
            if _under(p, path) or (p != "/" and _under(path, p)):
                return True
        ref = pv.spec.claim_ref
        for pod in self.pods():
            if (pod.status.phase if pod.status else None) in ("Succeeded", "Failed"):
                continue
            claims = {v.persistent_volume_claim.claim_name for v in pod.spec.volumes or [] if v.persistent_volume_claim}
            if ref is not None and pod.metadata.namespace == ref.namespace and ref.name in claims:
                return True
        return False

    async def _runtime_paths(self) -> set[str]:
        """Host paths bound into the runtime's live containers (a restarted kubelet has not
        published them again yet)."""
        out: set[str] = set()
        for c in await self.cri.list_containers():
            if c.state == pb.CONTAINER_EXITED:
                continue
            try:
                st = await self.cri.container_status(c.id)
            except Exception:
                continue
            out.update(m.host_path for m in st.mounts if m.host_path)
        return out
