"""Event: a record of something that happened to an object (``kubectl describe`` shows them)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from ..meta import KrayModel, Resource
from ..registry import kind
from .common import MicroTime, ObjectReference


class EventSource(KrayModel):
    component: str | None = None
    host: str | None = None


class EventSeries(KrayModel):
    count: int | None = None
    last_observed_time: MicroTime | None = None


@kind
class Event(Resource):
    KIND: ClassVar[str] = "Event"
    PLURAL: ClassVar[str] = "events"
    SINGULAR: ClassVar[str] = "event"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("ev",)

    involved_object: ObjectReference = Field(default_factory=ObjectReference)
    reason: str | None = None
    message: str | None = None
    type: Literal["Normal", "Warning"] | None = None
    count: int | None = None
    first_timestamp: datetime | None = None
    last_timestamp: datetime | None = None
    event_time: MicroTime | None = None
    series: EventSeries | None = None
    source: EventSource | None = None
    reporting_component: str | None = None
    reporting_instance: str | None = None
    action: str | None = None
    related: ObjectReference | None = None
