"""EtcdKV: the KV port over etcd v3's gRPC API, async (grpc.aio), with kray's own stubs.

Why our own client: the maintained Python etcd clients are either synchronous with a watch
thread (python3-etcd3) or async without watch resumption (aetcd), and both register the same
protobuf symbols as each other. Ours is a thin layer over generated stubs (``etcdpb/``) that
does exactly what the store needs: CAS through Txn, watches that survive a dropped stream
without losing or repeating events, and leases. ``scripts/bench_etcd_clients.py`` compares.

The pure translation to and from etcd's messages (key ranges, KeyValue/Event conversion, gRPC
error mapping, the Compare/RequestOp pieces of guarded txns) lives in ``etcd_wire``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio

from .etcd_wire import (
    absent_compare,
    event_from_pb,
    guard_compare,
    guard_failure,
    key_range,
    key_value_from_pb,
    map_grpc_error,
    mod_revision_compare,
    parse_endpoint,
    put_op,
    read_key_op,
)
from .etcdpb import rpc_pb2, rpc_pb2_grpc
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
    StoreUnavailableError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Watch reconnect back-off: fast first retry (a restarted etcd is back within a second),
# capped so a long outage does not spin.
_BACKOFF_START = 0.05
_BACKOFF_MAX = 2.0
_MAX_TXN_OPS = 128  # etcd's default --max-txn-ops
_CHANNEL_OPTIONS = [
    # Detect a silently dead connection (no RST) within ~15 s; etcd's default minimum ping
    # interval is 5 s, so 10 s pings are never rejected as abusive.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # After an etcd restart, reconnect within ~2 s instead of gRPC's default (up to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),  # a full list of a big prefix
    ("grpc.max_send_message_length", 8 * 1024 * 1024),
]


class EtcdKV:
    """The KV port on etcd. ``endpoint``: "http://host:port", or several comma-separated."""

    def __init__(self, endpoint: str, *, timeout: float = 10.0) -> None:
        self._targets = [parse_endpoint(e) for e in endpoint.split(",") if e.strip()]
        if not self._targets:
            raise ValueError(f"no etcd endpoint in {endpoint!r}")
        self.timeout = timeout
        self._index = 0
        # Like etcd's clientv3, calls wait for a connection (up to the timeout) instead of
        # failing at once while etcd restarts. With several endpoints they fail fast instead,
        # so the next endpoint is tried without first waiting out the timeout.
        self._opts: dict[str, Any] = {"timeout": timeout, "wait_for_ready": len(self._targets) == 1}
        self._channel: grpc.aio.Channel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kv_stub: rpc_pb2_grpc.KVStub | None = None
        self._watch_stub: rpc_pb2_grpc.WatchStub | None = None
        self._lease_stub: rpc_pb2_grpc.LeaseStub | None = None

    # ---- channel management ----

    def _ensure_channel(self) -> None:
        # grpc.aio channels belong to the loop they were made on; make one lazily on the
        # running loop (and a new one if the caller moved to another loop, e.g. in tests).
        loop = asyncio.get_running_loop()
        if self._channel is not None and self._loop is loop:
            return
        target, secure = self._targets[self._index]
        if secure:
            self._channel = grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(), _CHANNEL_OPTIONS)
        else:
            self._channel = grpc.aio.insecure_channel(target, _CHANNEL_OPTIONS)
        self._loop = loop
        self._kv_stub = rpc_pb2_grpc.KVStub(self._channel)
        self._watch_stub = rpc_pb2_grpc.WatchStub(self._channel)
        self._lease_stub = rpc_pb2_grpc.LeaseStub(self._channel)

    async def _next_endpoint(self) -> None:
        """Move to the next endpoint (in order, wrapping) after the current one failed."""
        old = self._channel
        self._index = (self._index + 1) % len(self._targets)
        self._channel = None
        if old is not None and self._loop is asyncio.get_running_loop():
            await old.close()

    @property
    def kv_stub(self) -> rpc_pb2_grpc.KVStub:
        self._ensure_channel()
        assert self._kv_stub is not None
        return self._kv_stub

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one unary call; on UNAVAILABLE try the other endpoints once each, in order."""
        for attempt in range(len(self._targets)):
            self._ensure_channel()
            try:
                return await fn()
            except asyncio.TimeoutError:
                raise StoreUnavailableError(f"{what}: etcd did not answer in {self.timeout}s") from None
            except grpc.aio.AioRpcError as err:
                # Only UNAVAILABLE is retried elsewhere: it (nearly always) means no connection,
                # so the request was not applied. A timeout might have been; it is reported.
                last_attempt = attempt == len(self._targets) - 1
                if err.code() != grpc.StatusCode.UNAVAILABLE or last_attempt:
                    raise map_grpc_error(err, what) from err
                await self._next_endpoint()
        raise AssertionError("unreachable")

    async def _range(self, req: rpc_pb2.RangeRequest, what: str) -> rpc_pb2.RangeResponse:
        return await self._call(what, lambda: self.kv_stub.Range(req, **self._opts))

    async def _txn(self, req: rpc_pb2.TxnRequest, what: str) -> rpc_pb2.TxnResponse:
        return await self._call(what, lambda: self.kv_stub.Txn(req, **self._opts))

    # ---- reads ----

    async def get(self, key: str) -> KeyValue | None:
        resp = await self._range(rpc_pb2.RangeRequest(key=key.encode()), f"get {key}")
        return key_value_from_pb(resp.kvs[0]) if resp.kvs else None

    async def get_many(self, keys: Sequence[str]) -> list[KeyValue | None]:
        # Read-only transactions (no compares: the success branch runs), as few as etcd's
        # --max-txn-ops allows: one call instead of one per key, and one revision per chunk.
        chunks = [keys[i : i + _MAX_TXN_OPS] for i in range(0, len(keys), _MAX_TXN_OPS)]
        resps = await asyncio.gather(*(self._read_txn(chunk) for chunk in chunks))
        return [kv for resp in resps for kv in resp]

    async def _read_txn(self, keys: Sequence[str]) -> list[KeyValue | None]:
        ops = [rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=k.encode())) for k in keys]
        resp = await self._txn(rpc_pb2.TxnRequest(success=ops), "get many")
        return [key_value_from_pb(r.response_range.kvs[0]) if r.response_range.kvs else None for r in resp.responses]

    async def range(self, prefix: str, *, revision: int = 0, limit: int = 0) -> tuple[list[KeyValue], int]:
        key, end = key_range(prefix)
        req = rpc_pb2.RangeRequest(key=key, range_end=end, revision=revision, limit=limit)
        resp = await self._range(req, f"range {prefix}")
        return [key_value_from_pb(kv) for kv in resp.kvs], (revision or resp.header.revision)

    async def count(self, prefix: str) -> int:
        key, end = key_range(prefix)
        resp = await self._range(rpc_pb2.RangeRequest(key=key, range_end=end, count_only=True), "count")
        return int(resp.count)

    async def current_revision(self) -> int:
        # Any linearizable read carries the store revision in its header; this key is empty.
        resp = await self._range(rpc_pb2.RangeRequest(key=b"\0", count_only=True), "revision")
        return int(resp.header.revision)

    # ---- writes ----

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> int:
        raw = key.encode()
        req = rpc_pb2.TxnRequest(compare=[absent_compare(raw)], success=[put_op(raw, value, lease)])
        resp = await self._txn(req, f"create {key}")
        if not resp.succeeded:
            raise KeyExistsError(f"key {key!r} already exists")
        return int(resp.header.revision)

    async def update(self, key: str, value: bytes, *, expected_mod_revision: int, lease: int = 0) -> int:
        raw = key.encode()
        req = rpc_pb2.TxnRequest(
            compare=[guard_compare(raw, expected_mod_revision)],
            success=[put_op(raw, value, lease)],
            failure=[read_key_op(raw)],
        )
        resp = await self._txn(req, f"update {key}")
        if not resp.succeeded:
            raise guard_failure(key, expected_mod_revision, resp)
        return int(resp.header.revision)

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        req = rpc_pb2.PutRequest(key=key.encode(), value=value, lease=lease)
        resp = await self._call(f"put {key}", lambda: self.kv_stub.Put(req, **self._opts))
        return int(resp.header.revision)

    async def delete(self, key: str, *, expected_mod_revision: int = 0) -> tuple[int, KeyValue]:
        raw = key.encode()
        req = rpc_pb2.TxnRequest(
            compare=[guard_compare(raw, expected_mod_revision)],
            success=[rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=raw, prev_kv=True))],
            failure=[read_key_op(raw)],
        )
        resp = await self._txn(req, f"delete {key}")
        if not resp.succeeded:
            raise guard_failure(key, expected_mod_revision, resp)
        prev = resp.responses[0].response_delete_range.prev_kvs
        if not prev:  # deleted between the compare and the delete: impossible in one txn
            raise KeyNotFoundError(f"key {key!r} not found")
        return int(resp.header.revision), key_value_from_pb(prev[0])

    async def txn(
        self, compares: Sequence[Compare], puts: Sequence[tuple[str, bytes]] = (), deletes: Sequence[str] = ()
    ) -> int:
        guards = [mod_revision_compare(c.key.encode(), c.mod_revision) for c in compares]
        ops = [put_op(k.encode(), v, 0) for k, v in puts]
        ops += [rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=k.encode())) for k in deletes]
        # On failure read the guarded keys back, to say which one moved.
        reads = [read_key_op(c.key.encode()) for c in compares]
        resp = await self._txn(rpc_pb2.TxnRequest(compare=guards, success=ops, failure=reads), "txn")
        if not resp.succeeded:
            for c, r in zip(compares, resp.responses, strict=False):
                kvs = r.response_range.kvs
                mod = int(kvs[0].mod_revision) if kvs else 0
                if mod != c.mod_revision:
                    raise RevisionConflictError(f"key {c.key!r} is at revision {mod}, not {c.mod_revision}", mod)
            raise RevisionConflictError("txn: a compare failed")
        return int(resp.header.revision)

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix`` (tests and tooling; not part of the KV port)."""
        key, end = key_range(prefix)
        req = rpc_pb2.DeleteRangeRequest(key=key, range_end=end)
        resp = await self._call("delete prefix", lambda: self.kv_stub.DeleteRange(req, **self._opts))
        return int(resp.deleted)

    async def compact(self, revision: int) -> None:
        req = rpc_pb2.CompactionRequest(revision=revision)
        await self._call(f"compact {revision}", lambda: self.kv_stub.Compact(req, **self._opts))

    # ---- leases ----

    def _lease(self) -> rpc_pb2_grpc.LeaseStub:
        self._ensure_channel()
        assert self._lease_stub is not None
        return self._lease_stub

    async def grant_lease(self, ttl_seconds: int) -> int:
        req = rpc_pb2.LeaseGrantRequest(TTL=ttl_seconds)
        resp = await self._call("grant lease", lambda: self._lease().LeaseGrant(req, **self._opts))
        if resp.error:
            raise StoreError(f"grant lease: {resp.error}")
        return int(resp.ID)

    async def keepalive(self, lease_id: int) -> int:
        async def once() -> int:
            # A one-shot stream: send one request, half-close, read the one answer (TTL 0
            # when the lease is gone).
            call = self._lease().LeaseKeepAlive(
                iter([rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)]),
                wait_for_ready=self._opts["wait_for_ready"],
            )
            try:
                async for resp in call:
                    return int(resp.TTL)
                return 0
            finally:
                call.cancel()

        return await self._call(f"keepalive {lease_id:x}", lambda: asyncio.wait_for(once(), self.timeout))

    async def revoke_lease(self, lease_id: int) -> None:
        req = rpc_pb2.LeaseRevokeRequest(ID=lease_id)
        try:
            await self._call("revoke lease", lambda: self._lease().LeaseRevoke(req, **self._opts))
        except LeaseNotFoundError:
            pass  # already expired or revoked: the goal is reached

    async def lease_ttl(self, lease_id: int) -> int:
        """Remaining TTL in seconds (-1 when the lease does not exist)."""
        req = rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id)
        resp = await self._call("lease ttl", lambda: self._lease().LeaseTimeToLive(req, **self._opts))
        return int(resp.TTL)

    # ---- watch ----

    async def watch(self, prefix: str, *, start_revision: int) -> AsyncIterator[list[KVEvent]]:
        """One Watch stream; on a dropped stream, reconnect and resume after the last event."""
        key, end = key_range(prefix)
        next_rev = start_revision if start_revision > 0 else 0
        backoff = _BACKOFF_START
        while True:
            call: Any = None
            try:
                if next_rev == 0:  # "from now": pin it so a reconnect resumes from the same point
                    next_rev = await self.current_revision() + 1
                self._ensure_channel()
                assert self._watch_stub is not None
                call = self._watch_stub.Watch(wait_for_ready=self._opts["wait_for_ready"])
                create = rpc_pb2.WatchCreateRequest(
                    key=key, range_end=end, start_revision=next_rev, prev_kv=True, progress_notify=True
                )
                await call.write(rpc_pb2.WatchRequest(create_request=create))
                async for resp in call:
                    if resp.compact_revision:
                        raise CompactedError(
                            f"watch {prefix} from {next_rev}: compacted at {resp.compact_revision}",
                            int(resp.compact_revision),
                        )
                    if resp.canceled:
                        # e.g. "no leader" during an election: transient, resume like a drop.
                        raise StoreUnavailableError(f"watch {prefix} canceled: {resp.cancel_reason}")
                    if resp.created:
                        backoff = _BACKOFF_START
                        continue
                    if not resp.events:
                        # Progress notification: nothing below header.revision is still due.
                        next_rev = max(next_rev, int(resp.header.revision) + 1)
                        continue
                    batch = [event_from_pb(ev) for ev in resp.events]
                    next_rev = batch[-1].kv.mod_revision + 1
                    yield batch
                log.info("etcd closed the watch on %s; resuming from %d", prefix, next_rev)
            except grpc.aio.AioRpcError as err:
                mapped = map_grpc_error(err, f"watch {prefix}")
                if not isinstance(mapped, StoreUnavailableError):
                    raise mapped from err
                log.warning("watch on %s dropped (%s); resuming from %d", prefix, err.code().name, next_rev)
            except StoreUnavailableError as err:
                log.warning("watch on %s: %s; resuming from %d", prefix, err, next_rev)
            finally:
                if call is not None:
                    call.cancel()
            if len(self._targets) > 1:
                await self._next_endpoint()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    async def status(self) -> rpc_pb2.StatusResponse:
        """Maintenance.Status of the current endpoint (version, db size, leader, revision)."""
        self._ensure_channel()
        assert self._channel is not None
        stub = rpc_pb2_grpc.MaintenanceStub(self._channel)
        return await self._call("status", lambda: stub.Status(rpc_pb2.StatusRequest(), **self._opts))

    async def close(self) -> None:
        if self._channel is not None and self._loop is asyncio.get_running_loop():
            await self._channel.close()
        self._channel = None
