"""apps/v1 StatefulSet: pods with stable names (``<set>-<ordinal>``), stable storage (one claim
per ordinal per ``volumeClaimTemplates`` entry) and ordered rollout, with Kubernetes' fields and
defaults. The controller lives in ``kray.actors.controllers.statefulset``; this is the model.

kray keeps no ControllerRevision objects: the revision (``<set>-<template hash>``) is recorded
in ``status.currentRevision``/``updateRevision`` and on each pod's ``controller-revision-hash``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from .apps import IntOrString, _check_int_or_percent
from .core.pod import PodTemplateSpec
from .core.storage import PersistentVolumeClaim
from .meta import Condition, KrayModel, PrinterColumn, Resource
from .registry import kind
from .selectors import LabelSelector
from .validation import FieldValueError, invalid

# Labels the controller puts on its pods (Kubernetes' names).
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"

_BAD = "FieldValueInvalid"

RetentionPolicyType = Literal["Retain", "Delete"]


class RollingUpdateStatefulSetStrategy(KrayModel):
    partition: int = Field(default=0, ge=0)
    max_unavailable: IntOrString | None = None  # Kubernetes' default: 1 (one pod at a time)

    @model_validator(mode="after")
    def _check(self) -> RollingUpdateStatefulSetStrategy:
        value = _check_int_or_percent(self.max_unavailable)
        if value == 0 or value == "0%":
            raise FieldValueError.one(invalid(value, "must be greater than 0"), _BAD, "maxUnavailable")
        return self


class StatefulSetUpdateStrategy(KrayModel):
    type: Literal["RollingUpdate", "OnDelete"] = "RollingUpdate"
    rolling_update: RollingUpdateStatefulSetStrategy | None = None

    @model_validator(mode="after")
    def _defaults(self) -> StatefulSetUpdateStrategy:
        if self.type == "RollingUpdate" and self.rolling_update is None:
            self.rolling_update = RollingUpdateStatefulSetStrategy()
        if self.type == "OnDelete" and self.rolling_update is not None:
            raise FieldValueError.one(
                "Forbidden: only allowed for updateStrategy 'RollingUpdate'", "FieldValueForbidden", "rollingUpdate"
            )
        return self


class StatefulSetPersistentVolumeClaimRetentionPolicy(KrayModel):
    when_deleted: RetentionPolicyType = "Retain"
    when_scaled: RetentionPolicyType = "Retain"


class StatefulSetOrdinals(KrayModel):
    start: int = Field(default=0, ge=0)


CLAIM_STAND_IN = "x-kray-claim-template"  # marks the stand-in volumes `_claim_volumes` adds


def _stand_in(volume: Any) -> bool:
    source = volume.persistent_volume_claim
    return source is not None and bool((source.model_extra or {}).get(CLAIM_STAND_IN))


class StatefulSetSpec(KrayModel):
    replicas: int = Field(default=1, ge=0)
    selector: LabelSelector
    template: PodTemplateSpec
    service_name: str | None = None
    volume_claim_templates: list[PersistentVolumeClaim] | None = None
    pod_management_policy: Literal["OrderedReady", "Parallel"] = "OrderedReady"
    update_strategy: StatefulSetUpdateStrategy = Field(default_factory=StatefulSetUpdateStrategy)
    revision_history_limit: int = Field(default=10, ge=0)
    min_ready_seconds: int = Field(default=0, ge=0)
    persistent_volume_claim_retention_policy: StatefulSetPersistentVolumeClaimRetentionPolicy = Field(
        default_factory=StatefulSetPersistentVolumeClaimRetentionPolicy
    )
    ordinals: StatefulSetOrdinals | None = None

    @model_validator(mode="before")
    @classmethod
    def _claim_volumes(cls, data: Any) -> Any:
        """The template's containers may mount a volumeClaimTemplate by name (the controller
        adds the volume to each pod), so the pod template is validated with a stand-in volume
        for each claim template; `_check` takes the stand-ins out again."""
        if not isinstance(data, dict):
            return data
        claims = data.get("volumeClaimTemplates", data.get("volume_claim_templates")) or []
        template = data.get("template")
        if not claims or not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
            return data
        spec = dict(template["spec"])
        volumes = list(spec.get("volumes") or [])
        have = {v.get("name") for v in volumes if isinstance(v, dict)}
        for claim in claims:
            name = ((claim.get("metadata") or {}).get("name") if isinstance(claim, dict) else None) or ""
            if name and name not in have:
                volumes.append({"name": name, "persistentVolumeClaim": {"claimName": name, CLAIM_STAND_IN: True}})
        spec["volumes"] = volumes
        return {**data, "template": {**template, "spec": spec}}

    @model_validator(mode="after")
    def _check(self) -> StatefulSetSpec:
        volumes = self.template.spec.volumes
        if volumes is not None:
            kept = [v for v in volumes if not _stand_in(v)]
            self.template.spec.volumes = kept or None
        errors: list[tuple[str, str, str]] = []
        if not self.selector.match_labels and not self.selector.match_expressions:
            errors.append(("selector", "Invalid value: empty selector is invalid for statefulset", _BAD))
        else:
            labels = (self.template.metadata.labels if self.template.metadata else None) or {}
            if not self.selector.matches(labels):
                errors.append(
                    ("template.metadata.labels", invalid(labels, "`selector` does not match template `labels`"), _BAD)
                )
        if self.template.spec.restart_policy != "Always":
            errors.append(
                (
                    "template.spec.restartPolicy",
                    f'Unsupported value: "{self.template.spec.restart_policy}": supported values: "Always"',
                    "FieldValueNotSupported",
                )
            )
        seen: set[str] = set()
        for i, claim in enumerate(self.volume_claim_templates or ()):
            name = claim.metadata.name
            if not name:
                errors.append((f"volumeClaimTemplates[{i}].metadata.name", "Required value", "FieldValueRequired"))
            elif name in seen:
                errors.append(
                    (f"volumeClaimTemplates[{i}].metadata.name", f'Duplicate value: "{name}"', "FieldValueDuplicate")
                )
            seen.add(name or "")
        if errors:
            raise FieldValueError(errors)
        return self

    @property
    def start_ordinal(self) -> int:
        return self.ordinals.start if self.ordinals else 0

    @property
    def partition(self) -> int:
        ru = self.update_strategy.rolling_update
        return ru.partition if self.update_strategy.type == "RollingUpdate" and ru else 0


class StatefulSetStatus(KrayModel):
    observed_generation: int | None = None
    replicas: int = 0
    ready_replicas: int | None = None
    current_replicas: int | None = None
    updated_replicas: int | None = None
    available_replicas: int | None = None
    current_revision: str | None = None
    update_revision: str | None = None
    collision_count: int | None = None
    conditions: list[Condition] | None = None


@kind
class StatefulSet(Resource):
    GROUP: ClassVar[str] = "apps"
    VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "StatefulSet"
    PLURAL: ClassVar[str] = "statefulsets"
    SINGULAR: ClassVar[str] = "statefulset"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("sts",)
    HAS_STATUS_SUBRESOURCE: ClassVar[bool] = True
    # kubectl prints READY as ready/replicas; a Table column is one JSONPath, so the server's
    # Table shows the two numbers side by side (kray's CLI printer joins them).
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(name="Ready", type="integer", json_path=".status.readyReplicas"),
        PrinterColumn(name="Replicas", type="integer", json_path=".spec.replicas"),
        PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
    )

    spec: StatefulSetSpec
    status: StatefulSetStatus | None = None


__all__ = [
    "POD_INDEX_LABEL",
    "POD_NAME_LABEL",
    "REVISION_LABEL",
    "RollingUpdateStatefulSetStrategy",
    "StatefulSet",
    "StatefulSetOrdinals",
    "StatefulSetPersistentVolumeClaimRetentionPolicy",
    "StatefulSetSpec",
    "StatefulSetStatus",
    "StatefulSetUpdateStrategy",
]
