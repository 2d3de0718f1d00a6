"""The kubelet's port forwarding: ``/portForward/{ns}/{pod}?ports=8080[,9090]`` as a WebSocket.

Kubernetes' WebSocket port-forward protocol (what the official clients speak): port i of the
request gets data channel 2i and error channel 2i+1, both opened by a frame holding the port
number (2 bytes, little-endian); after that, data messages carry the connection's bytes both
ways, and a message on the error channel says why the connection failed. Each port is one TCP
connection, made by the runtime inside the pod's network namespace (``PortForwardStream``).
The WebSocket closes once every port's connection has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from kray.client import channels
from kray.runtime.cri import api_pb2 as pb
from kray.runtime.cri import portforward_pb2 as pfpb

from .ports import POD_UID

if TYPE_CHECKING:
    from .kubelet import Kubelet

log = logging.getLogger(__name__)


def parse_ports(values: list[str]) -> list[int]:
    """``ports=80,443`` or ``ports=80&ports=443``; each 1-65535 and given once."""
    ports: list[int] = []
    for value in values:
        for part in value.split(","):
            if not part.strip().isdigit() or not 0 < int(part) < 65536:
                raise ValueError(f"invalid port {part.strip()!r}: must be 1-65535")
            if int(part) in ports:
                raise ValueError(f"port {int(part)} is given twice")
            ports.append(int(part))
    if not ports:
        raise ValueError("no ports given: ?ports=PORT[,PORT...]")
    return ports


async def _sandbox_id(kubelet: Kubelet, namespace: str, name: str) -> str:
    pod = kubelet.find_pod(namespace, name)
    if pod is None:
        raise LookupError(f"pod {namespace}/{name} not found on this node")
    sandboxes = await kubelet.cri.list_pod_sandbox(
        pb.PodSandboxFilter(label_selector={POD_UID: pod.metadata.uid or ""})
    )
    ready = [s for s in sandboxes if s.state == pb.SANDBOX_READY]
    if not ready:
        raise LookupError(f"pod {namespace}/{name} has no running sandbox")
    return str(max(ready, key=lambda s: s.created_at).id)


class _Port:
    """One forwarded port: its channels, and the bytes the client sends it."""

    def __init__(self, index: int, port: int) -> None:
        self.port = port
        self.data_channel, self.error_channel = 2 * index, 2 * index + 1
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()  # None: the client is done

    def header(self, channel: int) -> bytes:
        return bytes([channel]) + self.port.to_bytes(2, "little")

    async def requests(self, sandbox_id: str) -> AsyncIterator[pfpb.PortForwardRequest]:
        yield pfpb.PortForwardRequest(pod_sandbox_id=sandbox_id, port=self.port)
        while (data := await self.inbox.get()) is not None:
            yield pfpb.PortForwardRequest(data=data)
        yield pfpb.PortForwardRequest(close_write=True)


def portforward_route(kubelet: Kubelet) -> WebSocketRoute:
    async def port_forward(ws: WebSocket) -> None:
        protocol = channels.choose(ws.headers.get("sec-websocket-protocol", ""))
        if protocol is None:
            await ws.close(code=1002)  # before accept: the client gets an HTTP 403
            return
        try:
            ports = [_Port(i, p) for i, p in enumerate(parse_ports(ws.query_params.getlist("ports")))]
        except ValueError:
            await ws.close(code=1008)
            return
        await ws.accept(subprotocol=protocol)
        for port in ports:
            await ws.send_bytes(port.header(port.data_channel))
            await ws.send_bytes(port.header(port.error_channel))
        try:
            sandbox = await _sandbox_id(kubelet, ws.path_params["namespace"], ws.path_params["pod"])
        except LookupError as exc:
            for port in ports:
                await ws.send_bytes(bytes([port.error_channel]) + str(exc).encode())
            await ws.close()
            return
        by_channel = {p.data_channel: p for p in ports}

        async def read_client() -> None:
            try:
                while True:
                    data = await ws.receive_bytes()
                    if data[:1] == bytes([channels.CLOSE]) and len(data) > 1:  # v5: the client half-closes
                        closed = by_channel.get(data[1])
                        if closed is not None:
                            await closed.inbox.put(None)
                        continue
                    port = by_channel.get(data[0]) if data else None
                    if port is not None and len(data) > 1:
                        await port.inbox.put(data[1:])
            except (WebSocketDisconnect, RuntimeError, KeyError):
                pass
            finally:
                for port in ports:
                    await port.inbox.put(None)

        async def forward(port: _Port) -> None:
            outputs = kubelet.cri.port_forward(port.requests(sandbox))
            try:
                async for out in outputs:
                    await ws.send_bytes(bytes([port.data_channel]) + out.data)
            except WebSocketDisconnect:
                pass
            except Exception as exc:  # refused, no such sandbox: the port's error channel says so
                details = getattr(exc, "details", None)
                message = details() if callable(details) else str(exc)
                with contextlib.suppress(Exception):
                    await ws.send_bytes(bytes([port.error_channel]) + f"port {port.port}: {message}".encode())
            finally:
                await outputs.aclose()

        reader = asyncio.create_task(read_client())
        try:
            await asyncio.gather(*(forward(p) for p in ports))
            with contextlib.suppress(Exception):
                await ws.close()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    return WebSocketRoute("/portForward/{namespace}/{pod}", port_forward)
