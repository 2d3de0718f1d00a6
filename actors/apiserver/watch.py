"""WATCH: newline-delimited JSON events, as kube-apiserver streams them.

The stream reads the KV's watch directly (not the typed ObjectStore watch) for two reasons:
stored JSON can be sent without a decode/encode round trip, and the previous value of each
key is needed to turn "stopped matching the selector" into a DELETED event, as Kubernetes
does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

from kray.actors.store.kv import CompactedError, KVEvent, StoreError
from kray.actors.store.objects import ObjectStore
from kray.crds.meta import Status
from kray.crds.registry import KindInfo

from .lists import Filter, event_line, with_resource_version

# Initial ADDED events are sent in chunks of this many, so a 10k-object start is not one
# giant write and not 10k tiny ones either.
_INITIAL_CHUNK = 500


@dataclass(frozen=True)
class WatchParams:
    resource_version: str | None
    filter: Filter | None
    timeout: float
    bookmarks: bool
    send_initial_events: bool | None
    bookmark_interval: float


def _status_line(code: int, reason: str, message: str) -> bytes:
    status = Status(code=code, reason=reason, message=message)
    return event_line("ERROR", status.model_dump_json(by_alias=True, exclude_none=True).encode())


def _bookmark(info: KindInfo, revision: int, initial_end: bool = False) -> bytes:
    annotations = b',"annotations":{"k8s.io/initial-events-end":"true"}' if initial_end else b""
    obj = b'{"kind":"%s","apiVersion":"%s","metadata":{"resourceVersion":"%d"%s}}' % (
        info.kind.encode(),
        info.api_version.encode(),
        revision,
        annotations,
    )
    return event_line("BOOKMARK", obj)


def _event(ev: KVEvent, flt: Filter | None) -> bytes | None:
    kv = ev.kv
    if ev.type == "PUT":
        if flt is None:
            kind = "ADDED" if kv.create_revision == kv.mod_revision else "MODIFIED"
            return event_line(kind, with_resource_version(kv.value, kv.mod_revision))
        now = flt.matches_json(kv.value)
        before = ev.prev_kv is not None and flt.matches_json(ev.prev_kv.value)
        if not now and not before:
            return None
        # Kubernetes: entering the selection is ADDED, leaving it is DELETED.
        kind = "MODIFIED" if now and before else "ADDED" if now else "DELETED"
        return event_line(kind, with_resource_version(kv.value, kv.mod_revision))
    if ev.prev_kv is None or (flt is not None and not flt.matches_json(ev.prev_kv.value)):
        return None
    return event_line("DELETED", with_resource_version(ev.prev_kv.value, kv.mod_revision))


async def watch_stream(
    store: ObjectStore,
    info: KindInfo,
    namespace: str | None,
    params: WatchParams,
    stopping: asyncio.Event,
) -> AsyncIterator[bytes]:
    """Yield chunks of event lines until timeout, server shutdown, compaction or store failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + params.timeout
    prefix = store.prefix(info, namespace)
    flt = params.filter
    rv = params.resource_version
    if rv in (None, "", "0") and params.send_initial_events is not False:
        try:
            kvs, revision = await store.kv.range(prefix)
        except StoreError as exc:
            yield _status_line(500, "InternalError", f"Internal error occurred: {exc}")
            return
        chunk: list[bytes] = []
        for item in kvs:
            if flt is not None and not flt.matches_json(item.value):
                continue
            chunk.append(event_line("ADDED", with_resource_version(item.value, item.mod_revision)))
            if len(chunk) >= _INITIAL_CHUNK:
                yield b"".join(chunk)
                chunk = []
        if chunk:
            yield b"".join(chunk)
        if params.bookmarks and params.send_initial_events:
            yield _bookmark(info, revision, initial_end=True)
        last = revision
    elif rv in (None, "", "0"):
        last = await store.current_revision()
    else:
        last = int(rv)  # validated by the caller
    events = store.kv.watch(prefix, start_revision=last + 1).__aiter__()
    stop = asyncio.ensure_future(stopping.wait())
    pending: asyncio.Future[list[KVEvent]] | None = None
    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            if pending is None:
                pending = asyncio.ensure_future(events.__anext__())
            wait = min(remaining, params.bookmark_interval) if params.bookmarks else remaining
            waiting: set[asyncio.Future[Any]] = {pending, stop}
            done, _ = await asyncio.wait(waiting, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if stop in done:
                return
            if pending not in done:
                if params.bookmarks:
                    yield _bookmark(info, last)
                continue
            future, pending = pending, None
            try:
                batch = future.result()
            except StopAsyncIteration:
                return
            except CompactedError as exc:
                message = f"too old resource version: {last} ({exc.compact_revision})"
                yield _status_line(410, "Expired", message)
                return
            except StoreError as exc:
                yield _status_line(500, "InternalError", f"Internal error occurred: {exc}")
                return
            out = []
            for ev in batch:
                last = ev.kv.mod_revision
                line = _event(ev, flt)
                if line is not None:
                    out.append(line)
            if out:
                yield b"".join(out)
    finally:
        stop.cancel()
        if pending is not None:
            pending.cancel()
            await asyncio.wait({pending})
        with contextlib.suppress(Exception):
            await events.aclose()  # type: ignore[attr-defined]


class WatchResponse:
    """A chunked streaming response that also notices a client disconnect while idle.

    Starlette's StreamingResponse (on ASGI 2.4 servers) only notices a gone client when it
    next writes; an idle watch would then hold its store watch open until the next event.
    """

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.chunks = chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-cache")],
            }
        )

        async def pump() -> None:
            async for chunk in self.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        pump_task = asyncio.ensure_future(pump())
        listen_task = asyncio.ensure_future(disconnected())
        try:
            done, _ = await asyncio.wait({pump_task, listen_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump_task, listen_task):
                task.cancel()
            await asyncio.wait({pump_task, listen_task})
            with contextlib.suppress(Exception):
                await self.chunks.aclose()  # type: ignore[attr-defined]
        if pump_task in done and not pump_task.cancelled():
            exc = pump_task.exception()
            if exc is not None and not isinstance(exc, OSError):  # OSError: the client went away
                raise exc
