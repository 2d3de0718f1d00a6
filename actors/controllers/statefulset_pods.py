"""Pure helpers of the StatefulSet controller (kube's ``stateful_set_utils.go``): pod and claim
identity, revisions, health. No I/O.
"""

from __future__ import annotations

import re
from datetime import datetime

from kray.actors.framework.reconciler import owner_reference, set_controller_reference
from kray.crds.apps_statefulset import POD_INDEX_LABEL, POD_NAME_LABEL, REVISION_LABEL, StatefulSet
from kray.crds.core import Pod
from kray.crds.core.storage import PersistentVolumeClaim
from kray.crds.core.volume import PersistentVolumeClaimVolumeSource, Volume
from kray.crds.meta import ObjectMeta, OwnerReference

from .podutil import is_available, is_ready, template_hash

_ORDINAL = re.compile(r"^(.*)-([0-9]+)$")


def parent_and_ordinal(pod_name: str) -> tuple[str, int] | None:
    """``web-3`` -> (``web``, 3); None when the name has no ordinal."""
    m = _ORDINAL.match(pod_name)
    return (m.group(1), int(m.group(2))) if m else None


def ordinal_of(pod: Pod) -> int:
    parsed = parent_and_ordinal(pod.name)
    return parsed[1] if parsed else -1


def is_member_of(sts: StatefulSet, pod: Pod) -> bool:
    parsed = parent_and_ordinal(pod.name)
    return parsed is not None and parsed[0] == sts.name


def pod_name(sts: StatefulSet, ordinal: int) -> str:
    return f"{sts.name}-{ordinal}"


def claim_name(template: PersistentVolumeClaim, sts: StatefulSet, ordinal: int) -> str:
    return f"{template.metadata.name}-{sts.name}-{ordinal}"


def revision_of_set(sts: StatefulSet) -> str:
    """The update revision's name: ``<set>-<hash of the pod template>`` (a ControllerRevision's)."""
    collisions = (sts.status.collision_count if sts.status else None) or None
    return f"{sts.name}-{template_hash(sts.spec.template, collisions)}"


def revision_of_pod(pod: Pod) -> str | None:
    return (pod.metadata.labels or {}).get(REVISION_LABEL)


# ---- health (kube's isCreated / isRunningAndReady / isHealthy...) ----


def phase(pod: Pod) -> str | None:
    return pod.status.phase if pod.status else None


def is_terminating(pod: Pod) -> bool:
    return pod.metadata.deletion_timestamp is not None


def is_failed_or_succeeded(pod: Pod) -> bool:
    return phase(pod) in ("Failed", "Succeeded")


def is_running_and_ready(pod: Pod) -> bool:
    return phase(pod) == "Running" and is_ready(pod)


def is_running_and_available(pod: Pod, min_ready_seconds: int, now: datetime) -> bool:
    return phase(pod) == "Running" and is_available(pod, min_ready_seconds, now)


def is_healthy(pod: Pod) -> bool:
    return is_running_and_ready(pod) and not is_terminating(pod)


# ---- the objects the controller makes ----


def new_claims(sts: StatefulSet, ordinal: int) -> dict[str, PersistentVolumeClaim]:
    """Volume name -> the claim that ordinal's pod mounts under it (kube's getPersistentVolumeClaims)."""
    out: dict[str, PersistentVolumeClaim] = {}
    match_labels = dict(sts.spec.selector.match_labels or {})
    for template in sts.spec.volume_claim_templates or ():
        claim = template.model_copy(deep=True)
        claim.status = None
        claim.metadata = ObjectMeta(
            name=claim_name(template, sts, ordinal),
            namespace=sts.metadata.namespace,
            labels={**(template.metadata.labels or {}), **match_labels} or None,
            annotations=dict(template.metadata.annotations or {}) or None,
        )
        if not retain_on_delete(sts):
            claim.metadata.owner_references = [set_owner_reference(sts)]
        out[template.metadata.name or ""] = claim
    return out


def retain_on_delete(sts: StatefulSet) -> bool:
    return sts.spec.persistent_volume_claim_retention_policy.when_deleted == "Retain"


def set_owner_reference(sts: StatefulSet) -> OwnerReference:
    """The set as a (non-controller) owner of its claims: ``whenDeleted: Delete`` (kube's setOwnerRef)."""
    return owner_reference(sts, controller=False, block_owner_deletion=False)


def new_pod(sts: StatefulSet, ordinal: int, revision: str) -> Pod:
    """The pod for ``ordinal`` at the set's current template (kube's newVersionedStatefulSetPod)."""
    template = sts.spec.template
    meta = template.metadata or ObjectMeta()
    name = pod_name(sts, ordinal)
    # The claim volumes go in before the Pod is built: its containers may mount them by name.
    spec = template.spec.model_copy(deep=True)
    claims = new_claims(sts, ordinal)
    volumes = [
        Volume(name=vol, persistent_volume_claim=PersistentVolumeClaimVolumeSource(claim_name=c.name))
        for vol, c in claims.items()
    ]
    volumes += [v for v in spec.volumes or () if v.name not in claims]
    spec.volumes = volumes or None
    spec.hostname = name
    spec.subdomain = sts.spec.service_name or None
    pod = Pod(
        metadata=ObjectMeta(
            name=name,
            namespace=sts.metadata.namespace,
            labels={
                **(meta.labels or {}),
                POD_NAME_LABEL: name,
                POD_INDEX_LABEL: str(ordinal),
                REVISION_LABEL: revision,
            },
            annotations=dict(meta.annotations or {}) or None,
        ),
        spec=spec,
    )
    set_controller_reference(sts, pod)
    return pod


def identity_labels_match(sts: StatefulSet, pod: Pod) -> bool:
    labels = pod.metadata.labels or {}
    return labels.get(POD_NAME_LABEL) == pod.name and labels.get(POD_INDEX_LABEL) == str(ordinal_of(pod))
