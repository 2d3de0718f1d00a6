"""Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does it.

Every candidate reads the Lease and writes it back with the resourceVersion it read
(optimistic concurrency), so two candidates can never both win the same round:

- acquire when the Lease is free (no holder) or expired: not renewed for
  ``lease_duration`` as *observed locally* (clock skew between hosts does not matter);
- the leader renews every ``retry_period``; if it cannot renew for ``renew_deadline`` it
  steps down (``renew_deadline < lease_duration``, so it stops before anyone can take over);
- on a clean stop the leader releases the Lease (empty holder) so a successor need not wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from kray.crds.core import Lease, LeaseSpec
from kray.crds.meta import ObjectMeta

from .ports import Clock, SystemClock, Writer

log = logging.getLogger(__name__)

Callback = Callable[[], Awaitable[None] | None]


class LeaderElector:
    def __init__(
        self,
        writer: Writer,
        name: str,
        namespace: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Clock | None = None,
        on_started_leading: Callback | None = None,
        on_stopped_leading: Callback | None = None,
        on_new_leader: Callable[[str], None] | None = None,
        release_on_cancel: bool = True,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self.writer = writer
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock: Clock = clock or SystemClock()
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.on_new_leader = on_new_leader
        self.release_on_cancel = release_on_cancel
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0  # local monotonic time it was first seen
        self._leader = False
        self.current_holder = ""

    @property
    def is_leader(self) -> bool:
        return self._leader

    # ---- one round ----

    async def try_acquire_or_renew(self) -> bool:
        """Read the Lease and take or renew it if allowed; True if we hold it afterwards."""
        from kray.client.errors import AlreadyExists, Conflict, NotFound

        now, mono = self.clock.now(), self.clock.monotonic()
        try:
            lease: Lease = await self.writer.get(Lease, self.name, self.namespace)
        except NotFound:
            fresh = Lease(
                metadata=ObjectMeta(name=self.name, namespace=self.namespace),
                spec=LeaseSpec(
                    holder_identity=self.identity,
                    lease_duration_seconds=max(1, round(self.lease_duration)),
                    acquire_time=now,
                    renew_time=now,
                    lease_transitions=0,
                ),
            )
            try:
                await self.writer.create(fresh)
            except (AlreadyExists, Conflict):
                return False
            self._observe(self.identity, str(now), mono)
            return True

        spec = lease.spec
        holder = spec.holder_identity or ""
        self._observe(holder, str(spec.renew_time), mono)
        duration = spec.lease_duration_seconds or self.lease_duration
        if holder and holder != self.identity and mono < self._observed_at + duration:
            return False  # held by someone else and not expired (as far as we have seen)

        new = lease.model_copy(deep=True)
        if holder != self.identity:
            new.spec.acquire_time = now
            new.spec.lease_transitions = (spec.lease_transitions or 0) + 1
        new.spec.holder_identity = self.identity
        new.spec.lease_duration_seconds = max(1, round(self.lease_duration))
        new.spec.renew_time = now
        try:
            await self.writer.update(new)  # carries the resourceVersion read: a CAS
        except (Conflict, NotFound):
            return False
        self._observe(self.identity, str(now), mono)
        return True

    def _observe(self, holder: str, renew: str, mono: float) -> None:
        if self._observed != (holder, renew):
            self._observed = (holder, renew)
            self._observed_at = mono
        if holder != self.current_holder:
            self.current_holder = holder
            if self.on_new_leader and holder:
                try:
                    self.on_new_leader(holder)
                except Exception:
                    log.exception("on_new_leader callback failed")

    async def _attempt(self) -> bool:
        try:
            return await self.try_acquire_or_renew()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the API server is down, etc.: counts as a failed round
            log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            return False

    async def release(self) -> None:
        """Give the Lease up (empty holder) if we hold it."""
        from kray.client.errors import Conflict, NotFound

        try:
            lease: Lease = await self.writer.get(Lease, self.name, self.namespace)
            if lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            lease.spec.renew_time = self.clock.now()
            await self.writer.update(lease)
        except (Conflict, NotFound):
            pass

    # ---- the loop ----

    async def run(self) -> None:
        """Campaign, lead, and campaign again after losing; until cancelled."""
        try:
            while True:
                while not await self._attempt():
                    await self.clock.sleep(self.retry_period)
                await self._lead()
        finally:
            if self._leader:
                self._leader = False
                if self.release_on_cancel:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self.release())
                await self._callback(self.on_stopped_leading)

    async def _lead(self) -> None:
        self._leader = True
        log.info("%s became the leader of %s/%s", self.identity, self.namespace, self.name)
        await self._callback(self.on_started_leading)
        last_renew = self.clock.monotonic()
        while True:
            await self.clock.sleep(self.retry_period)
            if await self._attempt():
                last_renew = self.clock.monotonic()
            elif self.clock.monotonic() - last_renew >= self.renew_deadline:
                break
        self._leader = False
        log.warning("%s lost the lease %s/%s", self.identity, self.namespace, self.name)
        await self._callback(self.on_stopped_leading)

    @staticmethod
    async def _callback(fn: Callback | None) -> None:
        if fn is None:
            return
        try:
            result: Any = fn()
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            log.exception("leader election callback failed")
