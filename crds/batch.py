"""batch/v1 Job: run pods to completion, with Kubernetes' fields, defaults and checks.

The controller that acts on it lives in ``kray.actors.controllers.job``; this is a pure model.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from .core.pod import PodTemplateSpec
from .meta import Condition, KrayModel, Resource
from .registry import kind
from .selectors import LabelSelector
from .validation import FieldValueError

# Condition types and the reasons the Job controller writes.
COMPLETE = "Complete"
FAILED = "Failed"
SUSPENDED = "Suspended"
REASON_BACKOFF_LIMIT = "BackoffLimitExceeded"
REASON_DEADLINE = "DeadlineExceeded"
REASON_POD_FAILURE_POLICY = "PodFailurePolicy"

# Labels/annotations the controller puts on the pods it creates (Kubernetes' names).
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"


class PodFailurePolicyOnExitCodesRequirement(KrayModel):
    container_name: str | None = None
    operator: Literal["In", "NotIn"]
    values: list[int] = Field(min_length=1, max_length=255)


class PodFailurePolicyOnPodConditionsPattern(KrayModel):
    type: str
    status: Literal["True", "False", "Unknown"] = "True"


class PodFailurePolicyRule(KrayModel):
    action: Literal["FailJob", "Ignore", "Count", "FailIndex"]
    on_exit_codes: PodFailurePolicyOnExitCodesRequirement | None = None
    on_pod_conditions: list[PodFailurePolicyOnPodConditionsPattern] | None = None

    @model_validator(mode="after")
    def _one_matcher(self) -> PodFailurePolicyRule:
        if (self.on_exit_codes is None) == (not self.on_pod_conditions):
            raise FieldValueError.one(
                "Invalid value: specifying one of onExitCodes and onPodConditions is required", "FieldValueInvalid"
            )
        return self


class PodFailurePolicy(KrayModel):
    rules: list[PodFailurePolicyRule] = Field(default_factory=list, max_length=20)


class JobSpec(KrayModel):
    parallelism: int | None = Field(default=1, ge=0)
    completions: int | None = Field(default=None, ge=0)
    completion_mode: Literal["NonIndexed", "Indexed"] = "NonIndexed"
    backoff_limit: int = Field(default=6, ge=0)
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    suspend: bool = False
    pod_failure_policy: PodFailurePolicy | None = None
    selector: LabelSelector | None = None
    manual_selector: bool | None = None
    template: PodTemplateSpec

    @model_validator(mode="after")
    def _check(self) -> JobSpec:
        errors: list[tuple[str, str, str]] = []
        policy = self.template.spec.restart_policy
        if policy not in ("Never", "OnFailure"):
            errors.append(
                (
                    "template.spec.restartPolicy",
                    f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"',
                    "FieldValueNotSupported",
                )
            )
        if self.completion_mode == "Indexed" and self.completions is None:
            errors.append(("completions", "Required value: when completion mode is Indexed", "FieldValueRequired"))
        if self.pod_failure_policy is not None and policy != "Never":
            errors.append(
                (
                    "template.spec.restartPolicy",
                    'Invalid value: only "Never" is supported when podFailurePolicy is specified',
                    "FieldValueInvalid",
                )
            )
        if self.manual_selector and self.selector is None:
            errors.append(("selector", "Required value: when manualSelector is true", "FieldValueRequired"))
        if errors:
            raise FieldValueError(errors)
        return self


class UncountedTerminatedPods(KrayModel):
    succeeded: list[str] | None = None
    failed: list[str] | None = None


class JobStatus(KrayModel):
    conditions: list[Condition] | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    active: int | None = None
    succeeded: int | None = None
    failed: int | None = None
    ready: int | None = None
    terminating: int | None = None
    completed_indexes: str | None = None
    failed_indexes: str | None = None
    uncounted_terminated_pods: UncountedTerminatedPods | None = None

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions or [] if c.type == type_), None)


@kind
class Job(Resource):
    GROUP: ClassVar[str] = "batch"
    VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Job"
    PLURAL: ClassVar[str] = "jobs"
    SINGULAR: ClassVar[str] = "job"
    HAS_STATUS_SUBRESOURCE: ClassVar[bool] = True

    spec: JobSpec
    status: JobStatus | None = None

    def finished(self) -> str | None:
        """``Complete`` or ``Failed`` once the Job has ended (its conditions say so), else None."""
        for c in (self.status.conditions if self.status else None) or []:
            if c.type in (COMPLETE, FAILED) and c.status == "True":
                return c.type
        return None


def format_indexes(indexes: set[int] | list[int]) -> str:
    """Kubernetes' compressed interval form: {0,1,2,5} -> "0-2,5"."""
    out: list[str] = []
    ordered = sorted(set(indexes))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def parse_indexes(text: str | None) -> set[int]:
    result: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        result.update(range(int(lo), int(hi or lo) + 1))
    return result
