"""XID classification and the health loop: unhealthy, back-off, re-probe, healthy again."""

from __future__ import annotations

import threading

import pytest

from kray.deviceplugins.fake_nvml import FakeNvml
from kray.deviceplugins.health import HealthMonitor, XidClass, XidPolicy


class ManualClock:
    def __init__(self) -> None:
        self.t = 0.0

    def monotonic(self) -> float:
        return self.t


@pytest.mark.parametrize("xid", [13, 31, 43, 45, 68, 109])
def test_application_xids_keep_the_gpu(xid: int) -> None:
    assert XidPolicy().classify(xid) is XidClass.APPLICATION
    assert not XidPolicy().marks_unhealthy(xid)


@pytest.mark.parametrize("xid", [48, 63, 64, 74, 79, 92, 94, 95, 12345])
def test_hardware_and_unknown_xids_mark_it_bad(xid: int) -> None:
    assert XidPolicy().marks_unhealthy(xid)


def test_policy_is_configurable() -> None:
    policy = XidPolicy().with_ignored([79])
    assert not policy.marks_unhealthy(79)
    assert XidPolicy().marks_unhealthy(79)  # the default table is untouched
    lenient = XidPolicy(unknown=XidClass.APPLICATION)
    assert not lenient.marks_unhealthy(12345) and lenient.marks_unhealthy(48)


def _monitor(nvml: FakeNvml, clock: ManualClock, **kw: float) -> tuple[HealthMonitor, list[int]]:
    changes: list[int] = []
    nvml.init()
    gpus = [nvml.device(i) for i in range(nvml.device_count())]
    mon = HealthMonitor(
        nvml, gpus, clock=clock, backoff_s=10, max_backoff_s=40, on_change=lambda: changes.append(1), **kw
    )
    return mon, changes


def test_xid79_unhealthy_then_reprobed_back() -> None:
    nvml, clock = FakeNvml.dgx(4), ManualClock()
    mon, changes = _monitor(nvml, clock)
    uuid = nvml.gpus[1].uuid
    mon.step()
    nvml.inject_xid(1, 79)
    assert mon.step() is True
    assert uuid not in mon.healthy() and "fallen off the bus" in mon.unhealthy()[uuid]
    assert len(changes) == 1

    clock.t = 9.9  # back-off not over: no probe
    assert mon.step() is False and not mon.is_healthy(uuid)
    clock.t = 10.0
    assert mon.step() is True and mon.is_healthy(uuid)
    assert mon.healthy() == {g.uuid for g in nvml.gpus}
    assert len(changes) == 2


def test_backoff_grows_while_the_probe_fails() -> None:
    nvml, clock = FakeNvml.dgx(2), ManualClock()
    mon, _ = _monitor(nvml, clock)
    uuid = nvml.gpus[0].uuid
    mon.step()  # registers for events: earlier XIDs are not delivered, as with NVML
    nvml.set_probe_failing(0)
    nvml.inject_xid(0, 48)
    mon.step()
    assert not mon.is_healthy(uuid)
    clock.t = 10  # probe fails: next in 20
    assert mon.step() is False
    clock.t = 29
    mon.step()
    assert not mon.is_healthy(uuid)
    nvml.set_probe_failing(0, False)
    clock.t = 30
    assert mon.step() is True and mon.is_healthy(uuid)


def test_application_xid_changes_nothing_and_events_arrive_in_order() -> None:
    nvml, clock = FakeNvml.dgx(4), ManualClock()
    mon, changes = _monitor(nvml, clock)
    mon.step()
    nvml.inject_xid(0, 13)
    nvml.inject_xid(2, 94)
    nvml.inject_xid(3, 31)
    mon.step()
    assert set(mon.unhealthy()) == {nvml.gpus[2].uuid}
    assert changes == [1]


def test_unattributed_critical_event_marks_all() -> None:
    nvml, clock = FakeNvml.pcie(3), ManualClock()
    mon, _ = _monitor(nvml, clock)
    mon.step()
    nvml.inject_xid(None, 79)
    mon.step()
    assert mon.healthy() == set()


def test_polling_fallback_when_events_are_unsupported() -> None:
    nvml, clock = FakeNvml.pcie(2, events_supported=False), ManualClock()
    mon, _ = _monitor(nvml, clock, poll_interval_s=5)
    assert mon.polling
    mon.step()
    nvml.remove_device(1)
    clock.t = 4
    assert mon.step() is False  # not yet time to poll
    clock.t = 5
    assert mon.step() is True and set(mon.unhealthy()) == {nvml.gpus[1].uuid}
    nvml.restore_device(1)
    clock.t = 15
    assert mon.step() is True and mon.unhealthy() == {}


def test_waiter_wakes_on_injected_event() -> None:
    nvml, clock = FakeNvml.dgx(2), ManualClock()
    mon, _ = _monitor(nvml, clock)
    mon.step()  # opens the event set
    timer = threading.Timer(0.05, nvml.inject_xid, args=(1, 79))
    timer.start()
    assert mon.step(timeout_s=5.0) is True
    timer.join()
    assert not mon.is_healthy(nvml.gpus[1].uuid)


def test_a_gpu_lost_at_start_does_not_leave_the_others_without_events() -> None:
    """Registration fails while GPU 1 is lost: poll, then retry events over the healthy GPUs,
    and take GPU 1 back into the event set once it answers again."""
    nvml, clock = FakeNvml.dgx(4), ManualClock()
    mon, _ = _monitor(nvml, clock, poll_interval_s=5, events_retry_s=60)
    nvml.remove_device(1)  # found by discovery, lost before health starts
    assert mon.polling
    assert mon.step() is True and set(mon.unhealthy()) == {nvml.gpus[1].uuid}  # the poll finds it
    clock.t = 30
    mon.step()
    assert mon.polling  # not retried before events_retry_s
    clock.t = 61
    mon.step()
    assert not mon.polling  # events over GPUs 0, 2 and 3
    nvml.inject_xid(2, 48)  # a DBE that a poll would never see: the GPU still answers
    assert mon.step() is True and set(mon.unhealthy()) == {nvml.gpus[1].uuid, nvml.gpus[2].uuid}
    nvml.restore_device(1)
    clock.t = 200  # past both back-offs: re-probed healthy, GPU 1 joins a new event set
    assert mon.step() is True and mon.unhealthy() == {}
    mon.step()
    nvml.inject_xid(1, 79)
    assert mon.step() is True and set(mon.unhealthy()) == {nvml.gpus[1].uuid}
