"""Persistent storage with Kubernetes' kinds: PersistentVolume and PersistentVolumeClaim (core/v1)
and StorageClass (storage.k8s.io/v1).

kray's volumes are node-local, the design's "local persistent volumes": a PV is a directory on one
node (``spec.local.path`` or ``spec.hostPath.path``, pinned by ``spec.nodeAffinity``). Claims bind
to PVs as Kubernetes' PV controller binds them (access modes, capacity, class, selector), and
StorageClasses whose provisioner is ``kray.io/local-path`` create a PV for a claim on the node the
scheduler picked for its first pod (``volumeBindingMode: WaitForFirstConsumer``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import model_validator

from ..meta import KrayModel, PrinterColumn, Resource
from ..quantity import Quantity, ResourceList
from ..registry import kind
from ..selectors import LabelSelector
from ..validation import FieldValueError, invalid
from .common import ObjectReference
from .scheduling import NodeSelector

LOCAL_PATH_PROVISIONER = "kray.io/local-path"
# Annotations Kubernetes' PV controller and scheduler use, with the same meaning here.
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
PV_PROTECTION_FINALIZER = "kubernetes.io/pv-protection"
# kray's own: the PV controller asks the volume's node to delete a released local-path volume
# (its kubelet removes the directory, then the PV), and records the base directory it chose.
ANN_RECLAIM = "kray.io/reclaim"
RECLAIM_DELETE_REQUESTED = "delete-requested"
ANN_LOCAL_PATH_BASE = "kray.io/local-path-base"
DEFAULT_LOCAL_PATH_BASE = "/var/lib/kray/local-path"
PVC_PROTECTION_FINALIZER = "kubernetes.io/pvc-protection"

AccessMode = Literal["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]
ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
_BAD = "FieldValueInvalid"
_REQUIRED = "FieldValueRequired"


class LocalVolumeSource(KrayModel):
    path: str
    fs_type: str | None = None


class HostPathVolumeSourceRef(KrayModel):
    path: str
    type: str | None = None


class VolumeNodeAffinity(KrayModel):
    required: NodeSelector | None = None


class PersistentVolumeSpec(KrayModel):
    capacity: ResourceList | None = None
    access_modes: list[str] | None = None
    persistent_volume_reclaim_policy: Literal["Retain", "Delete", "Recycle"] | None = None
    storage_class_name: str | None = None
    volume_mode: Literal["Filesystem", "Block"] | None = None
    claim_ref: ObjectReference | None = None
    node_affinity: VolumeNodeAffinity | None = None
    mount_options: list[str] | None = None
    local: LocalVolumeSource | None = None
    host_path: HostPathVolumeSourceRef | None = None

    @model_validator(mode="after")
    def _check(self) -> PersistentVolumeSpec:
        errors = _access_mode_errors(self.access_modes, "accessModes", required=True)
        if self.capacity is None or "storage" not in self.capacity:
            errors.append(("capacity", "Required value", _REQUIRED))
        if (self.local is None) == (self.host_path is None):
            errors.append(
                ("", "exactly one of local or hostPath must be set (kray's volumes are node-local)", _REQUIRED)
            )
        paths = (("local.path", self.local), ("hostPath.path", self.host_path))
        for name, path in ((n, src.path) for n, src in paths if src is not None):
            if not path.startswith("/"):
                errors.append((name, invalid(path, "must be an absolute path"), _BAD))
        if self.local is not None and (self.node_affinity is None or self.node_affinity.required is None):
            errors.append(("nodeAffinity", "Required value: Local volume requires node affinity", _REQUIRED))
        if self.volume_mode == "Block":
            errors.append(("volumeMode", invalid("Block", "kray's volumes are Filesystem only"), _BAD))
        if errors:
            raise FieldValueError(errors)
        return self

    def node_names(self) -> list[str] | None:
        """The nodes a `kubernetes.io/hostname In [...]` affinity names; None: not only that."""
        required = self.node_affinity.required if self.node_affinity else None
        if required is None:
            return None
        names: list[str] = []
        for term in required.node_selector_terms:
            exprs = term.match_expressions or []
            if len(exprs) != 1 or exprs[0].key != "kubernetes.io/hostname" or exprs[0].operator != "In":
                return None
            names += exprs[0].values or []
        return names


class PersistentVolumeStatus(KrayModel):
    phase: Literal["Pending", "Available", "Bound", "Released", "Failed"] | None = None
    message: str | None = None
    reason: str | None = None


@kind
class PersistentVolume(Resource):
    KIND: ClassVar[str] = "PersistentVolume"
    PLURAL: ClassVar[str] = "persistentvolumes"
    SINGULAR: ClassVar[str] = "persistentvolume"
    NAMESPACED: ClassVar[bool] = False
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("pv",)
    HAS_STATUS_SUBRESOURCE: ClassVar[bool] = True
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(name="Capacity", type="string", json_path=".spec.capacity.storage"),
        PrinterColumn(name="Access Modes", type="string", json_path=".spec.accessModes"),
        PrinterColumn(name="Reclaim Policy", type="string", json_path=".spec.persistentVolumeReclaimPolicy"),
        PrinterColumn(name="Status", type="string", json_path=".status.phase"),
        PrinterColumn(name="Claim", type="string", json_path=".spec.claimRef.name"),
        PrinterColumn(name="StorageClass", type="string", json_path=".spec.storageClassName"),
    )

    spec: PersistentVolumeSpec
    status: PersistentVolumeStatus | None = None

    @property
    def path(self) -> str:
        """The directory on its node that holds the volume's data."""
        src = self.spec.local or self.spec.host_path
        assert src is not None  # validated: one of them is set
        return src.path

    def storage(self) -> Quantity:
        return (self.spec.capacity or {}).get("storage") or Quantity(0)


class VolumeResourceRequirements(KrayModel):
    requests: ResourceList | None = None
    limits: ResourceList | None = None


class PersistentVolumeClaimSpec(KrayModel):
    access_modes: list[str] | None = None
    resources: VolumeResourceRequirements | None = None
    storage_class_name: str | None = None
    volume_name: str | None = None
    volume_mode: Literal["Filesystem", "Block"] | None = None
    selector: LabelSelector | None = None
    data_source: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> PersistentVolumeClaimSpec:
        errors = _access_mode_errors(self.access_modes, "accessModes", required=True)
        requests = (self.resources.requests if self.resources else None) or {}
        if "storage" not in requests:
            errors.append(("resources.requests[storage]", "Required value", _REQUIRED))
        elif requests["storage"].amount <= 0:
            errors.append(
                ("resources.requests[storage]", invalid(str(requests["storage"]), "must be greater than zero"), _BAD)
            )
        if self.volume_mode == "Block":
            errors.append(("volumeMode", invalid("Block", "kray's volumes are Filesystem only"), _BAD))
        if errors:
            raise FieldValueError(errors)
        return self

    def storage(self) -> Quantity:
        return ((self.resources.requests if self.resources else None) or {}).get("storage") or Quantity(0)


class PersistentVolumeClaimStatus(KrayModel):
    phase: Literal["Pending", "Bound", "Lost"] | None = None
    access_modes: list[str] | None = None
    capacity: ResourceList | None = None
    conditions: list[dict[str, Any]] | None = None


@kind
class PersistentVolumeClaim(Resource):
    KIND: ClassVar[str] = "PersistentVolumeClaim"
    PLURAL: ClassVar[str] = "persistentvolumeclaims"
    SINGULAR: ClassVar[str] = "persistentvolumeclaim"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("pvc",)
    HAS_STATUS_SUBRESOURCE: ClassVar[bool] = True
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(name="Status", type="string", json_path=".status.phase"),
        PrinterColumn(name="Volume", type="string", json_path=".spec.volumeName"),
        PrinterColumn(name="Capacity", type="string", json_path=".status.capacity.storage"),
        PrinterColumn(name="Access Modes", type="string", json_path=".status.accessModes"),
        PrinterColumn(name="StorageClass", type="string", json_path=".spec.storageClassName"),
    )

    spec: PersistentVolumeClaimSpec
    status: PersistentVolumeClaimStatus | None = None


@kind
class StorageClass(Resource):
    GROUP: ClassVar[str] = "storage.k8s.io"
    KIND: ClassVar[str] = "StorageClass"
    PLURAL: ClassVar[str] = "storageclasses"
    SINGULAR: ClassVar[str] = "storageclass"
    NAMESPACED: ClassVar[bool] = False
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("sc",)
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(name="Provisioner", type="string", json_path=".provisioner"),
        PrinterColumn(name="ReclaimPolicy", type="string", json_path=".reclaimPolicy"),
        PrinterColumn(name="VolumeBindingMode", type="string", json_path=".volumeBindingMode"),
    )

    provisioner: str
    parameters: dict[str, str] | None = None
    reclaim_policy: Literal["Retain", "Delete"] | None = None
    volume_binding_mode: Literal["Immediate", "WaitForFirstConsumer"] | None = None
    allow_volume_expansion: bool | None = None
    mount_options: list[str] | None = None

    def is_default(self) -> bool:
        return (self.metadata.annotations or {}).get(ANN_DEFAULT_CLASS) == "true"


def _access_mode_errors(modes: list[str] | None, field: str, required: bool) -> list[tuple[str, str, str]]:
    if not modes:
        return [(field, "Required value", _REQUIRED)] if required else []
    errors = []
    for mode in modes:
        if mode not in ACCESS_MODES:
            errors.append(
                (
                    field,
                    f'Unsupported value: "{mode}": supported values: ' + ", ".join(f'"{m}"' for m in ACCESS_MODES),
                    "FieldValueNotSupported",
                )
            )
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        errors.append((field, invalid(modes, "may not use ReadWriteOncePod with other access modes"), _BAD))
    return errors


def fits(pv: PersistentVolume, pvc: PersistentVolumeClaim) -> bool:
    """Kubernetes' findMatchingVolume test for one PV: class, modes, size, selector, and not
    held for another claim. (Whether the PV's node suits a pod is the scheduler's question.)"""
    if (pv.spec.storage_class_name or "") != (pvc.spec.storage_class_name or ""):
        return False
    ref = pv.spec.claim_ref
    if ref is not None and (ref.namespace, ref.name) != (pvc.metadata.namespace, pvc.metadata.name):
        return False
    if ref is not None and ref.uid and ref.uid != pvc.metadata.uid:
        return False
    if not set(pvc.spec.access_modes or []) <= set(pv.spec.access_modes or []):
        return False
    if pv.storage().amount < pvc.spec.storage().amount:
        return False
    if pvc.spec.selector is not None and not pvc.spec.selector.matches(pv.metadata.labels or {}):
        return False
    return not (pv.status and pv.status.phase in ("Released", "Failed") and ref is not None)
