"""Object metadata shared by every kind, built-in or custom.

Field names and JSON shape follow Kubernetes (camelCase on the wire, snake_case in Python),
so existing manifests load unchanged. Models do no I/O.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class KrayModel(BaseModel):
    """Base of every wire model: camelCase aliases, accepts either name, keeps unknown fields.

    Unknown fields are kept (``extra="allow"``) so that a manifest written for a newer
    Kubernetes round-trips through the store instead of silently losing data.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        validate_assignment=False,
        ser_json_timedelta="float",
    )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready wire form: camelCase keys, empty (None) fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


class OwnerReference(KrayModel):
    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ManagedFieldsEntry(KrayModel):
    manager: str | None = None
    operation: str | None = None


class ObjectMeta(KrayModel):
    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    owner_references: list[OwnerReference] | None = None
    finalizers: list[str] | None = None
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    deletion_grace_period_seconds: int | None = None


class ListMeta(KrayModel):
    resource_version: str | None = None
    continue_: str | None = Field(default=None, alias="continue")
    remaining_item_count: int | None = None


class Condition(KrayModel):
    """A status condition (metav1.Condition plus the older per-kind fields)."""

    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str | None = None
    message: str | None = None
    last_transition_time: datetime | None = None
    last_heartbeat_time: datetime | None = None
    last_probe_time: datetime | None = None
    observed_generation: int | None = None


class PrinterColumn(KrayModel):
    """A column ``kray get`` (and kubectl) shows for a kind: a CRD's additionalPrinterColumn, or
    one a built-in kind declares in ``PRINTER_COLUMNS``. ``priority`` > 0: only with -o wide."""

    name: str
    type: str
    format: str | None = None
    description: str | None = None
    priority: int | None = None
    json_path: str


class Resource(KrayModel):
    """Base of every kind. API identity lives in class-level metadata, not in instances.

    Subclasses set the ClassVars and are registered with ``crds.registry.REGISTRY``
    (see ``registry.kind``). ``api_version`` and ``kind`` are filled in by default so an
    object built in Python serializes with the right TypeMeta.
    """

    GROUP: ClassVar[str] = ""
    VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = ""
    PLURAL: ClassVar[str] = ""
    SINGULAR: ClassVar[str] = ""
    NAMESPACED: ClassVar[bool] = True
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ()
    # Whether `/status` is a separate subresource (then updates of the main resource
    # leave status unchanged and vice versa), as for Kubernetes' built-in kinds.
    HAS_STATUS_SUBRESOURCE: ClassVar[bool] = False
    # Served as a meta.k8s.io/v1 Table (server-side printing); empty: NAME and AGE.
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = ()

    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    def model_post_init(self, __context: Any) -> None:
        if self.api_version is None:
            self.api_version = self.api_version_str()
        if self.kind is None:
            self.kind = self.KIND

    @classmethod
    def api_version_str(cls) -> str:
        return f"{cls.GROUP}/{cls.VERSION}" if cls.GROUP else cls.VERSION

    @property
    def name(self) -> str:
        return self.metadata.name or ""

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace


class StatusCause(KrayModel):
    reason: str | None = None
    message: str | None = None
    field: str | None = None


class StatusDetails(KrayModel):
    name: str | None = None
    group: str | None = None
    kind: str | None = None
    uid: str | None = None
    causes: list[StatusCause] | None = None
    retry_after_seconds: int | None = None


class Status(KrayModel):
    """Kubernetes' ``Status`` body: the answer to every failed request (and to DELETE)."""

    api_version: str = "v1"
    kind: str = "Status"
    metadata: ListMeta = Field(default_factory=ListMeta)
    status: str = "Failure"  # "Success" | "Failure"
    message: str | None = None
    reason: str | None = None  # NotFound, AlreadyExists, Conflict, Invalid, BadRequest, ...
    details: StatusDetails | None = None
    code: int = 500
