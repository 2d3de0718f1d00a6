"""Level-based reconciliation: the request, the result, and helpers reconcilers share.

A reconciler is woken with a ``Request`` (namespace + name, nothing more), re-reads the
state it needs, and converges it. It returns a ``Result`` to ask for a later pass, raises
``TerminalError`` for a failure retrying cannot fix, and raises anything else to be retried
with back-off. A 409 Conflict from a write simply requeues (the cache was stale).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, Protocol, runtime_checkable

from kray.crds.core import Event, ObjectReference
from kray.crds.core.event import EventSource
from kray.crds.meta import Condition, ObjectMeta, OwnerReference, Resource

from .ports import Clock, SystemClock, Writer

log = logging.getLogger(__name__)

_MAX_REMEMBERED_EVENTS = 4096


@dataclass(frozen=True, order=True)
class Request:
    namespace: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @classmethod
    def for_object(cls, obj: Resource) -> Request:
        return cls(obj.metadata.namespace or None, obj.metadata.name or "")


@dataclass(frozen=True)
class Result:
    requeue: bool = False
    requeue_after: float | None = None


class TerminalError(Exception):
    """A failure that retrying cannot fix: logged once, the key is not requeued."""


@runtime_checkable
class Reconciler(Protocol):
    async def reconcile(self, request: Request) -> Result: ...


# ---- owner references ----


class AlreadyOwnedError(ValueError):
    """The object already has a different controller owner."""


def owner_reference(owner: Resource, *, controller: bool = True, block_owner_deletion: bool = True) -> OwnerReference:
    if not owner.metadata.uid:
        raise ValueError(f"{owner.kind} {owner.name!r} has no uid (was it read from the server?)")
    return OwnerReference(
        api_version=owner.api_version or owner.api_version_str(),
        kind=owner.kind or owner.KIND,
        name=owner.name,
        uid=owner.metadata.uid,
        controller=controller or None,
        block_owner_deletion=block_owner_deletion or None,
    )


def controller_of(obj: Resource) -> OwnerReference | None:
    for ref in obj.metadata.owner_references or ():
        if ref.controller:
            return ref
    return None


def set_controller_reference(owner: Resource, obj: Resource) -> None:
    """Make ``owner`` the controller of ``obj`` (the garbage collector deletes ``obj`` with it)."""
    if owner.metadata.namespace and obj.metadata.namespace and owner.metadata.namespace != obj.metadata.namespace:
        raise ValueError("a namespaced owner must be in the same namespace as its dependent")
    ref = owner_reference(owner)
    current = controller_of(obj)
    if current is not None and current.uid != ref.uid:
        raise AlreadyOwnedError(f"{obj.kind} {obj.name!r} is already controlled by {current.kind} {current.name!r}")
    refs = [r for r in obj.metadata.owner_references or () if r.uid != ref.uid]
    obj.metadata.owner_references = [*refs, ref]


def owned_by(obj: Resource, owner: Resource) -> bool:
    uid = owner.metadata.uid
    return any(r.uid == uid for r in obj.metadata.owner_references or ())


# ---- finalizers ----


def has_finalizer(obj: Resource, name: str) -> bool:
    return name in (obj.metadata.finalizers or ())


def add_finalizer(obj: Resource, name: str) -> bool:
    """Add ``name``; True if the object changed (and so needs an update)."""
    if has_finalizer(obj, name):
        return False
    obj.metadata.finalizers = [*(obj.metadata.finalizers or ()), name]
    return True


def remove_finalizer(obj: Resource, name: str) -> bool:
    if not has_finalizer(obj, name):
        return False
    obj.metadata.finalizers = [f for f in obj.metadata.finalizers or () if f != name] or None
    return True


# ---- conditions ----


def get_condition(holder: Any, type_: str) -> Condition | None:
    for c in getattr(holder, "conditions", None) or ():
        if c.type == type_:
            return c  # type: ignore[no-any-return]
    return None


def set_condition(
    holder: Any,
    type_: str,
    status: Literal["True", "False", "Unknown"],
    reason: str | None = None,
    message: str | None = None,
    *,
    now: datetime | None = None,
    observed_generation: int | None = None,
) -> bool:
    """Set a condition on ``holder.conditions`` (a status model); True if anything changed.

    lastTransitionTime moves only when the status flips: a reason or message update is
    not a transition, which is what consumers of the condition rely on.
    """
    now = now or datetime.now(timezone.utc).replace(microsecond=0)
    conditions: list[Condition] = list(getattr(holder, "conditions", None) or [])
    for i, c in enumerate(conditions):
        if c.type != type_:
            continue
        new = c.model_copy(
            update={
                "status": status,
                "reason": reason,
                "message": message,
                "observed_generation": observed_generation,
                "last_transition_time": now if c.status != status else c.last_transition_time,
            }
        )
        if new == c:
            return False
        conditions[i] = new
        holder.conditions = conditions
        return True
    conditions.append(
        Condition(
            type=type_,
            status=status,
            reason=reason,
            message=message,
            last_transition_time=now,
            observed_generation=observed_generation,
        )
    )
    holder.conditions = conditions
    return True


# ---- events ----


class EventRecorder:
    """Writes core/v1 Events about objects; repeats of one event bump its count instead.

    The aggregation memory is local (like client-go's EventCorrelator): after a restart the
    first repeat creates a fresh Event, which is harmless.
    """

    def __init__(self, writer: Writer, component: str, *, clock: Clock | None = None, host: str = "") -> None:
        self.writer = writer
        self.component = component
        self.clock: Clock = clock or SystemClock()
        self.host = host
        self._seen: dict[tuple[str, str, str, str, str], Event] = {}
        self._seq = itertools.count()

    async def event(
        self, obj: Resource, type_: Literal["Normal", "Warning"], reason: str, message: str
    ) -> Event | None:
        """Record; errors are logged, never raised (an event is not worth failing a reconcile)."""
        try:
            return await self._record(obj, type_, reason, message)
        except Exception as exc:
            log.warning("could not record event %s/%s on %s %s: %s", type_, reason, obj.kind, obj.name, exc)
            return None

    async def _record(self, obj: Resource, type_: Literal["Normal", "Warning"], reason: str, message: str) -> Event:
        from kray.client.errors import Conflict, NotFound

        now = self.clock.now()
        ident = (obj.metadata.uid or obj.name, obj.kind or "", type_, reason, message)
        seen = self._seen.get(ident)
        if seen is not None:
            bumped = seen.model_copy(deep=True)
            bumped.count = (seen.count or 1) + 1
            bumped.last_timestamp = now
            try:
                updated: Event = await self.writer.update(bumped)
                self._seen[ident] = updated
                return updated
            except (Conflict, NotFound):
                pass  # deleted or changed elsewhere: fall through and start a new one
        namespace = obj.metadata.namespace or "default"
        event = Event(
            # Kubernetes names events <object>.<unique hex>; a counter keeps names unique even when
            # the (possibly fake) clock has not moved between two events.
            metadata=ObjectMeta(
                name=f"{obj.name}.{int(now.timestamp() * 1e9) + next(self._seq):x}", namespace=namespace
            ),
            involved_object=ObjectReference(
                kind=obj.kind,
                namespace=obj.metadata.namespace,
                name=obj.name,
                uid=obj.metadata.uid,
                api_version=obj.api_version,
                resource_version=obj.metadata.resource_version,
            ),
            reason=reason,
            message=message,
            type=type_,
            count=1,
            first_timestamp=now,
            last_timestamp=now,
            source=EventSource(component=self.component, host=self.host or None),
            reporting_component=self.component,
        )
        created: Event = await self.writer.create(event)
        self._seen[ident] = created
        if len(self._seen) > _MAX_REMEMBERED_EVENTS:  # bounded: forget the oldest
            del self._seen[next(iter(self._seen))]
        return created


async def record_event(
    writer: Writer,
    obj: Resource,
    type_: Literal["Normal", "Warning"],
    reason: str,
    message: str,
    *,
    component: str = "kray-controller",
) -> Event | None:
    """One-off event (no aggregation); use an ``EventRecorder`` for repeats."""
    return await EventRecorder(writer, component).event(obj, type_, reason, message)
