"""Pure helpers of the PersistentVolume controller: which class, which volume, what a binding or a
provisioned volume looks like. No I/O here, so the rules are tested table by table."""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime, timezone

from kray.crds import ObjectMeta, ObjectReference
from kray.crds.core import Node
from kray.crds.core.scheduling import NodeSelector, NodeSelectorRequirement, NodeSelectorTerm
from kray.crds.core.storage import (
    ANN_BIND_COMPLETED,
    ANN_BOUND_BY_CONTROLLER,
    ANN_LOCAL_PATH_BASE,
    ANN_PROVISIONED_BY,
    ANN_RECLAIM,
    ANN_SELECTED_NODE,
    DEFAULT_LOCAL_PATH_BASE,
    LOCAL_PATH_PROVISIONER,
    HostPathVolumeSourceRef,
    PersistentVolume,
    PersistentVolumeClaim,
    PersistentVolumeClaimStatus,
    PersistentVolumeSpec,
    StorageClass,
    VolumeNodeAffinity,
    fits,
)

DEFAULT_LOCAL_PATH = DEFAULT_LOCAL_PATH_BASE
HOSTNAME_LABEL = "kubernetes.io/hostname"
YES = "yes"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def annos(obj: PersistentVolume | PersistentVolumeClaim) -> dict[str, str]:
    return obj.metadata.annotations or {}


def default_class(classes: Iterable[StorageClass]) -> StorageClass | None:
    """The default StorageClass; with several, the newest (Kubernetes >= 1.26 does the same)."""
    defaults = [c for c in classes if c.is_default()]
    if not defaults:
        return None
    return max(defaults, key=lambda c: (c.metadata.creation_timestamp or _EPOCH, c.name))


def binding_mode(cls: StorageClass | None) -> str:
    return (cls.volume_binding_mode if cls else None) or "Immediate"


def claim_ref(pvc: PersistentVolumeClaim) -> ObjectReference:
    """What Kubernetes' reference.GetReference writes into a PV's claimRef."""
    return ObjectReference(
        kind="PersistentVolumeClaim",
        namespace=pvc.metadata.namespace,
        name=pvc.name,
        uid=pvc.metadata.uid,
        api_version="v1",
        resource_version=pvc.metadata.resource_version,
    )


def bound_to(pv: PersistentVolume, pvc: PersistentVolumeClaim) -> bool:
    """Kubernetes' IsVolumeBoundToClaim: the claimRef names this claim, uid included."""
    ref = pv.spec.claim_ref
    return (
        ref is not None
        and (ref.namespace, ref.name) == (pvc.metadata.namespace, pvc.name)
        and ref.uid == pvc.metadata.uid
    )


def reserved_for(pv: PersistentVolume, pvc: PersistentVolumeClaim) -> bool:
    """The claimRef names this claim (a uid, if any, is this claim's): pre-bound by a user, or
    reserved by an earlier pass that stopped before writing the claim."""
    ref = pv.spec.claim_ref
    if ref is None or (ref.namespace, ref.name) != (pvc.metadata.namespace, pvc.name):
        return False
    return not ref.uid or ref.uid == pvc.metadata.uid


def on_node(pv: PersistentVolume, node: str, node_obj: Node | None) -> bool:
    """Can a pod on ``node`` use ``pv``? Its hostname affinity names the node; other affinities are
    evaluated against the Node's labels; no affinity at all means every node (Kubernetes'
    CheckNodeAffinity), which only a hostPath volume may have."""
    names = pv.spec.node_names()
    if names is not None:
        return node in names
    required = pv.spec.node_affinity.required if pv.spec.node_affinity else None
    if required is None:
        return True
    if node_obj is None:
        return False
    return required.matches(node_obj.metadata.labels, {"metadata.name": node})


def usable(pv: PersistentVolume, pvc: PersistentVolumeClaim) -> bool:
    """fits(), and the volume is not on its way out."""
    if pv.metadata.deletion_timestamp is not None or ANN_RECLAIM in annos(pv):
        return False
    return fits(pv, pvc)


def choose_volume(
    volumes: Iterable[PersistentVolume], pvc: PersistentVolumeClaim, node: str | None, node_obj: Node | None
) -> PersistentVolume | None:
    """Kubernetes' findMatchingVolume: a volume reserved for this claim first (pre-bound, or left
    half-bound by a crash), else the smallest fitting Available one (ties by name, so two passes
    over the same cache choose alike); ``node`` (WaitForFirstConsumer) restricts to its volumes."""
    fitting = [pv for pv in volumes if usable(pv, pvc) and (node is None or on_node(pv, node, node_obj))]
    reserved = [pv for pv in fitting if reserved_for(pv, pvc)]
    if reserved:
        return min(reserved, key=lambda pv: pv.name)
    free = [pv for pv in fitting if pv.spec.claim_ref is None]
    if not free:
        return None
    return min(free, key=lambda pv: (pv.storage().amount, pv.name))


def mismatch(pv: PersistentVolume, pvc: PersistentVolumeClaim) -> str | None:
    """Why a volume named by the claim's spec.volumeName cannot serve it (Kubernetes'
    checkVolumeSatisfyClaim: size, class, modes; the selector is not checked for a named volume)."""
    if pv.storage().amount < pvc.spec.storage().amount:
        return "requested PV is too small"
    if (pv.spec.storage_class_name or "") != (pvc.spec.storage_class_name or ""):
        return "storageClassName does not match"
    if not set(pvc.spec.access_modes or []) <= set(pv.spec.access_modes or []):
        return "incompatible accessMode"
    return None


def bind_volume(pv: PersistentVolume, pvc: PersistentVolumeClaim) -> PersistentVolume | None:
    """The PV with its claimRef on ``pvc`` and bound-by-controller (Kubernetes'
    getBindVolumeToClaim), or None when it already is. ``pv`` is not changed: caches are shared."""
    if bound_to(pv, pvc):
        return None
    new = pv.model_copy(deep=True)
    new.spec.claim_ref = claim_ref(pvc)
    new.metadata.annotations = {**annos(pv), ANN_BOUND_BY_CONTROLLER: YES}
    return new


def bind_claim(pvc: PersistentVolumeClaim, pv: PersistentVolume) -> PersistentVolumeClaim | None:
    """The PVC with spec.volumeName and bind-completed (and bound-by-controller when this
    controller set the name), or None when nothing changes (getBindClaimToVolume)."""
    new = pvc.model_copy(deep=True)
    ann = dict(annos(pvc))
    if pvc.spec.volume_name != pv.name:
        new.spec.volume_name = pv.name
        ann.setdefault(ANN_BOUND_BY_CONTROLLER, YES)
    ann.setdefault(ANN_BIND_COMPLETED, YES)
    new.metadata.annotations = ann
    return new if new.to_dict() != pvc.to_dict() else None


def bound_claim_status(pv: PersistentVolume) -> PersistentVolumeClaimStatus:
    return PersistentVolumeClaimStatus(
        phase="Bound", access_modes=list(pv.spec.access_modes or []), capacity=dict(pv.spec.capacity or {})
    )


def local_base(cls: StorageClass) -> str:
    """The class's ``path`` parameter (or the default), normalised: the directory the kubelet
    removes volumes under, so it must be absolute and not ``/``."""
    return os.path.normpath((cls.parameters or {}).get("path") or DEFAULT_LOCAL_PATH)


def local_path(cls: StorageClass, pvc: PersistentVolumeClaim, pv_name: str) -> str:
    return os.path.join(local_base(cls), f"{pvc.metadata.namespace}_{pvc.name}_{pv_name}")


def provisioned_name(pvc: PersistentVolumeClaim) -> str:
    return f"pvc-{pvc.metadata.uid}"


def provisioned_volume(cls: StorageClass, pvc: PersistentVolumeClaim, node: str) -> PersistentVolume:
    """The local-path volume for ``pvc`` on ``node``: a hostPath directory the node's kubelet
    creates on first mount, pinned to the node, pre-bound to the claim."""
    name = provisioned_name(pvc)
    affinity = NodeSelector(
        node_selector_terms=[
            NodeSelectorTerm(
                match_expressions=[NodeSelectorRequirement(key=HOSTNAME_LABEL, operator="In", values=[node])]
            )
        ]
    )
    return PersistentVolume(
        metadata=ObjectMeta(
            name=name,
            annotations={
                ANN_PROVISIONED_BY: LOCAL_PATH_PROVISIONER,
                ANN_BOUND_BY_CONTROLLER: YES,
                # The kubelet removes only directories directly under this base (a class edited
                # later must not widen what it may delete).
                ANN_LOCAL_PATH_BASE: local_base(cls),
            },
        ),
        spec=PersistentVolumeSpec(
            capacity={"storage": pvc.spec.storage()},
            access_modes=list(pvc.spec.access_modes or []),
            persistent_volume_reclaim_policy=cls.reclaim_policy or "Delete",
            storage_class_name=cls.name,
            claim_ref=claim_ref(pvc),
            node_affinity=VolumeNodeAffinity(required=affinity),
            mount_options=cls.mount_options,
            host_path=HostPathVolumeSourceRef(path=local_path(cls, pvc, name), type="DirectoryOrCreate"),
        ),
    )


def selected_node(pvc: PersistentVolumeClaim) -> str | None:
    return annos(pvc).get(ANN_SELECTED_NODE) or None
