"""The kubelet's HTTP endpoint, which the API server proxies to (Node InternalIP + kubeletEndpoint port).

``GET /containerLogs/{ns}/{pod}/{container}`` with ``follow``, ``tailLines``, ``previous``,
``timestamps`` reads the CRI log files the runtime writes (for ``pods/{name}/log``).
``/exec/{ns}/{pod}/{container}``, a WebSocket, runs a command in the running container
(``execserver.py``, for ``pods/{name}/exec``); ``/portForward/{ns}/{pod}``, a WebSocket, carries
connections to the pod's ports (``portforward.py``, for ``pods/{name}/portforward``);
``GET /stats/summary`` reports node and pod usage (``stats.py``, for ``metrics.k8s.io``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from kray.runtime.cri import api_pb2 as pb
from kray.runtime.logs import LogLine, afollow, read_log

from .execserver import exec_route
from .portforward import portforward_route
from .ports import CONTAINER_NAME, POD_UID
from .stats import StatsProvider

log = logging.getLogger(__name__)


if TYPE_CHECKING:
    from .kubelet import Kubelet


def _fmt(line: LogLine, timestamps: bool) -> bytes:
    if not timestamps:
        return line.content + b"\n"
    secs, ns = divmod(line.time_ns, 1_000_000_000)
    ts = datetime.fromtimestamp(secs, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns:09d}Z"
    return ts.encode() + b" " + line.content + b"\n"


def _flag(v: str | None) -> bool:
    return (v or "").lower() in ("1", "true")


def log_app(kubelet: Kubelet) -> Starlette:
    async def container_logs(request: Request) -> Response:
        p, q = request.path_params, request.query_params
        pod = kubelet.find_pod(p["namespace"], p["pod"])
        if pod is None:
            return PlainTextResponse(f"pod {p['namespace']}/{p['pod']} not found on this node\n", 404)
        sel = {POD_UID: pod.metadata.uid or "", CONTAINER_NAME: p["container"]}
        items = sorted(
            await kubelet.cri.list_containers(pb.ContainerFilter(label_selector=sel)), key=lambda c: c.metadata.attempt
        )
        previous = _flag(q.get("previous"))
        if previous and len(items) < 2:
            msg = f'previous terminated container "{p["container"]}" in pod "{p["pod"]}" not found\n'
            return PlainTextResponse(msg, 400)
        if not items:
            msg = f'container "{p["container"]}" in pod "{p["pod"]}" is waiting to start\n'
            return PlainTextResponse(msg, 400)
        target = items[-2] if previous else items[-1]
        st = await kubelet.cri.container_status(target.id)
        tail = int(q["tailLines"]) if q.get("tailLines", "").lstrip("-").isdigit() else None
        if tail is not None and tail < 0:
            tail = None
        stamps = _flag(q.get("timestamps"))
        if not _flag(q.get("follow")) or previous or st.state == pb.CONTAINER_EXITED:
            try:
                lines = await asyncio.to_thread(read_log, st.log_path, tail)
            except FileNotFoundError:
                lines = []
            return Response(b"".join(_fmt(ln, stamps) for ln in lines), media_type="text/plain")

        exited = asyncio.Event()

        async def watch_exit() -> None:
            while True:
                try:
                    if (await kubelet.cri.container_status(target.id)).state != pb.CONTAINER_RUNNING:
                        break
                except Exception:
                    break
                await asyncio.sleep(0.5)
            exited.set()

        async def stream() -> AsyncIterator[bytes]:
            watcher = asyncio.create_task(watch_exit())
            try:
                async for line in afollow(st.log_path, tail, stop=exited.is_set):
                    yield _fmt(line, stamps)
            finally:
                watcher.cancel()

        return StreamingResponse(stream(), media_type="text/plain")

    provider = StatsProvider(kubelet)

    async def stats_summary(request: Request) -> Response:
        return JSONResponse(await provider.summary())

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/containerLogs/{namespace}/{pod}/{container}", container_logs),
            Route("/stats/summary", stats_summary),
            exec_route(kubelet),
            portforward_route(kubelet),
            Route("/healthz", healthz),
        ]
    )


async def serve_logs(kubelet: Kubelet, host: str, port: int) -> None:
    """Serve the log endpoint with uvicorn until cancelled."""
    import uvicorn

    config = uvicorn.Config(log_app(kubelet), host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    try:
        await server.serve()
    except SystemExit:  # uvicorn exits when it cannot bind: keep the kubelet, say why
        log.error("kubelet log endpoint: cannot listen on %s:%d", host, port)
    finally:
        server.should_exit = True
