"""kray's object store: the KV port (etcd or in-memory) and the typed ObjectStore on top."""

from .kv import (
    KV,
    CompactedError,
    Compare,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    KVEvent,
    LeaseNotFoundError,
    RevisionConflictError,
    StoreError,
    StoreUnavailableError,
)
from .memory import MemoryKV
from .objects import ObjectStore, WatchEvent

__all__ = [
    "KV",
    "CompactedError",
    "Compare",
    "KVEvent",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyValue",
    "LeaseNotFoundError",
    "MemoryKV",
    "ObjectStore",
    "RevisionConflictError",
    "StoreError",
    "StoreUnavailableError",
    "WatchEvent",
]
