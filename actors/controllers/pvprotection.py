"""Storage-object-in-use protection (Kubernetes' pvc-protection and pv-protection controllers).

Every claim and volume gets a finalizer while it lives, so that a delete only marks it:

    kubernetes.io/pvc-protection  held while any Pod of the claim's namespace that has not
                                  terminated (phase not Succeeded/Failed) names the claim in
                                  spec.volumes[].persistentVolumeClaim.claimName
    kubernetes.io/pv-protection   held while the volume is Bound

then removed, and the API server finishes the delete. Pods are read from the informer cache; a
pod created while its claim is being deleted is the scheduler's to refuse, as in Kubernetes.
"""

from __future__ import annotations

import logging

from kray.actors.framework import Reader, Request, Result, Writer, add_finalizer, has_finalizer, remove_finalizer
from kray.client.errors import NotFound
from kray.crds.core import Pod
from kray.crds.core.storage import (
    PV_PROTECTION_FINALIZER,
    PVC_PROTECTION_FINALIZER,
    PersistentVolume,
    PersistentVolumeClaim,
)

log = logging.getLogger(__name__)


def claim_names(pod: Pod) -> set[str]:
    return {v.persistent_volume_claim.claim_name for v in pod.spec.volumes or [] if v.persistent_volume_claim}


def pod_uses(pod: Pod, claim: str) -> bool:
    terminated = pod.status is not None and pod.status.phase in ("Succeeded", "Failed")
    return not terminated and claim in claim_names(pod)


class ClaimProtectionReconciler:
    def __init__(self, reader: Reader, writer: Writer) -> None:
        self.reader = reader
        self.writer = writer

    async def reconcile(self, request: Request) -> Result:
        try:
            pvc = await self.reader.get(PersistentVolumeClaim, request.name, request.namespace)
        except NotFound:
            return Result()
        new = pvc.model_copy(deep=True)  # cached objects are shared
        if pvc.metadata.deletion_timestamp is None:
            if add_finalizer(new, PVC_PROTECTION_FINALIZER):
                await self.writer.update(new)
            return Result()
        if not has_finalizer(pvc, PVC_PROTECTION_FINALIZER):
            return Result()
        users = [p.name for p in await self.reader.list(Pod, pvc.metadata.namespace) if pod_uses(p, pvc.name)]
        if users:  # a pod's end wakes this claim again
            log.debug("claim %s/%s is deleting but used by %s", pvc.metadata.namespace, pvc.name, users)
            return Result()
        remove_finalizer(new, PVC_PROTECTION_FINALIZER)
        await self.writer.update(new)
        return Result()


class VolumeProtectionReconciler:
    def __init__(self, reader: Reader, writer: Writer) -> None:
        self.reader = reader
        self.writer = writer

    async def reconcile(self, request: Request) -> Result:
        try:
            pv = await self.reader.get(PersistentVolume, request.name)
        except NotFound:
            return Result()
        new = pv.model_copy(deep=True)
        if pv.metadata.deletion_timestamp is None:
            if add_finalizer(new, PV_PROTECTION_FINALIZER):
                await self.writer.update(new)
            return Result()
        bound = pv.status is not None and pv.status.phase == "Bound"
        if bound or not has_finalizer(pv, PV_PROTECTION_FINALIZER):
            return Result()  # a phase change wakes this volume again
        remove_finalizer(new, PV_PROTECTION_FINALIZER)
        await self.writer.update(new)
        return Result()
