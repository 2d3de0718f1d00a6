"""The kubelet's exec endpoint: ``/exec/{ns}/{pod}/{container}?command=...&stdin=...`` as a WebSocket.

Kubernetes' channel protocol (``kray.client.channels``) on one side, the runtime's ``ExecStream``
on the other: stdin messages become stdin requests (``[255, 0]`` closes stdin, as does the client
leaving), the command's output goes out on stdout/stderr as it comes, and the exit code ends it
as a Status on the error channel. The API server's ``pods/{name}/exec`` relays to here.

With ``tty=true`` the command runs on a terminal: its output (one stream) comes on stdout, and
resize messages (channel 4, ``{"Width": 80, "Height": 24}`` as kubectl sends them) size it. The
runtime is asked to run the command only once the client's first size arrived (kubectl sends it
first thing) or ``FIRST_SIZE_WAIT_S`` passed, so the command starts on a sized terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from kray.client import channels
from kray.runtime.cri import api_pb2 as pb

from .ports import CONTAINER_NAME, POD_UID

if TYPE_CHECKING:
    from .kubelet import Kubelet

log = logging.getLogger(__name__)

FIRST_SIZE_WAIT_S = 1.0


def _true(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true")


async def _container_id(kubelet: Kubelet, namespace: str, pod_name: str, container: str) -> str:
    pod = kubelet.find_pod(namespace, pod_name)
    if pod is None:
        raise LookupError(f"pod {namespace}/{pod_name} not found on this node")
    sel = {POD_UID: pod.metadata.uid or "", CONTAINER_NAME: container}
    items = await kubelet.cri.list_containers(pb.ContainerFilter(label_selector=sel))
    running = [c for c in items if c.state == pb.CONTAINER_RUNNING]
    if not running:
        raise LookupError(f'unable to upgrade connection: container not found ("{container}") or not running')
    return str(max(running, key=lambda c: c.metadata.attempt).id)


async def _send(ws: WebSocket, channel: int, data: bytes) -> None:
    await ws.send_bytes(bytes([channel]) + data)


def exec_route(kubelet: Kubelet) -> WebSocketRoute:
    async def container_exec(ws: WebSocket) -> None:
        protocol = channels.choose(ws.headers.get("sec-websocket-protocol", ""))
        if protocol is None:
            await ws.close(code=1002)  # before accept: the client gets an HTTP 403
            return
        await ws.accept(subprotocol=protocol)
        p, q = ws.path_params, ws.query_params
        command, want_stdin, tty = q.getlist("command"), _true(q.get("stdin")), _true(q.get("tty"))
        try:
            if not command:
                raise LookupError("you must specify at least one command for the container")
            cid = await _container_id(kubelet, p["namespace"], p["pod"], p["container"])
        except LookupError as exc:
            await _send(ws, channels.ERROR, json.dumps(channels.failure(str(exc), 400, "BadRequest")).encode())
            await ws.close()
            return
        stdin: asyncio.Queue[pb.ExecStreamRequest | None] = asyncio.Queue()
        first_size: asyncio.Future[pb.TerminalSize | None] = asyncio.get_running_loop().create_future()

        async def requests() -> AsyncIterator[pb.ExecStreamRequest]:
            size = None
            if tty:  # the client's first size, if it comes soon: the command starts that big
                with contextlib.suppress(TimeoutError):
                    size = await asyncio.wait_for(asyncio.shield(first_size), FIRST_SIZE_WAIT_S)
            yield pb.ExecStreamRequest(container_id=cid, cmd=command, stdin=want_stdin, tty=tty, resize=size)
            while (req := await stdin.get()) is not None:
                yield req

        def no_first_size() -> None:
            if not first_size.done():
                first_size.set_result(None)

        async def read_client() -> None:
            """Client messages to stdin and resize requests; its leaving closes stdin."""
            try:
                while True:
                    data = await ws.receive_bytes()
                    if data[:1] == bytes([channels.RESIZE]) and tty:
                        wh = channels.terminal_size(data[1:])
                        size = pb.TerminalSize(width=wh[0], height=wh[1]) if wh else None
                        if size is None:
                            log.debug("exec %s: ignored resize message %r", command, data[1:200])
                        elif not first_size.done():
                            first_size.set_result(size)
                        else:
                            await stdin.put(pb.ExecStreamRequest(resize=size))
                        continue
                    no_first_size()  # anything else first: the client sends no size before it
                    if data[:1] == bytes([channels.STDIN]) and len(data) > 1:
                        await stdin.put(pb.ExecStreamRequest(stdin_data=data[1:]))
                    elif data[:2] == bytes([channels.CLOSE, channels.STDIN]):
                        await stdin.put(pb.ExecStreamRequest(stdin_closed=True))
            except (WebSocketDisconnect, RuntimeError, KeyError):
                pass
            finally:
                no_first_size()
                await stdin.put(pb.ExecStreamRequest(stdin_closed=True))
                await stdin.put(None)

        reader = asyncio.create_task(read_client())
        outputs = kubelet.cri.exec_stream(requests())
        status: dict[str, Any] = channels.failure("the runtime ended the exec without an exit code")
        try:
            async for out in outputs:
                if out.stdout:
                    await _send(ws, channels.STDOUT, out.stdout)
                if out.stderr:
                    await _send(ws, channels.STDERR, out.stderr)
                if out.exited:
                    status = channels.exit_status(out.exit_code, command)
            await _send(ws, channels.ERROR, json.dumps(status).encode())
            await ws.close()
        except WebSocketDisconnect:
            pass  # the client left: closing `outputs` below cancels the RPC and ends the command
        except Exception as exc:  # the runtime refused or failed: say why on the error channel
            details = getattr(exc, "details", None)
            message = details() if callable(details) else str(exc)
            with contextlib.suppress(Exception):
                await _send(ws, channels.ERROR, json.dumps(channels.failure(f"exec {command}: {message}")).encode())
                await ws.close()
        finally:
            await outputs.aclose()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    return WebSocketRoute("/exec/{namespace}/{pod}/{container}", container_exec)
