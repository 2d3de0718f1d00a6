"""VolumeBinding: place pods where their PersistentVolumeClaims can be (or already are) satisfied.

kube-scheduler's volumebinding plugin for kray's node-local volumes:

- PreFilter: a pod without persistentVolumeClaim volumes is skipped. A claim that is missing or
  being deleted, or unbound with an Immediate class (or none: the PV controller binds those on
  its own), makes the pod unschedulable until the claim changes. Unbound claims of
  WaitForFirstConsumer classes are decided per node.
- Filter: every bound claim's PV must admit the node (``spec.nodeAffinity.required``); every
  unbound WaitForFirstConsumer claim needs a fitting Available PV on the node (the smallest, one
  per claim, none twice in a pod) or a class whose provisioner (``kray.io/local-path``) can
  create one on any node.
- Reserve/Unreserve: the choice goes into the cycle state, and chosen static PVs into the
  cache's assume overlay (claimRef set) so the next pod does not count on them too.
- PreBind: pre-bind each chosen static PV (its claimRef), annotate each unbound claim with
  ``volume.kubernetes.io/selected-node``, then wait (bounded) for the PV controller to bind
  every such claim. A timeout is an Error, a claim lost on the way Unschedulable: either way the
  binding cycle unreserves and the pod is retried.

Filter rejections are UnschedulableAndUnresolvable, as in kube-scheduler: evicting pods cannot
move a volume, so preemption must not try.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from kray.crds.core.common import ObjectReference
from kray.crds.core.storage import (
    ANN_SELECTED_NODE,
    LOCAL_PATH_PROVISIONER,
    PersistentVolume,
    PersistentVolumeClaim,
    fits,
)

from ..cycle_state import CycleState
from ..framework import Handle
from ..node_info import NodeInfo
from ..pod_info import PodInfo
from ..queue import NODE_ADD, NODE_UPDATE, PV_ADD, PV_UPDATE, PVC_ADD, PVC_UPDATE, STORAGE_CLASS_ADD, ClusterEvent
from ..status import SKIP, SUCCESS, Status
from ..volumes import VolumeCache, VolumeClient, claim_key, is_deleting, pv_fits_node

NAME = "VolumeBinding"
ERR_NODE_CONFLICT = "node(s) had volume node affinity conflict"
ERR_BIND_CONFLICT = "node(s) didn't find available persistent volumes to bind"
ERR_PV_NOT_EXIST = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
ERR_UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
DEFAULT_BIND_TIMEOUT = 30.0
DEFAULT_POLL_INTERVAL = 0.1
WRITE_ATTEMPTS = 5


@dataclass
class _Unbound:
    """An unbound WaitForFirstConsumer claim of the pod."""

    key: str
    pvc: PersistentVolumeClaim
    provisionable: bool  # its class can create a PV on any node


@dataclass
class PodVolumes:
    """VolumeBinding's cycle state for one pod."""

    bound: list[tuple[str, str]]  # (claim, PV name) for claims already bound
    unbound: list[_Unbound]  # smallest request first, as kube matches them
    # node -> claim -> the static PV chosen for it there (None: provision one).
    by_node: dict[str, dict[str, str | None]] = field(default_factory=dict)
    reserved: dict[str, str | None] | None = None


def claim_names(pod: PodInfo) -> list[str]:
    names: list[str] = []
    for v in pod.pod.spec.volumes or []:
        if v.persistent_volume_claim is not None and v.persistent_volume_claim.claim_name not in names:
            names.append(v.persistent_volume_claim.claim_name)
    return names


def _claim_ref(pvc: PersistentVolumeClaim) -> ObjectReference:
    return ObjectReference(
        kind="PersistentVolumeClaim",
        api_version="v1",
        namespace=pvc.metadata.namespace or "default",
        name=pvc.metadata.name,
        uid=pvc.metadata.uid,
    )


def _with_claim_ref(pv: PersistentVolume, pvc: PersistentVolumeClaim) -> PersistentVolume:
    return pv.model_copy(update={"spec": pv.spec.model_copy(update={"claim_ref": _claim_ref(pvc)})})


def _refers_to(ref: ObjectReference | None, key: str) -> bool:
    return ref is not None and claim_key(ref.namespace, ref.name) == key


def _bound(pvc: PersistentVolumeClaim) -> bool:
    return bool(pvc.spec.volume_name) and pvc.status is not None and pvc.status.phase == "Bound"


class VolumeBinding:
    name = NAME

    def __init__(self, args: dict[str, Any] | None = None, handle: Handle | None = None) -> None:
        if handle is None:
            raise ValueError("VolumeBinding needs a handle (the scheduler's volume cache)")
        args = args or {}
        self.handle = handle
        self.bind_timeout = float(args.get("bindTimeoutSeconds", DEFAULT_BIND_TIMEOUT))
        self.poll_interval = float(args.get("pollIntervalSeconds", DEFAULT_POLL_INTERVAL))
        if self.bind_timeout <= 0 or self.poll_interval <= 0:
            raise ValueError("bindTimeoutSeconds and pollIntervalSeconds must be greater than zero")

    @property
    def volumes(self) -> VolumeCache:
        return self.handle.cache.volumes

    # --- scheduling cycle ---------------------------------------------------------------------
    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        names = claim_names(pod)
        if not names:
            return SKIP
        vc = self.volumes
        bound: list[tuple[str, str]] = []
        unbound: list[_Unbound] = []
        immediate = False
        for name in names:
            key = claim_key(pod.namespace, name)
            pvc = vc.pvcs.get(key)
            if pvc is None:
                return Status.unresolvable(f'persistentvolumeclaim "{name}" not found')
            if is_deleting(pvc):
                return Status.unresolvable(f'persistentvolumeclaim "{name}" is being deleted')
            if pvc.spec.volume_name:
                bound.append((key, pvc.spec.volume_name))
                continue
            class_name = pvc.spec.storage_class_name
            sc = vc.classes.get(class_name) if class_name else None
            if class_name and sc is None:
                return Status.unresolvable(f'storageclass.storage.k8s.io "{class_name}" not found')
            if sc is None or sc.volume_binding_mode != "WaitForFirstConsumer":
                immediate = True
                continue
            unbound.append(_Unbound(key, pvc, sc.provisioner == LOCAL_PATH_PROVISIONER))
        if immediate:
            return Status.unresolvable(ERR_UNBOUND_IMMEDIATE)
        unbound.sort(key=lambda u: u.pvc.spec.storage().amount)
        state.write(NAME, PodVolumes(bound, unbound))
        return SUCCESS

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        pv_state: PodVolumes = state.read(NAME)
        vc = self.volumes
        for _key, pv_name in pv_state.bound:
            pv = vc.pv(pv_name)
            if pv is None:
                return Status.unresolvable(ERR_PV_NOT_EXIST)
            if not pv_fits_node(pv, node.name, node.labels):
                return Status.unresolvable(ERR_NODE_CONFLICT)
        chosen: dict[str, str | None] = {}
        if pv_state.unbound:
            here = [pv for pv in vc.list_pvs() if not is_deleting(pv) and pv_fits_node(pv, node.name, node.labels)]
            used: set[str] = set()
            for claim in pv_state.unbound:
                pv = _best_match(here, claim, used)
                if pv is not None:
                    used.add(pv.metadata.name or "")
                    chosen[claim.key] = pv.metadata.name
                elif claim.provisionable:
                    chosen[claim.key] = None
                else:
                    return Status.unresolvable(ERR_BIND_CONFLICT)
        pv_state.by_node[node.name] = chosen
        return SUCCESS

    def reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        pv_state: PodVolumes | None = state.get(NAME)
        if pv_state is None:
            return SUCCESS
        chosen = pv_state.by_node.get(node_name)
        if chosen is None:
            return Status.error(f"no volume decisions for node {node_name!r}")
        vc = self.volumes
        claims = {u.key: u.pvc for u in pv_state.unbound}
        for key, pv_name in chosen.items():
            pv = vc.pvs.get(pv_name) if pv_name else None
            if pv_name and pv is None:
                return Status.unschedulable(ERR_BIND_CONFLICT)
            if pv is not None:
                vc.assume_pv(pv, _with_claim_ref(pv, claims[key]))
        pv_state.reserved = dict(chosen)
        return SUCCESS

    def unreserve(self, state: CycleState, pod: PodInfo, node_name: str) -> None:
        pv_state: PodVolumes | None = state.get(NAME)
        if pv_state is None or pv_state.reserved is None:
            return
        for key, pv_name in pv_state.reserved.items():
            if pv_name:
                self.volumes.restore_pv(pv_name, key)
        pv_state.reserved = None

    # --- binding cycle ------------------------------------------------------------------------
    async def pre_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        pv_state: PodVolumes | None = state.get(NAME)
        if pv_state is None or not pv_state.unbound:
            return SUCCESS
        client = self.handle.volume_client
        if client is None:
            return Status.error("VolumeBinding: no API client to bind PersistentVolumeClaims with")
        chosen = pv_state.reserved or pv_state.by_node.get(node_name) or {}
        from kray.client.errors import KrayClientError

        try:
            for claim in pv_state.unbound:
                pv_name = chosen.get(claim.key)
                status = await self._pre_bind_pv(client, pv_name, claim) if pv_name else SUCCESS
                if status.ok:
                    status = await self._select_node(client, claim, node_name)
                if not status.ok:
                    return status
        except KrayClientError as exc:
            return Status.error(f"binding volumes: {exc}")
        return await self._wait_bound(pv_state, chosen, node_name)

    async def _pre_bind_pv(self, client: VolumeClient, name: str, claim: _Unbound) -> Status:
        """Write the chosen PV's claimRef (the PV controller completes the binding)."""
        from kray.client.errors import Conflict, NotFound

        pv = self.volumes.pvs.get(name)
        for _ in range(WRITE_ATTEMPTS):
            if pv is None:
                return Status.unschedulable(f'persistentvolume "{name}" was deleted')
            ref = pv.spec.claim_ref
            if ref is not None:
                if _refers_to(ref, claim.key) and (not ref.uid or ref.uid == claim.pvc.metadata.uid):
                    return SUCCESS
                return Status.unschedulable(f'persistentvolume "{name}" was claimed by {ref.namespace}/{ref.name}')
            try:
                await client.update(_with_claim_ref(pv, claim.pvc))
                return SUCCESS
            except Conflict:
                pass
            except NotFound:
                pv = None
                continue
            try:
                pv = await client.get(PersistentVolume, name)
            except NotFound:
                pv = None
        return Status.error(f'binding volumes: persistentvolume "{name}": conflict after {WRITE_ATTEMPTS} attempts')

    async def _select_node(self, client: VolumeClient, claim: _Unbound, node_name: str) -> Status:
        """Annotate the claim with the chosen node (what the PV controller provisions or binds for)."""
        from kray.client.errors import Conflict, NotFound

        pvc: PersistentVolumeClaim | None = self.volumes.pvcs.get(claim.key) or claim.pvc
        name, ns = claim.pvc.metadata.name or "", claim.pvc.metadata.namespace or "default"
        for _ in range(WRITE_ATTEMPTS):
            if pvc is None or (claim.pvc.metadata.uid and pvc.metadata.uid != claim.pvc.metadata.uid):
                return Status.unschedulable(f'persistentvolumeclaim "{name}" was deleted')
            annotations = pvc.metadata.annotations or {}
            if pvc.spec.volume_name or annotations.get(ANN_SELECTED_NODE) == node_name:
                return SUCCESS
            meta = pvc.metadata.model_copy(update={"annotations": {**annotations, ANN_SELECTED_NODE: node_name}})
            try:
                await client.update(pvc.model_copy(update={"metadata": meta}))
                return SUCCESS
            except Conflict:
                pass
            except NotFound:
                pvc = None
                continue
            try:
                pvc = await client.get(PersistentVolumeClaim, name, ns)
            except NotFound:
                pvc = None
        return Status.error(
            f'binding volumes: persistentvolumeclaim "{name}": conflict after {WRITE_ATTEMPTS} attempts'
        )

    async def _wait_bound(self, pv_state: PodVolumes, chosen: dict[str, str | None], node_name: str) -> Status:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.bind_timeout
        while True:
            status = self._check_bound(pv_state, chosen, node_name)
            if status is not None:
                return status
            if loop.time() >= deadline:
                return Status.error(
                    f"binding volumes: timed out after {self.bind_timeout:g}s waiting for "
                    "PersistentVolumeClaims to be bound"
                )
            await asyncio.sleep(self.poll_interval)

    def _check_bound(self, pv_state: PodVolumes, chosen: dict[str, str | None], node_name: str) -> Status | None:
        """SUCCESS when every claim is bound, a failed Status when one cannot be, None: not yet."""
        vc = self.volumes
        node = self.handle.cache.nodes.get(node_name)
        labels = node.labels if node is not None else {}
        done = True
        for claim in pv_state.unbound:
            name = claim.pvc.metadata.name
            pvc = vc.pvcs.get(claim.key)
            if pvc is None or is_deleting(pvc) or pvc.metadata.uid != claim.pvc.metadata.uid:
                return Status.unschedulable(f'persistentvolumeclaim "{name}" was deleted')
            if pvc.status is not None and pvc.status.phase == "Lost":
                return Status.unschedulable(f'persistentvolumeclaim "{name}" is lost')
            pv_name = chosen.get(claim.key)
            static = vc.pvs.get(pv_name) if pv_name else None
            ref = static.spec.claim_ref if static is not None else None
            if ref is not None and not _refers_to(ref, claim.key):
                return Status.unschedulable(f'persistentvolume "{pv_name}" was claimed by another claim')
            if not _bound(pvc):
                done = False
                continue
            pv = vc.pvs.get(pvc.spec.volume_name or "")
            if pv is not None and not pv_fits_node(pv, node_name, labels):
                return Status.unschedulable(
                    f'persistentvolumeclaim "{name}" was bound to persistentvolume "{pv.metadata.name}" '
                    f"that does not fit node {node_name}"
                )
        return SUCCESS if done else None

    def events_to_register(self) -> list[ClusterEvent]:
        return [PVC_ADD, PVC_UPDATE, PV_ADD, PV_UPDATE, STORAGE_CLASS_ADD, NODE_ADD, NODE_UPDATE]


def _best_match(pvs: list[PersistentVolume], claim: _Unbound, used: set[str]) -> PersistentVolume | None:
    """kube's findMatchingVolume: a PV pre-bound to the claim, else the smallest that fits."""
    best: PersistentVolume | None = None
    for pv in pvs:
        if (pv.metadata.name or "") in used or not fits(pv, claim.pvc):
            continue
        if _refers_to(pv.spec.claim_ref, claim.key):
            return pv
        if best is None or pv.storage().amount < best.storage().amount:
            best = pv
    return best
