"""Reconciler helpers: owner references, finalizers, conditions, events."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kray.actors.framework import (
    AlreadyOwnedError,
    EventRecorder,
    FakeClock,
    add_finalizer,
    controller_of,
    get_condition,
    has_finalizer,
    owned_by,
    remove_finalizer,
    set_condition,
    set_controller_reference,
)
from kray.client import AsyncClient
from kray.crds import ConfigMap, Event, Namespace, ObjectMeta
from kray.crds.core import NamespaceStatus


def ns(name: str, uid: str) -> Namespace:
    return Namespace(metadata=ObjectMeta(name=name, uid=uid))


def test_controller_reference() -> None:
    cm = ConfigMap(metadata=ObjectMeta(name="c", namespace="a"))
    set_controller_reference(ns("a", "u1"), cm)
    set_controller_reference(ns("a", "u1"), cm)  # idempotent
    ref = controller_of(cm)
    assert ref is not None and (ref.kind, ref.api_version, ref.uid, ref.block_owner_deletion) == (
        "Namespace",
        "v1",
        "u1",
        True,
    )
    assert len(cm.metadata.owner_references or []) == 1
    assert owned_by(cm, ns("a", "u1")) and not owned_by(cm, ns("b", "u2"))
    with pytest.raises(AlreadyOwnedError):
        set_controller_reference(ns("b", "u2"), cm)
    with pytest.raises(ValueError, match="no uid"):
        set_controller_reference(Namespace(metadata=ObjectMeta(name="x")), cm)
    other = ConfigMap(metadata=ObjectMeta(name="o", namespace="b", uid="u3"))
    with pytest.raises(ValueError, match="same namespace"):
        set_controller_reference(other, cm)


def test_finalizers() -> None:
    cm = ConfigMap(metadata=ObjectMeta(name="c", namespace="a"))
    assert add_finalizer(cm, "kray.dev/cleanup")
    assert not add_finalizer(cm, "kray.dev/cleanup")
    assert has_finalizer(cm, "kray.dev/cleanup")
    assert remove_finalizer(cm, "kray.dev/cleanup")
    assert not remove_finalizer(cm, "kray.dev/cleanup")
    assert cm.metadata.finalizers is None


def test_set_condition_moves_transition_time_only_on_status_change() -> None:
    clock = FakeClock()
    status = NamespaceStatus()
    t0 = clock.now()
    assert set_condition(status, "Ready", "False", "Starting", now=t0)
    assert not set_condition(status, "Ready", "False", "Starting", now=t0 + timedelta(seconds=5))
    assert set_condition(status, "Ready", "False", "StillStarting", "pulling", now=t0 + timedelta(seconds=9))
    cond = get_condition(status, "Ready")
    assert cond is not None and cond.last_transition_time == t0 and cond.reason == "StillStarting"
    t1 = t0 + timedelta(seconds=20)
    assert set_condition(status, "Ready", "True", "Running", now=t1)
    cond = get_condition(status, "Ready")
    assert cond is not None and cond.last_transition_time == t1
    assert set_condition(status, "Degraded", "False", now=t1)
    assert [c.type for c in status.conditions or []] == ["Ready", "Degraded"]


async def test_event_recorder_aggregates_repeats(client: AsyncClient) -> None:
    owner = await client.create(ConfigMap(metadata=ObjectMeta(name="target", namespace="default")))
    clock = FakeClock()
    recorder = EventRecorder(client, "test-controller", clock=clock)
    first = await recorder.event(owner, "Warning", "Failed", "no capacity")
    clock.advance(5)
    again = await recorder.event(owner, "Warning", "Failed", "no capacity")
    await recorder.event(owner, "Normal", "Scheduled", "ok")
    assert first is not None and again is not None
    assert again.metadata.name == first.metadata.name
    events = {e.reason: e for e in (await client.list(Event, "default")).items}
    assert set(events) == {"Failed", "Scheduled"}
    assert events["Failed"].count == 2
    assert events["Failed"].involved_object.name == "target"
    assert events["Failed"].source is not None and events["Failed"].source.component == "test-controller"
