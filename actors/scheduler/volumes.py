"""What the scheduler knows of persistent storage: PVCs, PVs and StorageClasses from informers,
plus PVs the VolumeBinding plugin has *assumed* (kube-scheduler's assume cache).

A static PV picked for a claim at Reserve is assumed with its claimRef set before anything is
written, so the next pod's Filter already sees it taken (two pods scheduled back to back must not
both count on it). The overlay goes when Unreserve reverts it, or when the informer delivers a
newer version of the PV (the write landed, or someone else changed it: the API's word wins).
"""

from __future__ import annotations

from typing import Any, Protocol

from kray.crds.core.storage import PersistentVolume, PersistentVolumeClaim, StorageClass
from kray.crds.meta import Resource

HOSTNAME_LABEL = "kubernetes.io/hostname"


class VolumeClient(Protocol):
    """The writes VolumeBinding's PreBind makes (``kray.client.AsyncClient`` satisfies it): a live
    read and an optimistic-concurrency update (``kray.client.errors.Conflict`` on a stale
    resourceVersion, ``NotFound`` when the object is gone)."""

    async def get(self, kind: Any, name: str, namespace: str | None = None) -> Any: ...

    async def update(self, obj: Any) -> Any: ...


def claim_key(namespace: str | None, name: str | None) -> str:
    return f"{namespace or 'default'}/{name or ''}"


def pvc_key(pvc: PersistentVolumeClaim) -> str:
    return claim_key(pvc.metadata.namespace, pvc.metadata.name)


class VolumeCache:
    def __init__(self) -> None:
        self.pvcs: dict[str, PersistentVolumeClaim] = {}
        self.pvs: dict[str, PersistentVolume] = {}
        self.classes: dict[str, StorageClass] = {}
        # PV name -> (resourceVersion it was assumed on, the PV with the claimRef Reserve chose).
        self._assumed: dict[str, tuple[str | None, PersistentVolume]] = {}

    # --- informer side -----------------------------------------------------------------------
    def set_pvc(self, pvc: PersistentVolumeClaim) -> None:
        self.pvcs[pvc_key(pvc)] = pvc

    def delete_pvc(self, pvc: PersistentVolumeClaim) -> None:
        self.pvcs.pop(pvc_key(pvc), None)

    def set_pv(self, pv: PersistentVolume) -> None:
        name = pv.metadata.name or ""
        assumed = self._assumed.get(name)
        if assumed is not None and assumed[0] != pv.metadata.resource_version:
            del self._assumed[name]  # a newer version arrived: it supersedes our assumption
        self.pvs[name] = pv

    def delete_pv(self, pv: PersistentVolume) -> None:
        name = pv.metadata.name or ""
        self.pvs.pop(name, None)
        self._assumed.pop(name, None)

    def set_class(self, sc: StorageClass) -> None:
        self.classes[sc.metadata.name or ""] = sc

    def delete_class(self, sc: StorageClass) -> None:
        self.classes.pop(sc.metadata.name or "", None)

    # --- plugin side -------------------------------------------------------------------------
    def pv(self, name: str) -> PersistentVolume | None:
        assumed = self._assumed.get(name)
        return assumed[1] if assumed is not None else self.pvs.get(name)

    def list_pvs(self) -> list[PersistentVolume]:
        return [self.pv(name) or pv for name, pv in self.pvs.items()]

    def assume_pv(self, pv: PersistentVolume, claimed: PersistentVolume) -> None:
        """Record ``claimed`` (``pv`` with the claimRef Reserve chose) until the API confirms it."""
        self._assumed[pv.metadata.name or ""] = (pv.metadata.resource_version, claimed)

    def restore_pv(self, name: str, claim: str) -> None:
        """Unreserve: drop the assumption, if it is still the one made for ``claim``."""
        assumed = self._assumed.get(name)
        ref = assumed[1].spec.claim_ref if assumed is not None else None
        if ref is not None and claim_key(ref.namespace, ref.name) == claim:
            del self._assumed[name]

    def is_assumed(self, name: str) -> bool:
        return name in self._assumed


def node_labels(name: str, labels: dict[str, str]) -> dict[str, str]:
    """A node's labels as volume affinity sees them: ``kubernetes.io/hostname`` is its name unless set."""
    return labels if HOSTNAME_LABEL in labels else {**labels, HOSTNAME_LABEL: name}


def pv_fits_node(pv: PersistentVolume, node_name: str, labels: dict[str, str]) -> bool:
    """The PV's ``spec.nodeAffinity.required`` admits the node (no affinity: every node)."""
    required = pv.spec.node_affinity.required if pv.spec.node_affinity else None
    if required is None:
        return True
    return required.matches(node_labels(node_name, labels), {"metadata.name": node_name})


def is_deleting(obj: Resource) -> bool:
    return obj.metadata.deletion_timestamp is not None
