"""``pods/{name}/exec`` and ``pods/{name}/portforward`` over WebSockets, relayed to the kubelet.

What kubectl and the official clients speak (``kray.client.channels``): ``v5.channel.k8s.io`` or
``v4.channel.k8s.io``, binary messages led by their channel byte. The API server checks the
request (the pod, its node, the container, a command), opens the same protocol to the kubelet of
the pod's node (``/exec/...``, ``execserver.py``) and copies messages both ways until either side
closes: stdin in, stdout/stderr out as the command writes them, the exit Status last. A request
that cannot be served gets a Failure Status on the error channel that says why.

Port forwarding is relayed the same way to the kubelet's ``/portForward/...``: data and error
channels per port (``kubelet/portforward.py``). A request the API server refuses (no such pod,
bad ports) is answered on every port's error channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from kray.client import channels

from . import errors
from .handlers import Handlers
from .logs import kubelet_url, pick_container

log = logging.getLogger(__name__)

_PASS = ("stdin", "stdout", "stderr", "tty")


def failure_status(exc: errors.ApiError) -> dict[str, Any]:
    status: dict[str, Any] = exc.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    status.pop("kind", None)  # the error channel carries a bare Status body, as the kubelet sends it
    status.pop("apiVersion", None)
    return status


class PodExec:
    def __init__(self, handlers: Handlers, registry: Any) -> None:
        self.handlers = handlers
        self.registry = registry
        self.kubelet_base: str | None = None  # tests: the kubelet's URL, whatever the Node says

    async def handle(self, ws: WebSocket) -> None:
        await self._serve(ws, self._kubelet_url, _exec_failure)

    async def handle_portforward(self, ws: WebSocket) -> None:
        await self._serve(ws, self._portforward_url, _portforward_failure)

    async def _serve(
        self,
        ws: WebSocket,
        target: Callable[[WebSocket], Awaitable[str]],
        failure: Callable[[WebSocket, dict[str, Any]], list[bytes]],
    ) -> None:
        protocol = channels.choose(ws.headers.get("sec-websocket-protocol", ""))
        if protocol is None:
            # Refused before the upgrade: the client sees an HTTP 403 and no half-open socket.
            await ws.close(code=1002, reason=f"exec needs one of the subprotocols {', '.join(channels.SUBPROTOCOLS)}")
            return
        await ws.accept(subprotocol=protocol)
        try:
            url = await target(ws)
            async with connect(url, subprotocols=[Subprotocol(protocol)], open_timeout=10, max_size=None) as node:
                await self._relay(ws, node)
        except errors.ApiError as exc:
            await _send_and_close(ws, failure(ws, failure_status(exc)))
        except (OSError, InvalidHandshake, asyncio.TimeoutError) as exc:
            await _send_and_close(ws, failure(ws, channels.failure(f"cannot reach the kubelet: {exc}")))
        except (WebSocketDisconnect, ConnectionClosed):
            return

    async def _running_pod(self, ws: WebSocket) -> Any:
        ns, name = ws.path_params["namespace"], ws.path_params["name"]
        pod: Any = await self.handlers.get(self.registry.get("v1", "Pod"), ns, name)
        if pod.status is None or pod.status.phase != "Running":
            phase = pod.status.phase if pod.status else "Pending"
            raise errors.bad_request(f"pod {name} is not running; current phase is {phase}")
        return pod

    async def _portforward_url(self, ws: WebSocket) -> str:
        ports = _ports(ws)
        if not ports:
            raise errors.bad_request("ports: at least one port (1-65535, each once) is required")
        pod = await self._running_pod(ws)
        base = self.kubelet_base or await kubelet_url(self.handlers, self.registry, pod)
        query = urlencode([("ports", ",".join(str(p) for p in ports))])
        return f"ws{base.removeprefix('http')}/portForward/{pod.metadata.namespace}/{pod.metadata.name}?{query}"

    async def _kubelet_url(self, ws: WebSocket) -> str:
        query = ws.query_params
        command = query.getlist("command")
        if not command:
            raise errors.bad_request("you must specify at least one command for the container")
        ns, name = ws.path_params["namespace"], ws.path_params["name"]
        pod: Any = await self.handlers.get(self.registry.get("v1", "Pod"), ns, name)
        container = pick_container(pod, query.get("container"), inits_too=False)
        if pod.status is None or pod.status.phase in ("Succeeded", "Failed"):
            phase = pod.status.phase if pod.status else "Pending"
            raise errors.bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
        base = self.kubelet_base or await kubelet_url(self.handlers, self.registry, pod)
        params = [("command", c) for c in command] + [(k, query[k]) for k in _PASS if k in query]
        return f"ws{base.removeprefix('http')}/exec/{ns}/{name}/{container}?{urlencode(params)}"

    async def _relay(self, ws: WebSocket, node: ClientConnection) -> None:
        async def upstream() -> None:  # the client's stdin (and close signals) to the kubelet
            try:
                while True:
                    await node.send(await ws.receive_bytes())
            except (WebSocketDisconnect, RuntimeError, KeyError):
                await node.close()  # the client left: the kubelet ends the command
            except ConnectionClosed:
                pass

        to_node = asyncio.create_task(upstream())
        try:
            async for message in node:
                await ws.send_bytes(message if isinstance(message, bytes) else message.encode())
            with contextlib.suppress(RuntimeError):
                await ws.close()
        finally:
            to_node.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await to_node


def _exec_failure(ws: WebSocket, status: dict[str, Any]) -> list[bytes]:
    """The Status on the error channel, as the kubelet ends an exec."""
    return [bytes([channels.ERROR]) + json.dumps(status).encode()]


def _portforward_failure(ws: WebSocket, status: dict[str, Any]) -> list[bytes]:
    """Every port's channels opened, then the reason as text on each port's error channel."""
    out = []
    for i, port in enumerate(_ports(ws)):
        header = port.to_bytes(2, "little")
        out += [bytes([2 * i]) + header, bytes([2 * i + 1]) + header]
        out.append(bytes([2 * i + 1]) + str(status.get("message", status)).encode())
    return out


async def _send_and_close(ws: WebSocket, messages: list[bytes]) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        for message in messages:
            await ws.send_bytes(message)
        await ws.close()


def _ports(ws: WebSocket) -> list[int]:
    """The ``ports`` asked for, in order; empty when any is not a port or repeats."""
    ports: list[int] = []
    for value in ws.query_params.getlist("ports"):
        for part in value.split(","):
            if not part.strip().isdigit() or not 0 < int(part) < 65536 or int(part) in ports:
                return []
            ports.append(int(part))
    return ports
