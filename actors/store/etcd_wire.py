"""Translation between the KV port's terms and etcd v3's protobuf messages and gRPC errors.

Split out of ``etcd`` so ``EtcdKV`` there keeps to connections, retries, leases and the watch
stream, while the pure mapping lives here: prefix -> (key, range_end), etcd KeyValue/Event ->
``KeyValue``/``KVEvent``, gRPC status -> ``StoreError``, and the Compare/RequestOp building
blocks of the guarded transactions that implement create/update/delete/txn.
"""

from __future__ import annotations

import grpc
import grpc.aio

from .etcdpb import kv_pb2, rpc_pb2
from .kv import (
    CompactedError,
    KeyNotFoundError,
    KeyValue,
    KVEvent,
    LeaseNotFoundError,
    RevisionConflictError,
    StoreError,
    StoreUnavailableError,
)

# Codes that mean "the store is not reachable right now" (retry elsewhere/later), as opposed
# to a request etcd understood and refused.
TRANSIENT_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.ABORTED,
}


def parse_endpoint(endpoint: str) -> tuple[str, bool]:
    """("host:port", use TLS) from "http://host:port", "https://host:port" or "host:port"."""
    endpoint = endpoint.strip().rstrip("/")
    if endpoint.startswith("https://"):
        return endpoint.removeprefix("https://"), True
    return endpoint.removeprefix("http://"), False


def key_range(prefix: str) -> tuple[bytes, bytes]:
    """etcd's (key, range_end) for "every key starting with prefix"."""
    raw = prefix.encode()
    if not raw:
        return b"\0", b"\0"  # the whole keyspace
    for i in range(len(raw) - 1, -1, -1):
        if raw[i] < 0xFF:
            return raw, raw[:i] + bytes([raw[i] + 1])
    return raw, b"\0"


def key_value_from_pb(pb: kv_pb2.KeyValue) -> KeyValue:
    return KeyValue(pb.key.decode(), pb.value, pb.create_revision, pb.mod_revision, pb.version, pb.lease)


def event_from_pb(pb: kv_pb2.Event) -> KVEvent:
    prev = key_value_from_pb(pb.prev_kv) if pb.HasField("prev_kv") else None
    return KVEvent("DELETE" if pb.type == kv_pb2.Event.DELETE else "PUT", key_value_from_pb(pb.kv), prev)


def map_grpc_error(err: grpc.aio.AioRpcError, what: str) -> StoreError:
    code, details = err.code(), err.details() or ""
    if "compacted" in details:
        return CompactedError(f"{what}: {details}")
    if code == grpc.StatusCode.NOT_FOUND and "lease" in details:
        return LeaseNotFoundError(f"{what}: {details}")
    if code in TRANSIENT_CODES:
        return StoreUnavailableError(f"{what}: etcd unavailable ({code.name}: {details})")
    return StoreError(f"{what}: {code.name}: {details}")


# ---- transaction building blocks ----


def put_op(key: bytes, value: bytes, lease: int) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value, lease=lease))


def read_key_op(key: bytes) -> rpc_pb2.RequestOp:
    """A keys-only read, the failure branch of a guarded txn (to say why the guard failed)."""
    return rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key, keys_only=True))


def absent_compare(key: bytes) -> rpc_pb2.Compare:
    """True while the key does not exist (create_revision == 0)."""
    return rpc_pb2.Compare(key=key, target=rpc_pb2.Compare.CREATE, result=rpc_pb2.Compare.EQUAL, create_revision=0)


def mod_revision_compare(key: bytes, mod_revision: int) -> rpc_pb2.Compare:
    """True while the key's mod_revision is exactly ``mod_revision``."""
    return rpc_pb2.Compare(key=key, target=rpc_pb2.Compare.MOD, result=rpc_pb2.Compare.EQUAL, mod_revision=mod_revision)


def guard_compare(key: bytes, expected_mod_revision: int) -> rpc_pb2.Compare:
    """The guard of update/delete: the expected revision, or (0) just that the key exists."""
    if expected_mod_revision:
        return mod_revision_compare(key, expected_mod_revision)
    # No expectation: the key only has to exist (create_revision > 0).
    return rpc_pb2.Compare(key=key, target=rpc_pb2.Compare.CREATE, result=rpc_pb2.Compare.GREATER, create_revision=0)


def guard_failure(key: str, expected: int, resp: rpc_pb2.TxnResponse) -> StoreError:
    """Turn a failed guarded txn (whose failure branch read the key) into the right error."""
    kvs = resp.responses[0].response_range.kvs if resp.responses else []
    if not kvs:
        return KeyNotFoundError(f"key {key!r} not found")
    current = int(kvs[0].mod_revision)
    return RevisionConflictError(f"key {key!r} is at revision {current}, not {expected}", current)
