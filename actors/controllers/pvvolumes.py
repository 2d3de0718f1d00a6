"""The volume half of the PersistentVolume controller (Kubernetes' syncVolume): keep each
PersistentVolume's phase from its claimRef and the claim it names, and reclaim released volumes.

    no claimRef, or one without a uid (pre-bound by a user)   Available
    claimRef to the claim whose spec.volumeName is this volume  Bound
    claimRef to a claim that is gone (or has another uid)       Released, then its reclaim policy:
        Retain   stays Released (an admin reuses or deletes it)
        Recycle  Failed, "No recycler plugin found for the volume!" (Kubernetes' answer without one)
        Delete   provisioned by kray.io/local-path: annotated kray.io/reclaim=delete-requested;
                 the kubelet of the volume's node removes the directory and then deletes the PV
                 object (the controller cannot reach a node's disk). Should that node be gone from
                 the cluster, no kubelet ever will: the controller deletes the PV object itself
                 (the directory went with the node). Should the node exist but its kubelet never
                 act, the volume stays Released with the annotation, for an admin to delete.
                 Provisioned by another provisioner: left to it (Kubernetes waits likewise).
                 Not provisioned (a static volume): Failed with a VolumeFailedDelete event, as
                 Kubernetes does when no volume plugin can delete it.
    claimRef to a claim bound to another volume: unbound (Available) if this controller bound it,
        claimRef uid cleared if a user pre-bound it; a provisioned Delete volume is released.

A cache miss on the claim is checked against the API server before a volume is released: the
volume informer may be ahead of the claim informer (a volume provisioned for a new claim).
"""

from __future__ import annotations

import logging
from typing import Literal

from kray.actors.framework import EventRecorder, Reader, Request, Result, Writer
from kray.client.errors import NotFound
from kray.crds.core import Node
from kray.crds.core.storage import (
    ANN_BOUND_BY_CONTROLLER,
    ANN_PROVISIONED_BY,
    ANN_RECLAIM,
    LOCAL_PATH_PROVISIONER,
    RECLAIM_DELETE_REQUESTED,
    PersistentVolume,
    PersistentVolumeClaim,
    PersistentVolumeStatus,
)

from .pvutil import annos

log = logging.getLogger(__name__)

Phase = Literal["Pending", "Available", "Bound", "Released", "Failed"]
NO_DELETER = 'error getting deleter volume plugin for volume "{}": no deletable volume plugin matched'
NO_RECYCLER = "No recycler plugin found for the volume!"


def phase_of(pv: PersistentVolume) -> str | None:
    return pv.status.phase if pv.status else None


class VolumeReconciler:
    def __init__(self, reader: Reader, writer: Writer, recorder: EventRecorder) -> None:
        self.reader = reader
        self.writer = writer
        self.recorder = recorder

    async def reconcile(self, request: Request) -> Result:
        try:
            pv = await self.reader.get(PersistentVolume, request.name)
        except NotFound:
            return Result()
        ref = pv.spec.claim_ref
        if ref is None or not ref.uid:
            await self._phase(pv, "Available")
            return Result()
        claim = await self._claim(pv)
        if claim is None:
            if phase_of(pv) not in ("Released", "Failed"):  # a Failed volume keeps telling why
                pv = await self._phase(pv, "Released")
                log.info("volume %s released (claim %s/%s gone)", pv.name, ref.namespace, ref.name)
            await self._reclaim(pv)
        elif not claim.spec.volume_name:
            pass  # reserved for a claim not written yet: the claim pass (woken by this PV) completes it
        elif claim.spec.volume_name == pv.name:
            await self._phase(pv, "Bound")
        elif annos(pv).get(ANN_PROVISIONED_BY) and pv.spec.persistent_volume_reclaim_policy == "Delete":
            if phase_of(pv) not in ("Released", "Failed"):  # provisioned for a claim that went elsewhere
                pv = await self._phase(pv, "Released")
            await self._reclaim(pv)
        else:
            await self._unbind(pv)
        return Result()

    async def _claim(self, pv: PersistentVolume) -> PersistentVolumeClaim | None:
        """The claim the claimRef names, if it still exists with that uid."""
        ref = pv.spec.claim_ref
        assert ref is not None and ref.name
        try:
            claim: PersistentVolumeClaim | None = await self.reader.get(PersistentVolumeClaim, ref.name, ref.namespace)
        except NotFound:
            claim = None
        if (claim is None or claim.metadata.uid != ref.uid) and phase_of(pv) not in ("Released", "Failed"):
            try:  # never release on a stale cache alone
                claim = await self.writer.get(PersistentVolumeClaim, ref.name, ref.namespace)
            except NotFound:
                claim = None
        return claim if claim is not None and claim.metadata.uid == ref.uid else None

    async def _unbind(self, pv: PersistentVolume) -> None:
        """Kubernetes' unbindVolume: drop a claimRef this controller set; keep a user's pre-binding
        but forget the uid, so the claim of that name can bind it again."""
        new = pv.model_copy(deep=True)
        assert new.spec.claim_ref is not None
        if ANN_BOUND_BY_CONTROLLER in annos(pv):
            new.spec.claim_ref = None
            new.metadata.annotations = {k: v for k, v in annos(pv).items() if k != ANN_BOUND_BY_CONTROLLER}
        else:
            new.spec.claim_ref.uid = None
        pv = await self.writer.update(new)
        await self._phase(pv, "Available")

    async def _reclaim(self, pv: PersistentVolume) -> None:
        policy = pv.spec.persistent_volume_reclaim_policy or "Retain"
        if policy == "Retain":
            return
        if policy == "Recycle":
            await self._fail(pv, "VolumeFailedRecycle", NO_RECYCLER)
            return
        provisioner = annos(pv).get(ANN_PROVISIONED_BY)
        if provisioner == LOCAL_PATH_PROVISIONER:
            await self._request_delete(pv)
        elif provisioner is None:
            await self._fail(pv, "VolumeFailedDelete", NO_DELETER.format(pv.name))
        # else: another provisioner's volume; it deletes it

    async def _request_delete(self, pv: PersistentVolume) -> None:
        if annos(pv).get(ANN_RECLAIM) != RECLAIM_DELETE_REQUESTED:
            new = pv.model_copy(deep=True)
            new.metadata.annotations = {**annos(pv), ANN_RECLAIM: RECLAIM_DELETE_REQUESTED}
            pv = await self.writer.update(new)
            nodes = ", ".join(pv.spec.node_names() or []) or "?"
            msg = f"waiting for the kubelet of node {nodes} to remove {pv.path} and delete the volume"
            await self.recorder.event(pv, "Normal", "VolumeDeleteRequested", msg)
        if pv.metadata.deletion_timestamp is None and await self._nodes_gone(pv):
            await self._delete_orphan(pv)

    async def _nodes_gone(self, pv: PersistentVolume) -> bool:
        """Every node the volume may live on is gone from the cluster (checked live)."""
        nodes = pv.spec.node_names()
        if not nodes:
            return False
        for node in nodes:
            try:
                await self.reader.get(Node, node)
                return False
            except NotFound:
                pass
            try:
                await self.writer.get(Node, node)
                return False
            except NotFound:
                pass
        return True

    async def _delete_orphan(self, pv: PersistentVolume) -> None:
        live: PersistentVolume = await self.writer.get(PersistentVolume, pv.name)
        if live.metadata.uid != pv.metadata.uid or annos(live).get(ANN_RECLAIM) != RECLAIM_DELETE_REQUESTED:
            return  # changed since our read: the next pass decides again
        if phase_of(live) not in ("Released", "Failed"):
            return
        msg = (
            f"node {', '.join(pv.spec.node_names() or [])} is gone: deleting the volume object ({pv.path} went with it)"
        )
        await self.recorder.event(pv, "Warning", "VolumeNodeGone", msg)
        try:
            await self.writer.delete(PersistentVolume, pv.name)
        except NotFound:
            pass

    async def _fail(self, pv: PersistentVolume, reason: str, message: str) -> None:
        if phase_of(pv) == "Failed" and pv.status and pv.status.message == message:
            return
        await self._phase(pv, "Failed", message)
        await self.recorder.event(pv, "Warning", reason, message)

    async def _phase(self, pv: PersistentVolume, phase: Phase, message: str | None = None) -> PersistentVolume:
        status = pv.status or PersistentVolumeStatus()
        if status.phase == phase and status.message == message:
            return pv
        new = pv.model_copy(deep=True)
        new.status = PersistentVolumeStatus(phase=phase, message=message)
        updated: PersistentVolume = await self.writer.update_status(new)
        return updated
