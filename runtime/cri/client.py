"""A thin typed asyncio client for the node's CRI socket (what the kubelet uses).

    async with RuntimeClient("/run/kray/node-1/cri.sock") as cri:
        sid = await cri.run_pod_sandbox(pb.PodSandboxConfig(metadata=...))

Methods mirror the RPCs and return the protobuf responses; failures raise grpc.aio.AioRpcError
with the server's status code (NOT_FOUND, ALREADY_EXISTS, ...). `timeout` is per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from kray.runtime.cri import api_pb2 as pb
from kray.runtime.cri import api_pb2_grpc as pbg
from kray.runtime.cri import portforward_pb2 as pfpb
from kray.runtime.cri import portforward_pb2_grpc as pfgrpc

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 120.0


class RuntimeClient:
    def __init__(self, socket_path: Path | str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout
        self.channel = grpc.aio.insecure_channel(f"unix:{self.socket_path}")
        self.runtime = pbg.RuntimeServiceStub(self.channel)
        self.image = pbg.ImageServiceStub(self.channel)
        self.port_forwarder = pfgrpc.PortForwardServiceStub(self.channel)

    async def port_forward(
        self, requests: AsyncIterator[pfpb.PortForwardRequest]
    ) -> AsyncGenerator[pfpb.PortForwardResponse, None]:
        """Bytes from a port inside a pod; ``requests`` opens with the sandbox and port, then
        carries bytes to it. No deadline. Closing this iterator cancels the RPC and the connection."""
        # A connection that never reached the runtime is opened again: connecting twice is harmless
        # (an exec is not retried: its command might have run).
        async for response in _bidi(self.port_forwarder.PortForwardStream, requests, retry_unsent=True):
            yield response

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> RuntimeClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the socket accepts connections (the service may still be starting)."""
        await asyncio.wait_for(self.channel.channel_ready(), timeout)

    # runtime ----------------------------------------------------------------------------------
    async def version(self) -> pb.VersionResponse:
        return await self.runtime.Version(pb.VersionRequest(version="v1"), timeout=self.timeout)

    async def status(self, verbose: bool = False) -> pb.StatusResponse:
        return await self.runtime.Status(pb.StatusRequest(verbose=verbose), timeout=self.timeout)

    async def run_pod_sandbox(self, config: pb.PodSandboxConfig, runtime_handler: str = "") -> str:
        req = pb.RunPodSandboxRequest(config=config, runtime_handler=runtime_handler)
        resp = await self.runtime.RunPodSandbox(req, timeout=self.timeout)
        return str(resp.pod_sandbox_id)

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        await self.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=self.timeout)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        req = pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id)
        await self.runtime.RemovePodSandbox(req, timeout=self.timeout)

    async def pod_sandbox_status(self, sandbox_id: str, verbose: bool = False) -> pb.PodSandboxStatusResponse:
        req = pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose)
        return await self.runtime.PodSandboxStatus(req, timeout=self.timeout)

    async def list_pod_sandbox(self, filter: pb.PodSandboxFilter | None = None) -> list[pb.PodSandbox]:
        resp = await self.runtime.ListPodSandbox(pb.ListPodSandboxRequest(filter=filter), timeout=self.timeout)
        return list(resp.items)

    async def create_container(
        self, sandbox_id: str, config: pb.ContainerConfig, sandbox_config: pb.PodSandboxConfig | None = None
    ) -> str:
        req = pb.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=config, sandbox_config=sandbox_config)
        resp = await self.runtime.CreateContainer(req, timeout=self.timeout)
        return str(resp.container_id)

    async def start_container(self, container_id: str) -> None:
        await self.runtime.StartContainer(pb.StartContainerRequest(container_id=container_id), timeout=self.timeout)

    async def stop_container(self, container_id: str, timeout: int = 0) -> None:
        req = pb.StopContainerRequest(container_id=container_id, timeout=timeout)
        await self.runtime.StopContainer(req, timeout=self.timeout + timeout)

    async def remove_container(self, container_id: str) -> None:
        await self.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=container_id), timeout=self.timeout)

    async def list_containers(self, filter: pb.ContainerFilter | None = None) -> list[pb.Container]:
        resp = await self.runtime.ListContainers(pb.ListContainersRequest(filter=filter), timeout=self.timeout)
        return list(resp.containers)

    async def container_status(self, container_id: str, verbose: bool = False) -> pb.ContainerStatus:
        req = pb.ContainerStatusRequest(container_id=container_id, verbose=verbose)
        resp = await self.runtime.ContainerStatus(req, timeout=self.timeout)
        return resp.status

    async def list_container_stats(self, filter: pb.ContainerStatsFilter | None = None) -> list[pb.ContainerStats]:
        req = pb.ListContainerStatsRequest(filter=filter or pb.ContainerStatsFilter())
        resp = await self.runtime.ListContainerStats(req, timeout=self.timeout)
        return list(resp.stats)

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: int = 0) -> pb.ExecSyncResponse:
        req = pb.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=timeout)
        return await self.runtime.ExecSync(req, timeout=self.timeout + timeout)

    async def exec_stream(
        self, requests: AsyncIterator[pb.ExecStreamRequest]
    ) -> AsyncGenerator[pb.ExecStreamResponse, None]:
        """A command's output as it comes; ``requests`` opens with what to run, then stdin
        (and with ``tty``, terminal resizes). No deadline: it lasts as long as the command.
        Closing this iterator cancels the RPC, and the runtime ends the command (with a
        terminal: hangs it up)."""
        async for response in _bidi(self.runtime.ExecStream, requests):
            yield response

    # images -----------------------------------------------------------------------------------
    async def list_images(self, image: str = "") -> list[pb.Image]:
        req = pb.ListImagesRequest(filter=pb.ImageFilter(image=pb.ImageSpec(image=image)))
        resp = await self.image.ListImages(req, timeout=self.timeout)
        return list(resp.images)

    async def image_status(self, image: str, verbose: bool = False) -> pb.ImageStatusResponse:
        req = pb.ImageStatusRequest(image=pb.ImageSpec(image=image), verbose=verbose)
        return await self.image.ImageStatus(req, timeout=self.timeout)

    async def pull_image(
        self, image: str, sandbox_config: pb.PodSandboxConfig | None = None, auth: pb.AuthConfig | None = None
    ) -> str:
        req = pb.PullImageRequest(image=pb.ImageSpec(image=image), sandbox_config=sandbox_config, auth=auth)
        # A pull takes as long as the image is large: no per-call deadline, as kubelet's pulls.
        resp = await self.image.PullImage(req, timeout=None)
        return str(resp.image_ref)

    async def image_fs_info(self) -> pb.ImageFsInfoResponse:
        return await self.image.ImageFsInfo(pb.ImageFsInfoRequest(), timeout=self.timeout)

    async def remove_image(self, image: str) -> None:
        await self.image.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=image)), timeout=self.timeout)


def _unsent(exc: grpc.aio.AioRpcError) -> bool:
    """gRPC's asyncio client failed to send a message itself (the call never got it out)."""
    return exc.code() == grpc.StatusCode.INTERNAL and "execute_batch" in (exc.debug_error_string() or "")


async def _bidi(
    start: Callable[[], Any], requests: AsyncIterator[Any], retry_unsent: bool = False
) -> AsyncGenerator[Any, None]:
    """Responses of a bidirectional call whose server answers the first request with an empty
    message once it accepted it (a handshake), while later ``requests`` are written on the side.

    Only after that first answer does anything more go out: in gRPC's asyncio client, a message
    written into a call the server is just refusing fails the call with a local INTERNAL error
    ("Failed execute_batch") that hides the server's status. So a refusal (NOT_FOUND,
    UNAVAILABLE...) always arrives as itself. Closing this generator cancels the call."""
    first = await anext(requests, None)
    if first is None:
        return

    async def write_rest() -> None:
        try:
            async for request in requests:
                await call.write(request)
            await call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
            pass  # the call is over: its status reaches the reader

    writer: asyncio.Task[None] | None = None
    call = start()
    try:
        try:
            await call.write(first)
            handshake = await call.read()  # raises the refusal, if any
        except grpc.aio.AioRpcError as exc:
            if not (retry_unsent and _unsent(exc)):
                raise
            log.warning("bidirectional call failed before it was sent (%s); opening it again", exc.details())
            call.cancel()
            call = start()
            await call.write(first)
            handshake = await call.read()
        if handshake is grpc.aio.EOF:
            return
        writer = asyncio.create_task(write_rest())
        while (response := await call.read()) is not grpc.aio.EOF:
            yield response
    finally:
        call.cancel()
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
