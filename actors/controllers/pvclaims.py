"""The claim half of the PersistentVolume controller (Kubernetes' syncClaim): bind each Pending
PersistentVolumeClaim to a volume, provisioning a local-path one when its class says so.

Every pass re-reads the claim and the volumes from the informer caches and writes with the
resourceVersions it read. A binding is written volume first (claimRef: the compare-and-swap that
keeps one volume from going to two claims), then the claim; a pass that stops in between leaves a
volume reserved for the claim, which the next pass prefers and completes, as Kubernetes does.
"""

from __future__ import annotations

import logging
from typing import Literal

from kray.actors.framework import EventRecorder, Reader, Request, Result, Writer
from kray.client.errors import AlreadyExists, Invalid, NotFound
from kray.crds.core import Node
from kray.crds.core.storage import (
    ANN_BIND_COMPLETED,
    ANN_STORAGE_PROVISIONER,
    LOCAL_PATH_PROVISIONER,
    PersistentVolume,
    PersistentVolumeClaim,
    PersistentVolumeClaimStatus,
    PersistentVolumeStatus,
    StorageClass,
)

from .pvutil import (
    annos,
    bind_claim,
    bind_volume,
    binding_mode,
    bound_claim_status,
    bound_to,
    choose_volume,
    default_class,
    local_base,
    mismatch,
    provisioned_name,
    provisioned_volume,
    reserved_for,
    selected_node,
)

log = logging.getLogger(__name__)

WFFC = "WaitForFirstConsumer"


class ClaimReconciler:
    def __init__(self, reader: Reader, writer: Writer, recorder: EventRecorder) -> None:
        self.reader = reader
        self.writer = writer
        self.recorder = recorder

    async def reconcile(self, request: Request) -> Result:
        try:
            pvc = await self.reader.get(PersistentVolumeClaim, request.name, request.namespace)
        except NotFound:
            return Result()  # the volume pass releases what it held
        if pvc.metadata.deletion_timestamp is not None:
            return Result()  # being deleted: no new binding (pvc-protection holds it while in use)
        if ANN_BIND_COMPLETED in annos(pvc):
            await self._sync_bound(pvc)
        elif pvc.spec.volume_name:
            await self._sync_named(pvc)
        else:
            await self._sync_unbound(await self._default_class(pvc))
        return Result()

    # ---- unbound claims ----

    async def _default_class(self, pvc: PersistentVolumeClaim) -> PersistentVolumeClaim:
        """What the DefaultStorageClass admission plugin (absent here) does at create, done
        retroactively as Kubernetes' PV controller also does: a claim with no class at all (not
        "", which asks for class-less volumes) gets the default class, if there is one."""
        if pvc.spec.storage_class_name is not None:
            return pvc
        cls = default_class(await self.reader.list(StorageClass))
        if cls is None:
            return pvc
        new = pvc.model_copy(deep=True)
        new.spec.storage_class_name = cls.name
        return await self.writer.update(new)

    async def _sync_unbound(self, pvc: PersistentVolumeClaim) -> None:
        class_name = pvc.spec.storage_class_name or ""
        cls = await self._class(class_name)
        node = None
        if binding_mode(cls) == WFFC:
            node = selected_node(pvc)
            if node is None:  # the scheduler sets it when it places the claim's first pod
                await self._pending(pvc)
                await self._event(pvc, "Normal", WFFC, "waiting for first consumer to be created before binding")
                return
        node_obj = await self._node(node) if node else None
        pv = choose_volume(await self.reader.list(PersistentVolume), pvc, node, node_obj)
        if pv is not None:
            await self._bind(pv, pvc)
            return
        await self._pending(pvc)
        if cls is None and class_name:
            msg = f'storageclass.storage.k8s.io "{class_name}" not found'
            await self._event(pvc, "Warning", "ProvisioningFailed", msg)
        elif cls is None:
            msg = "no persistent volumes available for this claim and no storage class is set"
            await self._event(pvc, "Normal", "FailedBinding", msg)
        elif cls.provisioner != LOCAL_PATH_PROVISIONER:
            pvc = await self._set_provisioner(pvc, cls.provisioner)
            msg = (
                f"Waiting for a volume to be created either by the external provisioner '{cls.provisioner}' "
                "or manually by the system administrator"
            )
            await self._event(pvc, "Normal", "ExternalProvisioning", msg)
        elif node is None:
            # Immediate binding: there is no node to put a node-local directory on.
            msg = (
                f'storageclass "{cls.name}" uses provisioner {LOCAL_PATH_PROVISIONER}, which provisions on the '
                f"node of the claim's first pod only: set volumeBindingMode: {WFFC}"
            )
            await self._event(pvc, "Warning", "ProvisioningFailed", msg)
        else:
            await self._provision(cls, pvc, node)

    async def _provision(self, cls: StorageClass, pvc: PersistentVolumeClaim, node: str) -> None:
        """Create the local-path volume on ``node``, pre-bound to the claim, then bind. Its name
        comes from the claim's uid, so a second try (a crash, a stale cache) finds the first."""
        name = provisioned_name(pvc)
        base = local_base(cls)
        if not base.startswith("/") or not base.strip("/"):
            msg = f'storageclass "{cls.name}": parameter path must be an absolute path other than "/"'
            await self._event(pvc, "Warning", "ProvisioningFailed", msg)
            return
        pvc = await self._set_provisioner(pvc, cls.provisioner)
        ident = f"{pvc.metadata.namespace}/{pvc.name}"
        await self._event(pvc, "Normal", "Provisioning", f'provisioning a volume for claim "{ident}" on node "{node}"')
        try:
            pv = await self.writer.create(provisioned_volume(cls, pvc, node))
        except AlreadyExists:
            pv = await self.writer.get(PersistentVolume, name)  # live: the cache may not have it yet
            if not reserved_for(pv, pvc):
                msg = f'volume "{name}" already exists and is not reserved for this claim'
                await self._event(pvc, "Warning", "ProvisioningFailed", msg)
                return
        except Invalid as exc:  # retrying the same object cannot help; a class change wakes us
            await self._event(pvc, "Warning", "ProvisioningFailed", f"failed to provision volume: {exc}")
            return
        else:
            msg = f"Successfully provisioned volume {name} using {LOCAL_PATH_PROVISIONER}"
            await self._event(pvc, "Normal", "ProvisioningSucceeded", msg)
        await self._bind(pv, pvc)

    async def _set_provisioner(self, pvc: PersistentVolumeClaim, provisioner: str) -> PersistentVolumeClaim:
        if annos(pvc).get(ANN_STORAGE_PROVISIONER) == provisioner:
            return pvc
        new = pvc.model_copy(deep=True)
        new.metadata.annotations = {**annos(pvc), ANN_STORAGE_PROVISIONER: provisioner}
        return await self.writer.update(new)

    # ---- claims that name their volume ----

    async def _sync_named(self, pvc: PersistentVolumeClaim) -> None:
        """spec.volumeName set by the user (or by a pass that stopped before bind-completed)."""
        name = pvc.spec.volume_name or ""
        try:
            pv = await self.reader.get(PersistentVolume, name)
        except NotFound:
            await self._pending(pvc)  # the volume may be created later; its add wakes us
            return
        if pv.spec.claim_ref is not None and not reserved_for(pv, pvc):
            await self._pending(pvc)
            await self._event(pvc, "Warning", "FailedBinding", f'volume "{name}" already bound to a different claim.')
            return
        why = mismatch(pv, pvc)
        if why is not None:
            await self._pending(pvc)
            await self._event(pvc, "Warning", "VolumeMismatch", f'Cannot bind to requested volume "{name}": {why}')
            return
        await self._bind(pv, pvc)

    # ---- bound claims ----

    async def _sync_bound(self, pvc: PersistentVolumeClaim) -> None:
        if not pvc.spec.volume_name:
            msg = "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!"
            await self._lost(pvc, "ClaimLost", msg)
            return
        try:
            pv = await self.reader.get(PersistentVolume, pvc.spec.volume_name)
        except NotFound:
            await self._lost(pvc, "ClaimLost", "Bound claim has lost its PersistentVolume. Data on the volume is lost!")
            return
        if pv.spec.claim_ref is None or bound_to(pv, pvc):
            await self._bind(pv, pvc)  # idempotent: repairs whichever half is missing
        else:
            msg = "Two claims are bound to the same volume, this one is bound incorrectly"
            await self._lost(pvc, "ClaimMisbound", msg)

    # ---- writes ----

    async def _bind(self, pv: PersistentVolume, pvc: PersistentVolumeClaim) -> None:
        """Kubernetes' bind(): volume claimRef, volume phase, claim spec, claim status; each write
        only when it changes something, each with the resourceVersion read (409: requeued)."""
        new_pv = bind_volume(pv, pvc)
        if new_pv is not None:
            pv = await self.writer.update(new_pv)  # the CAS: a volume taken since our read is a 409
            log.info("volume %s reserved for claim %s/%s", pv.name, pvc.metadata.namespace, pvc.name)
        if (pv.status.phase if pv.status else None) != "Bound":
            new_pv = pv.model_copy(deep=True)
            new_pv.status = PersistentVolumeStatus(phase="Bound")
            pv = await self.writer.update_status(new_pv)
        new_pvc = bind_claim(pvc, pv)
        if new_pvc is not None:
            pvc = await self.writer.update(new_pvc)
        status = bound_claim_status(pv)
        status.conditions = pvc.status.conditions if pvc.status else None
        if pvc.status is None or pvc.status.to_dict() != status.to_dict():
            new_pvc = pvc.model_copy(deep=True)
            new_pvc.status = status
            await self.writer.update_status(new_pvc)
            log.info("claim %s/%s bound to volume %s", pvc.metadata.namespace, pvc.name, pv.name)

    async def _pending(self, pvc: PersistentVolumeClaim) -> None:
        await self._claim_phase(pvc, "Pending")

    async def _lost(self, pvc: PersistentVolumeClaim, reason: str, message: str) -> None:
        if await self._claim_phase(pvc, "Lost"):
            await self._event(pvc, "Warning", reason, message)

    async def _claim_phase(self, pvc: PersistentVolumeClaim, phase: Literal["Pending", "Lost"]) -> bool:
        if pvc.status is not None and pvc.status.phase == phase:
            return False
        new = pvc.model_copy(deep=True)
        old = pvc.status or PersistentVolumeClaimStatus()
        keep = phase == "Lost"  # a lost claim still shows what it had; a pending one has nothing yet
        new.status = PersistentVolumeClaimStatus(
            phase=phase,
            access_modes=old.access_modes if keep else None,
            capacity=old.capacity if keep else None,
            conditions=old.conditions,
        )
        await self.writer.update_status(new)
        return True

    # ---- reads ----

    async def _class(self, name: str) -> StorageClass | None:
        if not name:
            return None
        try:
            return await self.reader.get(StorageClass, name)
        except NotFound:
            return None

    async def _node(self, name: str) -> Node | None:
        try:
            return await self.reader.get(Node, name)
        except NotFound:
            return None

    async def _event(self, pvc: PersistentVolumeClaim, type_: str, reason: str, message: str) -> None:
        await self.recorder.event(pvc, "Warning" if type_ == "Warning" else "Normal", reason, message)
