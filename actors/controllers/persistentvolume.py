"""The PersistentVolume controller (kube-controller-manager's persistentvolume-binder, with its
pvc-protection and pv-protection companions) for kray's node-local volumes.

Four controllers in one manager, each level-based over the informer caches:

    persistentvolume-claim   binds Pending claims, provisions kray.io/local-path volumes
                             (``pvclaims``)
    persistentvolume-volume  volume phases, release and reclaim (``pvvolumes``)
    pvc-protection           kubernetes.io/pvc-protection (``pvprotection``)
    pv-protection            kubernetes.io/pv-protection

What they write, for the scheduler and the kubelet to rely on:

    PV   spec.claimRef {kind, namespace, name, uid, apiVersion, resourceVersion};
         pv.kubernetes.io/bound-by-controller=yes when this controller set the claimRef;
         pv.kubernetes.io/provisioned-by=kray.io/local-path on volumes it provisioned;
         kray.io/reclaim=delete-requested on a Released local-path volume whose policy is Delete
         (the node's kubelet removes the directory, then deletes the PV);
         status.phase Available | Bound | Released | Failed (message on Failed)
    PVC  spec.storageClassName (the default class, only when unset), spec.volumeName;
         pv.kubernetes.io/bind-completed=yes, pv.kubernetes.io/bound-by-controller=yes (when
         this controller chose the volume), volume.kubernetes.io/storage-provisioner;
         status {phase Pending | Bound | Lost, accessModes, capacity}

It reads ``volume.kubernetes.io/selected-node`` on claims of WaitForFirstConsumer classes (the
scheduler sets it): no binding before it, then only to a volume on that node, or a new one there.
"""

from __future__ import annotations

from collections.abc import Iterator

from kray.actors.framework import ControllerBuilder, Manager, Request
from kray.crds.core import Node, Pod
from kray.crds.core.storage import (
    ANN_BIND_COMPLETED,
    ANN_RECLAIM,
    RECLAIM_DELETE_REQUESTED,
    PersistentVolume,
    PersistentVolumeClaim,
    StorageClass,
)
from kray.crds.meta import Resource

from .pvclaims import ClaimReconciler
from .pvprotection import ClaimProtectionReconciler, VolumeProtectionReconciler, claim_names
from .pvutil import annos
from .pvvolumes import VolumeReconciler

COMPONENT = "persistentvolume-controller"
CLAIMS = "persistentvolume-claim"
VOLUMES = "persistentvolume-volume"
PVC_PROTECTION = "pvc-protection"
PV_PROTECTION = "pv-protection"

__all__ = [
    "ANN_RECLAIM",
    "RECLAIM_DELETE_REQUESTED",
    "ClaimProtectionReconciler",
    "ClaimReconciler",
    "VolumeProtectionReconciler",
    "VolumeReconciler",
    "setup",
]


def setup(manager: Manager, **options: object) -> None:
    """Register the four controllers (options: ``workers``: int per controller, default 2)."""
    raw = options.get("workers", 2)
    workers = raw if isinstance(raw, int) and not isinstance(raw, bool) else 2
    claims = manager.informer_for(PersistentVolumeClaim)
    volumes = manager.informer_for(PersistentVolume)

    def unbound_claims(class_name: str | None) -> Iterator[Request]:
        """Claims still looking for a volume of this class (or with no class yet: they may get the
        default one)."""
        for c in claims.cache.list(None):
            if not isinstance(c, PersistentVolumeClaim) or c.spec.volume_name:
                continue
            if ANN_BIND_COMPLETED in annos(c) or c.metadata.deletion_timestamp is not None:
                continue
            cls = c.spec.storage_class_name
            if cls is None or cls == (class_name or ""):
                yield Request.for_object(c)

    def volume_to_claims(obj: Resource) -> list[Request]:
        assert isinstance(obj, PersistentVolume)
        ref = obj.spec.claim_ref
        if ref is not None and ref.name:
            return [Request(ref.namespace or None, ref.name)]  # reserved for it: complete the binding
        return list(unbound_claims(obj.spec.storage_class_name))  # a free volume: who may want it

    def class_to_claims(obj: Resource) -> list[Request]:
        return list(unbound_claims(obj.name))

    def claim_to_volumes(obj: Resource) -> list[Request]:
        assert isinstance(obj, PersistentVolumeClaim)
        keys = {Request(None, obj.spec.volume_name)} if obj.spec.volume_name else set()
        for pv in volumes.cache.list(None):
            ref = pv.spec.claim_ref if isinstance(pv, PersistentVolume) else None
            if ref is not None and (ref.namespace, ref.name) == (obj.metadata.namespace, obj.name):
                keys.add(Request.for_object(pv))
        return sorted(keys)

    def node_to_volumes(obj: Resource) -> list[Request]:
        """Volumes waiting for this node's kubelet to delete them: a node gone never will."""
        return [
            Request.for_object(pv)
            for pv in volumes.cache.list(None)
            if isinstance(pv, PersistentVolume)
            and annos(pv).get(ANN_RECLAIM) == RECLAIM_DELETE_REQUESTED
            and obj.name in (pv.spec.node_names() or [])
        ]

    def pod_to_claims(obj: Resource) -> list[Request]:
        assert isinstance(obj, Pod)
        return [Request(obj.metadata.namespace or None, name) for name in sorted(claim_names(obj))]

    recorder = manager.event_recorder(COMPONENT)
    reader, writer = manager.reader, manager.writer
    (
        ControllerBuilder(manager)
        .named(CLAIMS)
        .for_(PersistentVolumeClaim)
        .watches(PersistentVolume, volume_to_claims)
        .watches(StorageClass, class_to_claims)
        .with_workers(workers)
        .complete(ClaimReconciler(reader, writer, recorder))
    )
    (
        ControllerBuilder(manager)
        .named(VOLUMES)
        .for_(PersistentVolume)
        .watches(PersistentVolumeClaim, claim_to_volumes)
        .watches(Node, node_to_volumes)
        .with_workers(workers)
        .complete(VolumeReconciler(reader, writer, recorder))
    )
    (
        ControllerBuilder(manager)
        .named(PVC_PROTECTION)
        .for_(PersistentVolumeClaim)
        .watches(Pod, pod_to_claims)
        .with_workers(workers)
        .complete(ClaimProtectionReconciler(reader, writer))
    )
    ControllerBuilder(manager).named(PV_PROTECTION).for_(PersistentVolume).with_workers(workers).complete(
        VolumeProtectionReconciler(reader, writer)
    )


build = setup  # deploy_controller("persistentvolume", "kray.actors.controllers.persistentvolume:setup", config)
