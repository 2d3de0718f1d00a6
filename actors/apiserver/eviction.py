"""The eviction subresource: ``POST /api/v1/namespaces/{ns}/pods/{name}/eviction``.

A policy/v1 ``Eviction`` asks for a pod's deletion *if its PodDisruptionBudget allows it*; this
is what ``kray drain`` (and ``kubectl drain``) call. The rules are kube-apiserver's
(pkg/registry/core/pod/storage/eviction.go), decided by the pure function ``decide``:

- a pod that is Pending, has ended, or is already being deleted disrupts nothing: deleted;
- no PDB selects it: deleted; more than one: 500, which Kubernetes does not support either;
- it is not ready (unhealthy): deleted, guarded by its resourceVersion (it must not have turned
  ready meanwhile), when the PDB's unhealthyPodEvictionPolicy is AlwaysAllow, or (the default,
  IfHealthyBudget) when the budget is met anyway (currentHealthy >= desiredHealthy > 0);
- otherwise the PDB must have a current status (observedGeneration) and disruptionsAllowed > 0,
  else 429 TooManyRequests with Kubernetes' message and a DisruptionBudget cause.

Consuming a disruption writes the PDB (disruptionsAllowed - 1, the pod in status.disruptedPods)
and the pod's deletion (removed, or marked with a deletionTimestamp when a kubelet must stop it
first) in ONE etcd transaction, guarded by both objects' mod revisions. kube-apiserver instead
updates the PDB with its resourceVersion and then deletes the pod, so a deletion that fails after
the PDB write leaves a budget slot used up until the disruption controller times the entry out
(2 minutes); here either both writes happen or neither, and a lost race on either object simply
re-reads and decides again (as kube retries on conflict).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from kray.actors.store.kv import Compare, RevisionConflictError
from kray.crds.core import Pod
from kray.crds.meta import Status, StatusCause, StatusDetails
from kray.crds.policy import (
    ALWAYS_ALLOW,
    PodDisruptionBudget,
    PodDisruptionBudgetStatus,
    set_disruption_condition,
)
from kray.crds.registry import REGISTRY, KindInfo
from kray.crds.validation import invalid, not_supported

from . import dryrun, errors
from .admission import AdmissionRequest
from .handlers import Handlers

# kube-apiserver's MaxDisruptedPodSize: evictions the controller has not confirmed yet.
MAX_DISRUPTED_PODS = 2000
_RETRIES = 8
MORE_THAN_ONE = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
VIOLATES_BUDGET = "Cannot evict pod as it would violate the pod's disruption budget."
STALE_STATUS = "Cannot evict pod as it was unable to read PDB status."
_PROPAGATION = ("Orphan", "Background", "Foreground")


# ---- the request body ----


def parse_eviction(namespace: str, name: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(DeleteOptions as the delete handler takes them, dry run?) from an Eviction body; a bad
    body is a 400 whose message names the field."""
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if api_version not in (None, "", "policy/v1", "policy/v1beta1"):
        raise errors.bad_request(f"apiVersion: {not_supported(api_version, ['policy/v1', 'policy/v1beta1'])}")
    if kind not in (None, "", "Eviction"):
        raise errors.bad_request(f"kind: {not_supported(kind, ['Eviction'])}")
    meta = body.get("metadata") or {}
    if meta.get("name") not in (None, "", name):
        raise errors.bad_request("name in URL does not match name in Eviction object")
    if meta.get("namespace") not in (None, "", namespace):
        raise errors.bad_request("namespace in URL does not match namespace in Eviction object")
    raw = body.get("deleteOptions")
    if raw is None:
        return {}, False
    if not isinstance(raw, dict):
        raise errors.bad_request(f"deleteOptions: {invalid(raw, 'must be an object')}")
    options: dict[str, Any] = {}
    grace = raw.get("gracePeriodSeconds")
    if grace is not None:
        if not isinstance(grace, int) or isinstance(grace, bool):
            raise errors.bad_request(f"deleteOptions.gracePeriodSeconds: {invalid(grace, 'must be an integer')}")
        options["gracePeriodSeconds"] = grace
    policy = raw.get("propagationPolicy")
    if policy is not None:
        if policy not in _PROPAGATION:
            raise errors.bad_request(f"deleteOptions.propagationPolicy: {not_supported(policy, _PROPAGATION)}")
        options["propagationPolicy"] = policy
    pre = raw.get("preconditions")
    if pre is not None:
        if not isinstance(pre, dict) or not all(isinstance(v, str) or v is None for v in pre.values()):
            raise errors.bad_request(
                f"deleteOptions.preconditions: {invalid(pre, 'must map uid/resourceVersion to strings')}"
            )
        options["preconditions"] = {k: v for k, v in pre.items() if v}
    return options, dryrun.from_options(raw, "deleteOptions.dryRun")


# ---- the decision (pure) ----


@dataclass(frozen=True)
class Verdict:
    """``delete``: delete the pod (``guard_pod``: only if it is unchanged since it was judged);
    ``decrement``: consume one of ``pdb``'s disruptions together with the deletion."""

    action: Literal["delete", "decrement"]
    pdb: PodDisruptionBudget | None = None
    guard_pod: bool = False


def pod_ready(pod: Pod) -> bool:
    cond = pod.status.condition("Ready") if pod.status else None
    return cond is not None and cond.status == "True"


def can_ignore_pdb(pod: Pod) -> bool:
    """kube's canIgnorePDB: such a pod counts as disrupted already (or never ran)."""
    phase = (pod.status.phase if pod.status else None) or "Pending"
    return phase in ("Succeeded", "Failed", "Pending") or pod.metadata.deletion_timestamp is not None


def matching_pdbs(pod: Pod, pdbs: list[PodDisruptionBudget]) -> list[PodDisruptionBudget]:
    ns = pod.metadata.namespace
    return [p for p in pdbs if p.metadata.namespace == ns and p.spec.selects(pod.metadata.labels)]


def too_many_requests(message: str, causes: list[StatusCause] | None = None, retry_after: int = 0) -> errors.ApiError:
    details = StatusDetails(causes=causes, retry_after_seconds=retry_after or None)
    return errors.ApiError(429, "TooManyRequests", message, details)


def budget_violation(pdb: PodDisruptionBudget) -> errors.ApiError:
    status = pdb.status or PodDisruptionBudgetStatus()
    why = (
        f"The disruption budget {pdb.name} needs {status.desired_healthy} healthy pods "
        f"and has {status.current_healthy} currently"
    )
    return too_many_requests(VIOLATES_BUDGET, [StatusCause(reason="DisruptionBudget", message=why)])


def decide(pod: Pod, pdbs: list[PodDisruptionBudget]) -> Verdict:
    """What evicting ``pod`` does, given the PDBs that select it; refusals raise ``ApiError``."""
    if can_ignore_pdb(pod) or not pdbs:
        return Verdict("delete")
    if len(pdbs) > 1:
        raise errors.internal(MORE_THAN_ONE)
    pdb = pdbs[0]
    status = pdb.status or PodDisruptionBudgetStatus()
    if not pod_ready(pod):
        # An unready pod is not counted healthy, so deleting it cannot make the budget worse.
        if pdb.spec.unhealthy_pod_eviction_policy == ALWAYS_ALLOW:
            return Verdict("delete", pdb, guard_pod=True)
        if status.current_healthy >= status.desired_healthy > 0:
            return Verdict("delete", pdb, guard_pod=True)
    if pdb.status is None or (status.observed_generation or 0) < (pdb.metadata.generation or 0):
        # The controller has not counted this spec yet: its numbers may be for another budget.
        raise too_many_requests(STALE_STATUS, retry_after=10)
    if status.disruptions_allowed < 0:
        raise errors.forbidden(_pdb_info(pdb), pdb.name, "pdb disruptions allowed is negative")
    if len(status.disrupted_pods or {}) > MAX_DISRUPTED_PODS:
        why = "DisruptedPods map too big - too many evictions not confirmed by PDB controller"
        raise errors.forbidden(_pdb_info(pdb), pdb.name, why)
    if status.disruptions_allowed == 0:
        raise budget_violation(pdb)
    return Verdict("decrement", pdb)


def decremented(status: PodDisruptionBudgetStatus, pod_name: str, now: datetime) -> PodDisruptionBudgetStatus:
    """The PDB status after one eviction: one disruption fewer, the pod noted as disrupted (so
    the controller does not count it healthy while its deletion is under way)."""
    new = status.model_copy(deep=True)
    new.disruptions_allowed -= 1
    new.disrupted_pods = {**(new.disrupted_pods or {}), pod_name: now}
    if new.disruptions_allowed == 0:
        set_disruption_condition(new, now)
    return new


def _pdb_info(pdb: PodDisruptionBudget) -> KindInfo:
    return REGISTRY.for_model(type(pdb))


# ---- the endpoint ----


class Evictions:
    """Evictions over the handlers' store; stateless, so the API server may build one per call."""

    def __init__(self, handlers: Handlers) -> None:
        self.handlers = handlers
        self.store = handlers.store
        registry = self.store.registry
        self.pod_info = registry.get("v1", "Pod")
        self.pdb_info = registry.get("policy/v1", "PodDisruptionBudget")

    async def evict(self, namespace: str, name: str, body: dict[str, Any], dry_run: bool = False) -> Status:
        """``dry_run``: the request's ``?dryRun=All`` (kube's propagateDryRun: it counts as the
        body's deleteOptions.dryRun); either makes the whole eviction a dry run."""
        options, body_dry_run = parse_eviction(namespace, name, body)
        dry_run = dry_run or body_dry_run
        pre = options.get("preconditions") or {}
        kv, key = self.store.kv, self.store.key(self.pod_info, namespace, name)
        for _ in range(_RETRIES):
            pod_kv = await kv.get(key)
            if pod_kv is None:
                raise errors.not_found(self.pod_info, name)
            pod = self.store.decode(self.pod_info, pod_kv.value, pod_kv.mod_revision)
            assert isinstance(pod, Pod)
            self._check_preconditions(pod, pre)
            pdbs: list[tuple[PodDisruptionBudget, int]] = []
            if not can_ignore_pdb(pod):
                listed, _ = await kv.range(self.store.prefix(self.pdb_info, namespace))
                for item in listed:
                    pdb = self.store.decode(self.pdb_info, item.value, item.mod_revision)
                    assert isinstance(pdb, PodDisruptionBudget)
                    pdbs.append((pdb, item.mod_revision))
            matching = matching_pdbs(pod, [p for p, _ in pdbs])
            verdict = decide(pod, matching)
            if dry_run:
                return _success()
            if verdict.action == "delete":
                guarded = options
                if verdict.guard_pod and not pre.get("resourceVersion"):
                    guarded = {**options, "preconditions": {**pre, "resourceVersion": str(pod_kv.mod_revision)}}
                try:
                    await self.handlers.delete(self.pod_info, namespace, name, guarded)
                except errors.ApiError as exc:
                    if exc.reason == "Conflict" and guarded is not options:
                        continue  # the pod changed since it was judged: judge it again
                    raise
                return _success()
            assert verdict.pdb is not None
            pdb_revision = next(rev for p, rev in pdbs if p is verdict.pdb)
            try:
                await self._decrement_and_delete(pod, pod_kv.mod_revision, verdict.pdb, pdb_revision, options)
            except RevisionConflictError:
                continue  # the pod or the PDB changed: re-read both and decide again
            return _success()
        raise too_many_requests("Cannot evict pod: too many concurrent changes to it or its budget; try again", None, 1)

    def _check_preconditions(self, pod: Pod, pre: dict[str, str]) -> None:
        meta = pod.metadata
        if pre.get("uid") and pre["uid"] != meta.uid:
            why = f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta.uid}"
            raise errors.conflict(self.pod_info, pod.name, why)
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta.resource_version:
            why = (
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {meta.resource_version}"
            )
            raise errors.conflict(self.pod_info, pod.name, why)

    async def _decrement_and_delete(
        self, pod: Pod, pod_revision: int, pdb: PodDisruptionBudget, pdb_revision: int, options: dict[str, Any]
    ) -> None:
        """One transaction: the PDB's decremented status and the pod's deletion, both guarded."""
        h, info, ns = self.handlers, self.pod_info, pod.metadata.namespace
        # The same steps as Handlers.delete for a pod, minus its own write: admission, the
        # propagation finalizers, the grace period a kubelet gets (0: removed at once).
        await h._admit(AdmissionRequest("DELETE", info, ns, pod.name, None, pod, options=options))
        data = pod.to_dict()
        finalizers = list(pod.metadata.finalizers or [])
        extra = {"Foreground": "foregroundDeletion", "Orphan": "orphan"}.get(str(options.get("propagationPolicy")))
        if extra and extra not in finalizers:
            finalizers.append(extra)
        grace = h._grace_seconds(info, data, options.get("gracePeriodSeconds"))
        data.setdefault("metadata", {})["finalizers"] = finalizers or None
        pod_key = self.store.key(info, ns, pod.name)
        pdb_key = self.store.key(self.pdb_info, pdb.metadata.namespace, pdb.name)
        updated = pdb.model_copy(deep=True)
        updated.status = decremented(pdb.status or PodDisruptionBudgetStatus(), pod.name, h.clock())
        puts = [(pdb_key, self.store.encode(updated))]
        deletes: list[str] = []
        if not finalizers and grace == 0:
            deletes.append(pod_key)
        else:
            marked = h._mark_deleting(info, data, pod, grace)
            if marked is None:  # cannot happen: a pod being deleted never gets here (can_ignore_pdb)
                raise RevisionConflictError("the pod is already being deleted")
            puts.append((pod_key, self.store.encode(marked)))
        await self.store.kv.txn([Compare(pod_key, pod_revision), Compare(pdb_key, pdb_revision)], puts, deletes)


def _success() -> Status:
    return Status(status="Success", code=201)
