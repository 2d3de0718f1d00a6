"""The runtime's side of ``PortForwardStream``: one TCP connection to a port inside a pod.

The connection is opened on localhost *inside* the sandbox's network namespace (``setns`` on
this thread for the connect alone), as the kubelet's port forwarding does, so a server that
listens on the pod's loopback only (TensorBoard's default, say) is reachable too. A sandbox on
the host network (or the process runtime's) is the host's localhost. Bytes from the caller are
written as they come (a feeder thread); bytes from the pod are streamed back until either end
closes. When the RPC ends, however it ends, the connection is closed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import grpc

from kray.runtime import netns
from kray.runtime.cri import portforward_pb2 as pfpb
from kray.runtime.cri import portforward_pb2_grpc as pfgrpc
from kray.runtime.records import CriError, FailedPrecondition, InvalidArgument
from kray.runtime.service import NodeRuntime

CHUNK = 64 << 10
CONNECT_TIMEOUT_S = 5.0


def connect_in_sandbox(node: NodeRuntime, sandbox_id: str, port: int) -> socket.socket:
    if not 0 < port < 65536:
        raise InvalidArgument(f"port {port} is out of range 1-65535")
    rec = node.sandbox(sandbox_id)
    if rec.state != "ready":
        raise FailedPrecondition(f"pod sandbox {sandbox_id} is not ready")
    inside = netns.entered(rec.netns_path) if rec.netns_path and not rec.host_network else contextlib.nullcontext()
    with inside:
        # create_connection tries the resolved addresses in turn: IPv4 first, then ::1.
        sock = socket.create_connection(("localhost", port), timeout=CONNECT_TIMEOUT_S)
    sock.settimeout(None)
    return sock


def _feed(requests: Iterator[pfpb.PortForwardRequest], sock: socket.socket) -> None:
    try:
        for req in requests:
            if req.data:
                sock.sendall(req.data)
            if req.close_write:
                sock.shutdown(socket.SHUT_WR)
                return
        sock.shutdown(socket.SHUT_WR)  # the caller's side of the stream ended: nothing more comes
    except (OSError, ValueError):
        pass  # the connection or the RPC is gone: the reading side ends the stream
    except Exception:  # the RPC was cancelled under us
        pass


class PortForwardServicer(pfgrpc.PortForwardServiceServicer):
    def __init__(self, node: NodeRuntime) -> None:
        self.node = node

    def PortForwardStream(
        self, request_iterator: Iterator[pfpb.PortForwardRequest], context: grpc.ServicerContext
    ) -> Iterator[pfpb.PortForwardResponse]:
        first = next(request_iterator, None)
        if first is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "port-forward: the stream ended before naming a port")
            return
        try:
            sock = connect_in_sandbox(self.node, first.pod_sandbox_id, first.port)
        except CriError as exc:
            context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
            return
        except OSError as exc:  # refused, unreachable, timed out: nothing listens there
            context.abort(grpc.StatusCode.UNAVAILABLE, f"connect to port {first.port} in the pod: {exc}")
            return
        context.add_callback(sock.close)
        # Connected: say so before anything else (see client._bidi: the caller writes more only
        # after this, so a refusal above always reaches it as this call's status).
        yield pfpb.PortForwardResponse()
        if first.data:
            sock.sendall(first.data)
        threading.Thread(target=_feed, args=(request_iterator, sock), name="portforward-in", daemon=True).start()
        with sock:
            while data := _recv(sock):
                yield pfpb.PortForwardResponse(data=data)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(CHUNK)
    except OSError:
        return b""  # closed under us (the RPC ended)


def add_to_server(node: NodeRuntime, server: Any) -> None:
    pfgrpc.add_PortForwardServiceServicer_to_server(PortForwardServicer(node), server)
