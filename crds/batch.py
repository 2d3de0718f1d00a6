"""batch/v1 Job and CronJob, with Kubernetes' fields, defaults and checks.

The controllers that act on them live in ``kray.actors.controllers.job`` and
``kray.actors.controllers.cronjob``; these are pure models (schedules parse with ``crds.cron``).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from . import cron
from .core.common import ObjectReference
from .core.pod import PodTemplateSpec
from .meta import Condition, KrayModel, ObjectMeta, PrinterColumn, Resource
from .registry import kind
from .selectors import LabelSelector
from .validation import FieldValueError, invalid

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
# The annotation the CronJob controller puts on the Jobs it creates (RFC 3339, the CronJob's zone).
CRONJOB_SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
# A CronJob's name leaves room for "-<minutes since the epoch>" in its Jobs' names (63 - 11).
CRONJOB_NAME_MAX = 52


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


# ---- CronJob ----


class JobTemplateSpec(KrayModel):
    metadata: ObjectMeta | None = None
    spec: JobSpec


class CronJobSpec(KrayModel):
    schedule: str
    time_zone: str | None = None
    starting_deadline_seconds: int | None = Field(default=None, ge=0)
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = "Allow"
    suspend: bool = False
    job_template: JobTemplateSpec
    successful_jobs_history_limit: int = Field(default=3, ge=0)
    failed_jobs_history_limit: int = Field(default=1, ge=0)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        try:
            cron.parse(value)
        except cron.CronError as exc:
            raise FieldValueError.one(invalid(value, str(exc))) from None
        return value

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value == "":
            raise FieldValueError.one(invalid(value, "timeZone must be nil or non-empty string"))
        if value.lower() == "local":
            detail = "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
            raise FieldValueError.one(invalid(value, detail))
        try:
            cron.load_zone(value)
        except cron.CronError as exc:
            raise FieldValueError.one(invalid(value, str(exc))) from None
        return value

    @model_validator(mode="after")
    def _zone_once(self) -> CronJobSpec:
        if self.time_zone is not None and "TZ" in self.schedule:
            detail = "cannot use both timeZone field and TZ or CRON_TZ in schedule"
            raise FieldValueError.one(invalid(self.schedule, detail), path="schedule")
        return self

    def parsed_schedule(self) -> cron.Schedule:
        """The schedule in its zone (``timeZone``, else a ``TZ=`` prefix, else UTC)."""
        return cron.parse(self.schedule, self.time_zone)


class CronJobStatus(KrayModel):
    active: list[ObjectReference] | None = None
    last_schedule_time: datetime | None = None
    last_successful_time: datetime | None = None


@kind
class CronJob(Resource):
    GROUP: ClassVar[str] = "batch"
    VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "CronJob"
    PLURAL: ClassVar[str] = "cronjobs"
    SINGULAR: ClassVar[str] = "cronjob"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("cj",)
    HAS_STATUS_SUBRESOURCE: ClassVar[bool] = True
    # kubectl's columns. ACTIVE is a count in kubectl; a printer-column JSONPath cannot count,
    # so it lists the active Jobs' names.
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(name="Schedule", type="string", json_path=".spec.schedule"),
        PrinterColumn(name="Timezone", type="string", json_path=".spec.timeZone"),
        PrinterColumn(name="Suspend", type="boolean", json_path=".spec.suspend"),
        PrinterColumn(name="Active", type="string", json_path=".status.active[*].name"),
        PrinterColumn(name="Last Schedule", type="date", json_path=".status.lastScheduleTime"),
        PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
    )

    spec: CronJobSpec
    status: CronJobStatus | None = None

    @model_validator(mode="after")
    def _name_length(self) -> CronJob:
        name = self.metadata.name or ""
        if len(name) > CRONJOB_NAME_MAX:
            detail = f"must be no more than {CRONJOB_NAME_MAX} characters"
            raise FieldValueError.one(invalid(name, detail), path="metadata.name")
        return self
