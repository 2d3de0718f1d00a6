"""The runtime's PortForwardStream on real crun: a connection to localhost:PORT inside the pod's
network namespace (so a server bound to the pod's loopback only is reached), bytes both ways,
half-close, and a clear error when nothing listens (root only)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from cri_harness import ctr_config, run_pod

from kray.runtime.cri import portforward_pb2 as pfpb
from kray.runtime.cri.client import RuntimeClient

pytestmark = [pytest.mark.root]

# busybox httpd on the pod's loopback only: unreachable at the pod IP, reachable by port-forward.
LOOPBACK_HTTPD = "mkdir -p /www && echo forwarded > /www/f && httpd -f -p 127.0.0.1:8080 -h /www"


async def requests(sandbox: str, port: int, *chunks: bytes) -> AsyncIterator[pfpb.PortForwardRequest]:
    yield pfpb.PortForwardRequest(pod_sandbox_id=sandbox, port=port)
    for chunk in chunks:
        yield pfpb.PortForwardRequest(data=chunk)
    yield pfpb.PortForwardRequest(close_write=True)


async def fetch(cri: RuntimeClient, sandbox: str, port: int, request: bytes) -> bytes:
    return b"".join([out.data async for out in cri.port_forward(requests(sandbox, port, request))])


async def test_forwarded_connection_reaches_the_pods_loopback(cri: RuntimeClient) -> None:
    sandbox, _ = await run_pod(cri, "pf", ctr_config("web", ["sh", "-c", LOOPBACK_HTTPD]))
    deadline = time.monotonic() + 20
    while True:  # until httpd listens
        try:
            answer = await fetch(cri, sandbox, 8080, b"GET /f HTTP/1.0\r\n\r\n")
            break
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    assert answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n")[0]
    assert answer.endswith(b"forwarded\n")
    pod_ip = (await cri.pod_sandbox_status(sandbox)).status.network.ip
    with pytest.raises(ConnectionRefusedError):  # from the host, at the pod IP: loopback only
        socket.create_connection((pod_ip, 8080), timeout=5).close()
    # Two connections at once, each its own stream.
    both = await asyncio.gather(*(fetch(cri, sandbox, 8080, b"GET /f HTTP/1.0\r\n\r\n") for _ in range(2)))
    assert all(a.endswith(b"forwarded\n") for a in both)


async def test_nothing_listening_is_unavailable(cri: RuntimeClient) -> None:
    sandbox, _ = await run_pod(cri, "pn", ctr_config("idle", ["sleep", "1000"]))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await fetch(cri, sandbox, 9, b"x")
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "port 9" in (err.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await fetch(cri, "no-such-sandbox", 80, b"x")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await fetch(cri, sandbox, 70000, b"x")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
