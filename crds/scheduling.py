"""Scheduling kinds: PodGroup (gang scheduling) and PriorityClass.

PodGroup follows the scheduler-plugins coscheduling API (minMember, scheduleTimeoutSeconds) in
kray's own group; PriorityClass is Kubernetes' ``scheduling.k8s.io/v1`` kind.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from .meta import KrayModel, PrinterColumn, Resource
from .registry import kind

# Pods join a gang by carrying this label with the PodGroup's name (same namespace).
POD_GROUP_LABEL = "scheduling.kray.io/pod-group"

# The GPUs the scheduler picked for a pod, "<uuid>,<uuid>,...": as many as the pod's effective
# request of the node's device resource (its NodeDevices spec.driver, nvidia.com/gpu by default),
# max(sum over app containers, max over init containers). App containers take them in container
# order, each init container the first ones (deviceplugins/hints.py). Written by the API server at
# bind time from the Binding's annotations; the kubelet allocates exactly these devices.
GPU_DEVICES_ANNOTATION = "kray.io/gpu-devices"

PodGroupPhase = Literal["Pending", "PreScheduling", "Scheduling", "Scheduled", "Running", "Finished", "Failed"]


class PodGroupSpec(KrayModel):
    # How many pods must be placeable at once before any of them binds.
    min_member: int = Field(default=1, ge=1)
    # How long reserved members wait at Permit for the rest of the gang.
    schedule_timeout_seconds: int | None = Field(default=None, ge=1)


class PodGroupStatus(KrayModel):
    phase: PodGroupPhase | None = None
    scheduled: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    schedule_start_time: datetime | None = None


@kind
class PodGroup(Resource):
    GROUP: ClassVar[str] = "scheduling.kray.io"
    VERSION: ClassVar[str] = "v1alpha1"
    KIND: ClassVar[str] = "PodGroup"
    PLURAL: ClassVar[str] = "podgroups"
    SINGULAR: ClassVar[str] = "podgroup"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("pg",)
    HAS_STATUS_SUBRESOURCE: ClassVar[bool] = True
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(name="Phase", type="string", json_path=".status.phase"),
        PrinterColumn(name="MinMember", type="integer", json_path=".spec.minMember"),
        PrinterColumn(name="Scheduled", type="integer", json_path=".status.scheduled"),
        PrinterColumn(name="Running", type="integer", json_path=".status.running"),
        PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
    )

    spec: PodGroupSpec = Field(default_factory=PodGroupSpec)
    status: PodGroupStatus | None = None


@kind
class PriorityClass(Resource):
    GROUP: ClassVar[str] = "scheduling.k8s.io"
    VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "PriorityClass"
    PLURAL: ClassVar[str] = "priorityclasses"
    SINGULAR: ClassVar[str] = "priorityclass"
    NAMESPACED: ClassVar[bool] = False
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("pc",)
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (  # kubectl's VALUE, GLOBAL-DEFAULT
        PrinterColumn(name="Value", type="integer", json_path=".value"),
        PrinterColumn(name="Global-Default", type="boolean", json_path=".globalDefault"),
        PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
        PrinterColumn(name="Preemption-Policy", type="string", json_path=".preemptionPolicy", priority=1),
    )

    value: int
    global_default: bool = False
    preemption_policy: Literal["PreemptLowerPriority", "Never"] = "PreemptLowerPriority"
    description: str | None = None
