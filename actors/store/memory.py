"""In-memory fake of the KV port with etcd's semantics, for fast unit tests.

It mirrors etcd v3 closely enough that the same contract tests pass against both: one global
revision (starting at 1 for an empty store, like etcd), create/mod revision and version per
key, compare-and-swap, a history of events for watches (so a watch can start in the past),
compaction, range at a past revision, and leases whose expiry is driven by an injectable
clock. Everything runs on one asyncio loop; mutations never await, so each is atomic.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from .kv import (
    CompactedError,
    Compare,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    KVEvent,
    LeaseNotFoundError,
    RevisionConflictError,
    StoreError,
)

# A watcher hands over at most this many events per batch, so one slow consumer of a huge
# backlog still sees progress in bounded chunks (etcd fragments large responses similarly).
MAX_BATCH = 1000


@dataclass
class _Lease:
    id: int
    ttl: int
    deadline: float
    keys: set[str] = field(default_factory=set)


class MemoryKV:
    """The KV port in memory. ``clock`` (seconds, monotonic) drives lease expiry.

    Expired leases are reaped at the start of every operation and by a background task that
    runs every ``reap_interval`` seconds while leases exist; with a fake clock, advance it and
    call :meth:`expire_leases` (or any operation) to make expiry happen deterministically.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, reap_interval: float = 0.1) -> None:
        self._clock = clock
        self._reap_interval = reap_interval
        self._data: dict[str, KeyValue] = {}
        self._keys: list[str] = []  # sorted, so a prefix range is two bisects
        self._revision = 1  # etcd's first revision of an empty store
        self._compacted = 0
        # History of every event since the compaction point; _history_revs mirrors the
        # revisions for bisecting (several events may share one revision, e.g. lease expiry).
        self._history: list[KVEvent] = []
        self._history_revs: list[int] = []
        self._leases: dict[int, _Lease] = {}
        self._next_lease = 0x1000
        # Swapped for a fresh Event on every change: waiters hold the old one, which is set.
        self._changed = asyncio.Event()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    # ---- internal mutation helpers (synchronous: atomic under asyncio) ----

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _record(self, event: KVEvent) -> None:
        self._history.append(event)
        self._history_revs.append(event.kv.mod_revision)

    def _put_at(self, key: str, value: bytes, lease: int, revision: int) -> None:
        if lease and lease not in self._leases:
            raise LeaseNotFoundError(f"lease {lease:x} not found")
        prev = self._data.get(key)
        if prev is None:
            kv = KeyValue(key, value, revision, revision, 1, lease)
            bisect.insort(self._keys, key)
        else:
            kv = KeyValue(key, value, prev.create_revision, revision, prev.version + 1, lease)
            if prev.lease and prev.lease != lease and prev.lease in self._leases:
                self._leases[prev.lease].keys.discard(key)
        if lease:
            self._leases[lease].keys.add(key)
        self._data[key] = kv
        self._record(KVEvent("PUT", kv, prev))

    def _delete_at(self, key: str, revision: int) -> KeyValue:
        prev = self._data.pop(key)
        del self._keys[bisect.bisect_left(self._keys, key)]
        if prev.lease and prev.lease in self._leases:
            self._leases[prev.lease].keys.discard(key)
        self._record(KVEvent("DELETE", KeyValue(key, b"", 0, revision, 0), prev))
        return prev

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("MemoryKV is closed")
        self.expire_leases()

    # ---- reads ----

    async def get(self, key: str) -> KeyValue | None:
        self._check_open()
        return self._data.get(key)

    async def get_many(self, keys: Sequence[str]) -> list[KeyValue | None]:
        self._check_open()
        return [self._data.get(k) for k in keys]

    def _key_slice(self, prefix: str) -> list[str]:
        lo = bisect.bisect_left(self._keys, prefix)
        hi = bisect.bisect_left(self._keys, prefix_end(prefix)) if prefix else len(self._keys)
        return self._keys[lo:hi]

    async def range(self, prefix: str, *, revision: int = 0, limit: int = 0) -> tuple[list[KeyValue], int]:
        self._check_open()
        if revision and revision != self._revision:
            items = self._range_at(prefix, revision)
            read_at = revision
        else:
            items = [self._data[k] for k in self._key_slice(prefix)]
            read_at = self._revision
        return (items[:limit] if limit else items), read_at

    def _range_at(self, prefix: str, revision: int) -> list[KeyValue]:
        """Rebuild the state at ``revision`` by undoing later events (tests only; O(history))."""
        if revision < self._compacted:
            raise CompactedError(f"revision {revision} has been compacted", self._compacted)
        if revision > self._revision:
            raise StoreError(f"revision {revision} is a future revision (current {self._revision})")
        state = {k: self._data[k] for k in self._key_slice(prefix)}
        start = bisect.bisect_right(self._history_revs, revision)
        for event in reversed(self._history[start:]):
            if not event.kv.key.startswith(prefix):
                continue
            if event.prev_kv is None:
                state.pop(event.kv.key, None)
            else:
                state[event.kv.key] = event.prev_kv
        return [state[k] for k in sorted(state)]

    async def count(self, prefix: str) -> int:
        self._check_open()
        return len(self._key_slice(prefix))

    async def current_revision(self) -> int:
        self._check_open()
        return self._revision

    # ---- writes ----

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> int:
        self._check_open()
        if key in self._data:
            raise KeyExistsError(f"key {key!r} already exists")
        return self._write(lambda rev: self._put_at(key, value, lease, rev))

    async def update(self, key: str, value: bytes, *, expected_mod_revision: int, lease: int = 0) -> int:
        self._check_open()
        self._expect(key, expected_mod_revision)
        return self._write(lambda rev: self._put_at(key, value, lease, rev))

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        self._check_open()
        return self._write(lambda rev: self._put_at(key, value, lease, rev))

    async def delete(self, key: str, *, expected_mod_revision: int = 0) -> tuple[int, KeyValue]:
        self._check_open()
        self._expect(key, expected_mod_revision)
        prev: list[KeyValue] = []
        rev = self._write(lambda r: prev.append(self._delete_at(key, r)))
        return rev, prev[0]

    async def txn(
        self, compares: Sequence[Compare], puts: Sequence[tuple[str, bytes]] = (), deletes: Sequence[str] = ()
    ) -> int:
        self._check_open()
        for c in compares:
            current = self._data.get(c.key)
            mod = current.mod_revision if current is not None else 0
            if mod != c.mod_revision:
                raise RevisionConflictError(f"key {c.key!r} is at revision {mod}, not {c.mod_revision}", mod)

        def apply(rev: int) -> None:
            for key, value in puts:
                self._put_at(key, value, 0, rev)
            for key in deletes:
                if key in self._data:
                    self._delete_at(key, rev)

        return self._write(apply)

    def _expect(self, key: str, expected_mod_revision: int) -> None:
        current = self._data.get(key)
        if current is None:
            raise KeyNotFoundError(f"key {key!r} not found")
        if expected_mod_revision and current.mod_revision != expected_mod_revision:
            raise RevisionConflictError(
                f"key {key!r} is at revision {current.mod_revision}, not {expected_mod_revision}",
                current.mod_revision,
            )

    def _write(self, apply: Callable[[int], object]) -> int:
        revision = self._revision + 1
        apply(revision)  # may raise (unknown lease) before anything changed
        self._revision = revision
        self._notify()
        return revision

    async def compact(self, revision: int) -> None:
        self._check_open()
        if revision <= self._compacted:
            raise CompactedError(f"revision {revision} has already been compacted", self._compacted)
        if revision > self._revision:
            raise StoreError(f"revision {revision} is a future revision (current {self._revision})")
        self._compacted = revision
        # Events at `revision` itself stay: a watch from the compact revision is still valid.
        cut = bisect.bisect_left(self._history_revs, revision)
        del self._history[:cut]
        del self._history_revs[:cut]
        self._notify()  # lagging watchers must notice they were compacted away

    # ---- watch ----

    async def watch(self, prefix: str, *, start_revision: int) -> AsyncIterator[list[KVEvent]]:
        self._check_open()
        # Like etcd, 0 means "from the next revision on".
        next_rev = start_revision if start_revision > 0 else self._revision + 1
        while True:
            if next_rev < self._compacted:
                raise CompactedError(
                    f"required revision {next_rev} has been compacted (at {self._compacted})",
                    self._compacted,
                )
            if self._closed:
                return
            changed = self._changed
            start = bisect.bisect_left(self._history_revs, next_rev)
            batch: list[KVEvent] = []
            i = start
            while i < len(self._history) and len(batch) < MAX_BATCH:
                event = self._history[i]
                if event.kv.key.startswith(prefix):
                    batch.append(event)
                i += 1
            if i > start:
                # Never split one revision across the batch limit's cut.
                while i < len(self._history) and self._history_revs[i] == self._history_revs[i - 1]:
                    if self._history[i].kv.key.startswith(prefix):
                        batch.append(self._history[i])
                    i += 1
                next_rev = self._history_revs[i - 1] + 1
            if batch:
                yield batch
                continue
            next_rev = max(next_rev, self._revision + 1)
            await changed.wait()

    # ---- leases ----

    async def grant_lease(self, ttl_seconds: int) -> int:
        self._check_open()
        self._next_lease += 1
        lease_id = self._next_lease
        self._leases[lease_id] = _Lease(lease_id, ttl_seconds, self._clock() + ttl_seconds)
        self._ensure_reaper()
        return lease_id

    async def keepalive(self, lease_id: int) -> int:
        self._check_open()
        lease = self._leases.get(lease_id)
        if lease is None:
            return 0
        lease.deadline = self._clock() + lease.ttl
        return lease.ttl

    async def revoke_lease(self, lease_id: int) -> None:
        self._check_open()
        self._revoke(lease_id)

    def _revoke(self, lease_id: int) -> None:
        lease = self._leases.pop(lease_id, None)
        if lease is None or not lease.keys:
            return
        # All of a lease's keys go in one revision, as etcd deletes them in one transaction.
        keys = sorted(k for k in lease.keys if k in self._data)
        lease.keys.clear()
        if keys:
            self._write(lambda rev: [self._delete_at(k, rev) for k in keys])

    def expire_leases(self) -> None:
        """Revoke every lease whose deadline has passed on the injected clock."""
        now = self._clock()
        for lease_id in [i for i, lease in self._leases.items() if lease.deadline <= now]:
            self._revoke(lease_id)

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        while self._leases and not self._closed:
            await asyncio.sleep(self._reap_interval)
            self.expire_leases()

    async def close(self) -> None:
        self._closed = True
        self._notify()  # wake watchers so their iterators end
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper


def prefix_end(prefix: str) -> str:
    """The smallest string above every string that starts with ``prefix`` (etcd's range_end).

    Code-point order of str equals byte order of UTF-8, so this agrees with etcd's ordering.
    """
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


__all__ = ["MemoryKV", "prefix_end"]
