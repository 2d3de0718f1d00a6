"""The key-value port under kray's object store: etcd v3 semantics, async.

``EtcdKV`` (etcd over gRPC) is the real implementation; ``MemoryKV`` is the in-package
fake with the same semantics (one global revision, mod/create revisions, watch history,
compaction, leases) for fast unit tests. Both are tested by the same contract tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable


class StoreError(Exception):
    """Base of every store error."""


class KeyExistsError(StoreError):
    """create() found the key already present."""


class KeyNotFoundError(StoreError):
    """The key is absent (get/update/delete)."""


class RevisionConflictError(StoreError):
    """A compare-and-swap failed: the key's mod revision is not the one expected."""

    def __init__(self, message: str, current_revision: int = 0) -> None:
        super().__init__(message)
        self.current_revision = current_revision


class CompactedError(StoreError):
    """A watch or read asked for a revision older than the compacted one ("too old")."""

    def __init__(self, message: str, compact_revision: int = 0) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


class LeaseNotFoundError(StoreError):
    """A put named a lease that does not exist (expired or revoked)."""


class StoreUnavailableError(StoreError):
    """The backing store cannot be reached."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class KVEvent:
    type: Literal["PUT", "DELETE"]
    kv: KeyValue  # for DELETE: key and mod_revision (the delete's revision); value empty
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class Compare:
    """One guard of a multi-key transaction: ``key``'s mod revision equals ``mod_revision``.

    ``mod_revision=0`` means "the key is absent" (etcd compares a missing key as all zeros).
    """

    key: str
    mod_revision: int


@runtime_checkable
class KV(Protocol):
    """etcd-shaped key-value store. Revisions are global and strictly increasing."""

    async def get(self, key: str) -> KeyValue | None: ...

    async def get_many(self, keys: Sequence[str]) -> list[KeyValue | None]:
        """Several keys (None: absent) in as few round trips as the store allows (etcd: one per
        128 keys, each at one revision)."""
        ...

    async def range(self, prefix: str, *, revision: int = 0, limit: int = 0) -> tuple[list[KeyValue], int]:
        """All keys under ``prefix`` (sorted by key) and the store revision they were read at."""
        ...

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Put only if absent; returns the new revision. Raises KeyExistsError."""
        ...

    async def update(self, key: str, value: bytes, *, expected_mod_revision: int, lease: int = 0) -> int:
        """Put only if the key's mod revision matches. Raises KeyNotFoundError/RevisionConflictError."""
        ...

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Unconditional put (used by leases/heartbeats and benchmarks, never for objects)."""
        ...

    async def delete(self, key: str, *, expected_mod_revision: int = 0) -> tuple[int, KeyValue]:
        """Delete (only if the mod revision matches, when given); returns (revision, previous kv)."""
        ...

    async def txn(
        self, compares: Sequence[Compare], puts: Sequence[tuple[str, bytes]] = (), deletes: Sequence[str] = ()
    ) -> int:
        """All ``compares`` hold -> apply every put and delete at one new revision, atomically.

        Returns the new revision. Raises RevisionConflictError (current_revision: the first
        failing key's mod revision, 0 if absent) and changes nothing when any compare fails.
        Deleting an absent key is a no-op. Used for writes spanning several objects (bindings).
        """
        ...

    def watch(self, prefix: str, *, start_revision: int) -> AsyncIterator[list[KVEvent]]:
        """Batches of events under ``prefix`` from ``start_revision`` (inclusive), in revision order.

        Resumes by itself after a dropped connection without losing or repeating events.
        Raises CompactedError if ``start_revision`` has been compacted away.
        """
        ...

    async def count(self, prefix: str) -> int:
        """How many keys are under ``prefix`` (cheap: no values are read)."""
        ...

    async def current_revision(self) -> int: ...

    async def compact(self, revision: int) -> None: ...

    async def grant_lease(self, ttl_seconds: int) -> int: ...

    async def keepalive(self, lease_id: int) -> int:
        """Refresh a lease once; returns the remaining TTL (0 or less: the lease is gone)."""
        ...

    async def revoke_lease(self, lease_id: int) -> None: ...

    async def close(self) -> None: ...
