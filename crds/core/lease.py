"""Lease (coordination.k8s.io/v1): leader election and node heartbeats."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ..meta import KrayModel, PrinterColumn, Resource
from ..registry import kind
from .common import MicroTime


class LeaseSpec(KrayModel):
    holder_identity: str | None = None
    lease_duration_seconds: int | None = None
    acquire_time: MicroTime | None = None
    renew_time: MicroTime | None = None
    lease_transitions: int | None = None
    strategy: str | None = None
    preferred_holder: str | None = None


@kind
class Lease(Resource):
    GROUP: ClassVar[str] = "coordination.k8s.io"
    KIND: ClassVar[str] = "Lease"
    PLURAL: ClassVar[str] = "leases"
    SINGULAR: ClassVar[str] = "lease"
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(name="Holder", type="string", json_path=".spec.holderIdentity"),
        PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
    )

    spec: LeaseSpec = Field(default_factory=LeaseSpec)
