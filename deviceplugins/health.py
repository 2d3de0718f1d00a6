"""GPU health: XID classification, an event loop with a polling fallback, and re-probing.

The XID table is the one place that decides which driver errors take a GPU out of service.
Like NVIDIA's k8s-device-plugin, application errors (a bad kernel, a page fault of one
process) leave the GPU in the pool: the next pod gets a clean context. Hardware and driver
errors (ECC, row remapping, NVLink, fallen off the bus) and XIDs we do not know mark it
unhealthy. Unlike that plugin, an unhealthy GPU is re-probed after an exponential back-off and
comes back when it answers again, so a transient fault does not cost a GPU until reboot.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .nvml import EventSet, EventsUnsupportedError, GpuInfo, Nvml, XidEvent

log = logging.getLogger(__name__)


class XidClass(enum.Enum):
    APPLICATION = "application"  # the workload's fault; the GPU stays healthy
    CRITICAL = "critical"  # hardware/driver fault; the GPU leaves the healthy set


# See NVIDIA's "XID Errors" guide (docs.nvidia.com/deploy/xid-errors) and k8s-device-plugin's
# list of skipped application XIDs. Anything not listed is treated per XidPolicy.unknown.
XID_TABLE: Mapping[int, tuple[XidClass, str]] = {
    13: (XidClass.APPLICATION, "Graphics engine exception"),
    31: (XidClass.APPLICATION, "GPU memory page fault"),
    43: (XidClass.APPLICATION, "GPU stopped processing"),
    45: (XidClass.APPLICATION, "Preemptive cleanup, due to previous errors"),
    68: (XidClass.APPLICATION, "Video processor exception"),
    109: (XidClass.APPLICATION, "Context switch timeout"),
    48: (XidClass.CRITICAL, "Double-bit ECC error"),
    63: (XidClass.CRITICAL, "ECC page retirement or row remapping recording event"),
    64: (XidClass.CRITICAL, "ECC page retirement or row remapper recording failure"),
    74: (XidClass.CRITICAL, "NVLink error"),
    79: (XidClass.CRITICAL, "GPU has fallen off the bus"),
    92: (XidClass.CRITICAL, "High single-bit ECC error rate"),
    94: (XidClass.CRITICAL, "Contained ECC error"),
    95: (XidClass.CRITICAL, "Uncontained ECC error"),
}


@dataclass(frozen=True)
class XidPolicy:
    table: Mapping[int, tuple[XidClass, str]] = field(default_factory=lambda: dict(XID_TABLE))
    unknown: XidClass = XidClass.CRITICAL  # an XID we cannot name is assumed to be the GPU's fault

    def classify(self, xid: int) -> XidClass:
        entry = self.table.get(xid)
        return entry[0] if entry else self.unknown

    def marks_unhealthy(self, xid: int) -> bool:
        return self.classify(xid) is XidClass.CRITICAL

    def describe(self, xid: int) -> str:
        entry = self.table.get(xid)
        return f"XID {xid}" + (f" ({entry[1]})" if entry else "")

    def with_ignored(self, xids: Iterable[int]) -> XidPolicy:
        """A copy that treats ``xids`` as application errors (an operator's override)."""
        table = dict(self.table)
        for x in xids:
            table[x] = (XidClass.APPLICATION, table.get(x, (XidClass.APPLICATION, "ignored by config"))[1])
        return XidPolicy(table=table, unknown=self.unknown)


class Clock(Protocol):
    def monotonic(self) -> float: ...


class MonotonicClock:
    def monotonic(self) -> float:
        return time.monotonic()


@dataclass
class _State:
    healthy: bool = True
    reason: str = ""
    next_probe: float = 0.0
    backoff: float = 0.0


class HealthMonitor:
    """Tracks which GPUs are healthy. ``step`` does one round; ``start`` runs it on a thread."""

    def __init__(
        self,
        nvml: Nvml,
        gpus: list[GpuInfo],
        policy: XidPolicy | None = None,
        clock: Clock | None = None,
        backoff_s: float = 10.0,
        max_backoff_s: float = 300.0,
        poll_interval_s: float = 5.0,
        on_change: Callable[[], None] | None = None,
        events_retry_s: float = 60.0,
    ) -> None:
        self._nvml = nvml
        self._gpus = list(gpus)
        self.policy = policy or XidPolicy()
        self._clock = clock or MonotonicClock()
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._poll_interval_s = poll_interval_s
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = {g.uuid: _State() for g in self._gpus}
        self._events: EventSet | None = None
        self._registered: frozenset[str] = frozenset()  # GPUs the event set covers
        self._events_retry_s = events_retry_s
        self._events_retry_at = 0.0
        self._said_polling = False
        self._next_poll = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- queries --------------------------------------------------------------------------------

    def is_healthy(self, uuid: str) -> bool:
        with self._lock:
            st = self._state.get(uuid)
            return st is not None and st.healthy

    def healthy(self) -> set[str]:
        with self._lock:
            return {u for u, st in self._state.items() if st.healthy}

    def unhealthy(self) -> dict[str, str]:
        """Unhealthy uuid -> why."""
        with self._lock:
            return {u: st.reason for u, st in self._state.items() if not st.healthy}

    @property
    def polling(self) -> bool:
        """True when the driver gave no XID events and health comes from polling ``probe``."""
        self._open_events()
        return self._events is None

    # -- transitions ----------------------------------------------------------------------------

    def mark_unhealthy(self, uuid: str, reason: str) -> bool:
        with self._lock:
            st = self._state.get(uuid)
            if st is None or not st.healthy:
                return False
            st.healthy, st.reason = False, reason
            st.backoff = self._backoff_s
            st.next_probe = self._clock.monotonic() + st.backoff
        log.warning("GPU %s marked unhealthy: %s", uuid, reason)
        return True

    def handle_event(self, event: XidEvent) -> bool:
        if not self.policy.marks_unhealthy(event.xid):
            log.info("GPU %s: %s is an application error; device stays healthy", event.uuid, event.xid)
            return False
        targets = [event.uuid] if event.uuid is not None else list(self._state)
        changed = False
        for uuid in targets:
            changed |= self.mark_unhealthy(uuid, self.policy.describe(event.xid))
        return changed

    def reprobe_due(self) -> bool:
        """Probe unhealthy GPUs whose back-off ran out; readmit those that answer."""
        now = self._clock.monotonic()
        with self._lock:
            due = [u for u, st in self._state.items() if not st.healthy and st.next_probe <= now]
        changed = False
        for uuid in due:
            ok = self._nvml.probe(uuid)
            with self._lock:
                st = self._state[uuid]
                if ok:
                    st.healthy, st.reason, st.backoff = True, "", 0.0
                    changed = True
                    log.info("GPU %s is healthy again", uuid)
                else:
                    st.backoff = min(self._max_backoff_s, st.backoff * 2 or self._backoff_s)
                    st.next_probe = now + st.backoff
        return changed

    def poll_once(self) -> bool:
        """The fallback when XID events are unsupported: a GPU that stops answering is unhealthy."""
        changed = False
        for uuid in sorted(self.healthy()):
            if not self._nvml.probe(uuid):
                changed |= self.mark_unhealthy(uuid, "device does not answer NVML queries")
        return changed

    def step(self, timeout_s: float = 0.0) -> bool:
        """One round: drain XID events (waiting up to ``timeout_s``) or poll, then re-probe."""
        changed = self._open_events()
        if self._events is not None:
            event = self._events.wait(timeout_s)
            while event is not None:
                changed |= self.handle_event(event)
                event = self._events.wait(0)
        elif self._clock.monotonic() >= self._next_poll:
            changed |= self.poll_once()
            self._next_poll = self._clock.monotonic() + self._poll_interval_s
        changed |= self.reprobe_due()
        if changed and self._on_change is not None:
            self._on_change()
        return changed

    def _open_events(self) -> bool:
        """Keep an XID event set over every healthy GPU; True if draining a replaced set changed health.

        Registration fails while a GPU is lost (it no longer answers), or where the driver has no
        events at all; then health is polled and registration is retried every
        ``events_retry_s``, so one lost GPU does not leave the others without XID events for good.
        A GPU that comes back healthy is added by registering a new set (then closing the old).
        """
        healthy = self.healthy()
        if self._events is not None and healthy <= self._registered:
            return False
        now = self._clock.monotonic()
        if now < self._events_retry_at:
            return False
        gpus = [g for g in self._gpus if g.uuid in healthy]
        try:
            events = self._nvml.event_set([g.index for g in gpus])
        except EventsUnsupportedError as e:
            self._events_retry_at = now + self._events_retry_s
            if self._events is None and not self._said_polling:
                self._said_polling = True
                log.info("XID events unsupported (%s); polling device health instead", e)
            return False
        old, self._events, self._registered = self._events, events, frozenset(g.uuid for g in gpus)
        changed = False
        if old is not None:  # what the old set still holds is not lost with it
            event = old.wait(0)
            while event is not None:
                changed |= self.handle_event(event)
                event = old.wait(0)
            old.close()
        return changed

    # -- the loop -------------------------------------------------------------------------------

    def start(self, tick_s: float = 1.0) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(tick_s,), name="gpu-health", daemon=True)
        self._thread.start()

    def _run(self, tick_s: float) -> None:
        while not self._stop.is_set():
            try:
                self.step(timeout_s=tick_s)
            except Exception:  # keep watching: a failed round must not stop health checking
                log.exception("GPU health round failed")
                self._stop.wait(tick_s)
                continue
            if self._events is None:
                self._stop.wait(tick_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._events is not None:
            self._events.close()
            self._events = None
            self._registered = frozenset()
            self._events_retry_at = 0.0
