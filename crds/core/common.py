"""Small types shared by the core kinds: object references, MicroTime, int-or-string."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Annotated, Any, Union

from pydantic import AfterValidator, PlainSerializer

from ..meta import KrayModel
from ..validation import FieldValueError, invalid

# Ports and targetPorts may be a number or a named port ("http").
IntOrString = Union[int, str]


def _as_utc(value: datetime) -> datetime:
    # Naive datetimes are taken as UTC so a value round-trips through its "Z" string unchanged.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _micro_time(value: datetime) -> str:
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


# Kubernetes' MicroTime: RFC 3339 with exactly six fractional digits (leases, event times),
# because leader election compares renew times finer than a second.
MicroTime = Annotated[
    datetime, AfterValidator(_as_utc), PlainSerializer(_micro_time, return_type=str, when_used="json")
]


class ObjectReference(KrayModel):
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    uid: str | None = None
    api_version: str | None = None
    resource_version: str | None = None
    field_path: str | None = None


class LocalObjectReference(KrayModel):
    name: str | None = None


def check_port(value: int | None, what: str = "") -> int | None:
    """Kubernetes' port-range rule, with its message."""
    if value is not None and not 1 <= value <= 65535:
        raise FieldValueError.one(invalid(value, "must be between 1 and 65535, inclusive"), path=what)
    return value


def check_unique(names: Iterable[tuple[str, Any]]) -> list[tuple[str, str, str]]:
    """Duplicate-value errors for (path, name) pairs, reported at every repeat."""
    seen: set[Any] = set()
    errors = []
    for path, name in names:
        if name in seen:
            errors.append((path, f'Duplicate value: "{name}"', "FieldValueDuplicate"))
        seen.add(name)
    return errors
