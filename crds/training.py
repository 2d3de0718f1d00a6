"""TrainingJob (``kray.io/v1``): distributed PyTorch training as one gang of pods.

Defined exactly the way a user defines a custom resource: a ``Resource`` subclass with its API
identity in ClassVars, registered with ``@kind``. The spec follows Kubeflow's PyTorchJob
(``replicaSpecs`` with one Master and N Workers, ``runPolicy``, ``nprocPerNode``,
``elasticPolicy``) so existing manifests need little change. The operator that acts on it is
``kray.actors.controllers.trainingjob``; this module is a pure model.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from .core.container import Container
from .core.pod import PodTemplateSpec
from .meta import Condition, KrayModel, Resource
from .registry import kind
from .validation import DNS1123_LABEL_MAX, FieldValueError, invalid, not_supported

MASTER = "Master"
WORKER = "Worker"
REPLICA_TYPES = (MASTER, WORKER)
# The container that runs the training program: the one named "pytorch" (Kubeflow's rule), else
# the first. Its exit code is the replica's, and it exposes masterPort.
DEFAULT_CONTAINER = "pytorch"

# Condition types (Kubeflow's JobCondition types) and the reasons the operator writes.
CREATED = "Created"
RUNNING = "Running"
RESTARTING = "Restarting"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
SUSPENDED = "Suspended"
REASON_CREATED = "TrainingJobCreated"
REASON_RUNNING = "TrainingJobRunning"
REASON_RESTARTING = "TrainingJobRestarting"
REASON_SUCCEEDED = "TrainingJobSucceeded"
REASON_BACKOFF_LIMIT = "BackoffLimitExceeded"
REASON_DEADLINE = "DeadlineExceeded"
REASON_REPLICA_FAILED = "ReplicaFailed"  # a replica failed and its restartPolicy forbids a restart
# Running False while the gang's pods wait for room: the scheduler binds all of them or none.
REASON_GANG_UNSCHEDULABLE = "GangUnschedulable"
REASON_SUSPENDED = "TrainingJobSuspended"
REASON_RESUMED = "TrainingJobResumed"

# Labels the operator puts on every pod it creates.
JOB_NAME_LABEL = "kray.io/job-name"
REPLICA_TYPE_LABEL = "kray.io/replica-type"  # "master" | "worker"
REPLICA_INDEX_LABEL = "kray.io/replica-index"
# Which gang attempt a pod belongs to (status.restarts when it was created): pods of an older
# attempt are leftovers of a restart, never counted again.
ATTEMPT_LABEL = "kray.io/job-attempt"

ReplicaRestartPolicy = Literal["Always", "OnFailure", "Never", "ExitCode"]
CleanPodPolicy = Literal["None", "Running", "All"]


class ReplicaSpec(KrayModel):
    replicas: int = Field(default=1, ge=0)
    # What a failure of this replica does. Restarts are always gang-wide (the pods themselves run
    # with restartPolicy Never): a lone restarted rank could never rejoin the old process group.
    # OnFailure/Always: restart the gang; Never: fail the job; ExitCode: restart only on a
    # retryable exit code (128+, i.e. killed by a signal), Kubeflow's rule.
    restart_policy: ReplicaRestartPolicy = "OnFailure"
    template: PodTemplateSpec


class RunPolicy(KrayModel):
    backoff_limit: int = Field(default=3, ge=0)  # gang restarts allowed before the job fails
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    clean_pod_policy: CleanPodPolicy = "Running"  # which pods go when the job finishes
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    suspend: bool = False


class ElasticPolicy(KrayModel):
    min_replicas: int | None = Field(default=None, ge=1)
    max_replicas: int | None = Field(default=None, ge=1)


def main_container(template: PodTemplateSpec) -> Container:
    containers = template.spec.containers
    return next((c for c in containers if c.name == DEFAULT_CONTAINER), containers[0])


class TrainingJobSpec(KrayModel):
    replica_specs: dict[str, ReplicaSpec]
    run_policy: RunPolicy = Field(default_factory=RunPolicy)
    nproc_per_node: int = Field(default=1, ge=1)
    elastic_policy: ElasticPolicy | None = None
    master_port: int = Field(default=23456, ge=1, le=65535)

    @model_validator(mode="after")
    def _check(self) -> TrainingJobSpec:
        errors: list[tuple[str, str, str]] = []
        for name in self.replica_specs:
            if name not in REPLICA_TYPES:
                errors.append(
                    (f"replicaSpecs[{name}]", not_supported(name, list(REPLICA_TYPES)), "FieldValueNotSupported")
                )
        master = self.replica_specs.get(MASTER)
        if master is None:
            errors.append(
                (f"replicaSpecs[{MASTER}]", "Required value: exactly one Master replica", "FieldValueRequired")
            )
        elif master.replicas != 1:
            errors.append(
                (f"replicaSpecs[{MASTER}].replicas", invalid(master.replicas, "must be 1"), "FieldValueInvalid")
            )
        ep = self.elastic_policy
        if ep is not None:
            total = self.total_replicas()
            if ep.min_replicas is not None and ep.max_replicas is not None and ep.min_replicas > ep.max_replicas:
                errors.append(
                    (
                        "elasticPolicy.minReplicas",
                        invalid(ep.min_replicas, "must not exceed maxReplicas"),
                        "FieldValueInvalid",
                    )
                )
            if ep.max_replicas is not None and total > ep.max_replicas:
                errors.append(
                    (
                        "elasticPolicy.maxReplicas",
                        invalid(ep.max_replicas, f"is below the {total} replicas"),
                        "FieldValueInvalid",
                    )
                )
            if ep.min_replicas is not None and total < ep.min_replicas:
                errors.append(
                    (
                        "elasticPolicy.minReplicas",
                        invalid(ep.min_replicas, f"is above the {total} replicas"),
                        "FieldValueInvalid",
                    )
                )
        if errors:
            raise FieldValueError(errors)
        return self

    def replicas(self, replica_type: str) -> int:
        rs = self.replica_specs.get(replica_type)
        return rs.replicas if rs is not None else 0

    def total_replicas(self) -> int:
        """Nodes in the gang: the PodGroup's minMember and torchrun's NNODES."""
        return sum(rs.replicas for rs in self.replica_specs.values())

    def world_size(self) -> int:
        return self.total_replicas() * self.nproc_per_node


class ReplicaStatus(KrayModel):
    active: int = 0
    succeeded: int = 0
    failed: int = 0


class TrainingJobStatus(KrayModel):
    conditions: list[Condition] | None = None
    replica_statuses: dict[str, ReplicaStatus] | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    restarts: int = 0  # gang restarts so far (each one counts against runPolicy.backoffLimit)
    master_addr: str | None = None  # the Master pod's IP once known (what workers rendezvous at)

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions or [] if c.type == type_), None)

    def is_true(self, type_: str) -> bool:
        c = self.condition(type_)
        return c is not None and c.status == "True"


@kind
class TrainingJob(Resource):
    GROUP: ClassVar[str] = "kray.io"
    VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "TrainingJob"
    PLURAL: ClassVar[str] = "trainingjobs"
    SINGULAR: ClassVar[str] = "trainingjob"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("tj",)
    HAS_STATUS_SUBRESOURCE: ClassVar[bool] = True
    # The name becomes a Service name and a DNS label of every pod: DNS-1035, like a Service.
    NAME_FORMAT: ClassVar[str] = "dns1035"

    spec: TrainingJobSpec
    status: TrainingJobStatus | None = None

    @model_validator(mode="after")
    def _name_fits_pods(self) -> TrainingJob:
        # Pod names (and hostnames) are "<job>-worker-<i>": they must stay DNS labels.
        longest = f"{self.name}-{WORKER.lower()}-{max(self.spec.replicas(WORKER) - 1, 0)}"
        if self.name and len(longest) > DNS1123_LABEL_MAX:
            raise FieldValueError.one(
                invalid(self.name, f"too long: pod name {longest!r} would exceed {DNS1123_LABEL_MAX} characters"),
                path="metadata.name",
            )
        return self

    def finished(self) -> str | None:
        """``Succeeded`` or ``Failed`` once the job has ended, else None."""
        if self.status is not None:
            for type_ in (SUCCEEDED, FAILED):
                if self.status.is_true(type_):
                    return type_
        return None
