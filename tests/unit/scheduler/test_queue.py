"""Scheduling queue: ordering, back-off, unschedulable pods and the events that move them."""

from __future__ import annotations

from kray.actors.scheduler.pod_info import PodInfo
from kray.actors.scheduler.ports import FakeClock
from kray.actors.scheduler.queue import NODE_ADD, POD_DELETE, ClusterEvent, SchedulingQueue

from .builders import pod


def make(**kw: object) -> tuple[SchedulingQueue, FakeClock]:
    clock = FakeClock()
    events = {"NodeResourcesFit": [NODE_ADD, POD_DELETE], "TaintToleration": [NODE_ADD]}
    return SchedulingQueue(clock, events, **kw), clock  # type: ignore[arg-type]


def test_pops_highest_priority_then_oldest() -> None:
    q, clock = make()
    for name, prio in [("low", 0), ("high", 100), ("low2", 0)]:
        q.add(PodInfo.of(pod(name, priority=prio)))
        clock.advance(1)
    assert [q.pop().info.name for _ in range(3)] == ["high", "low", "low2"]  # type: ignore[union-attr]
    assert q.pop() is None


def test_failed_pod_backs_off_exponentially_up_to_10s() -> None:
    q, clock = make()
    q.add(PodInfo.of(pod("a")))
    waits = []
    for _ in range(6):
        qp = q.pop()
        assert qp is not None
        q.add_unschedulable(qp, q.scheduling_cycle)  # no plugins: an error -> back-off
        start = clock.now()
        while qp.key in q.backoff:
            clock.advance(0.5)
            q.flush()
        waits.append(clock.now() - start)
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_unschedulable_pod_moves_only_on_a_relevant_event() -> None:
    q, clock = make()
    q.add(PodInfo.of(pod("a")))
    qp = q.pop()
    assert qp is not None
    qp.unschedulable_plugins = {"TaintToleration"}
    q.add_unschedulable(qp, q.scheduling_cycle)
    assert "default/a" in q.unschedulable
    assert q.move_all_to_active_or_backoff(POD_DELETE) == 0
    clock.advance(20)
    assert q.move_all_to_active_or_backoff(NODE_ADD) == 1
    assert q.pop() is not None


def test_event_during_the_cycle_sends_pod_to_backoff_not_unschedulable() -> None:
    q, _ = make()
    q.add(PodInfo.of(pod("a")))
    qp = q.pop()
    assert qp is not None
    cycle = q.scheduling_cycle
    q.move_all_to_active_or_backoff(ClusterEvent("Node", NODE_ADD.action))  # arrives mid-cycle
    qp.unschedulable_plugins = {"NodeResourcesFit"}
    q.add_unschedulable(qp, cycle)
    assert "default/a" in q.backoff


def test_long_unschedulable_pods_are_flushed_after_5_minutes() -> None:
    q, clock = make()
    q.add(PodInfo.of(pod("a")))
    qp = q.pop()
    assert qp is not None
    qp.unschedulable_plugins = {"TaintToleration"}
    q.add_unschedulable(qp, q.scheduling_cycle)
    clock.advance(299)
    assert q.pop() is None
    clock.advance(2)
    assert q.pop() is not None


def test_update_of_unschedulable_pod_retries_it_and_delete_removes_it() -> None:
    q, clock = make()
    q.add(PodInfo.of(pod("a")))
    qp = q.pop()
    assert qp is not None
    qp.unschedulable_plugins = {"TaintToleration"}
    q.add_unschedulable(qp, q.scheduling_cycle)
    clock.advance(5)
    q.add(PodInfo.of(pod("a", cpu=1)))  # the user changed the pod
    popped = q.pop()
    assert popped is not None and popped.info.requests == {"cpu": 1000}
    q.add(PodInfo.of(pod("b")))
    q.delete("default/b")
    assert q.pop() is None and len(q) == 0
