"""In-memory CRI runtime and device manager with real semantics, for tests of the kubelet core.

``FakeCri`` keeps sandboxes and containers with the CRI state machine (created -> running ->
exited; ALREADY_EXISTS/NOT_FOUND like the real service); tests end a container with
``exit(cid, code, reason)`` and script ExecSync answers with ``exec_handler``. Images are either
imported (``images``: pinned, nothing to pull them from) or served by a fake remote ``registry``
(with ``registry_auth`` credentials) and, once pulled, kept in ``pulled`` (fakeimages.py).
``FakeDevices``, the device manager, lives in fakedevices.py and is re-exported here.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from kray.runtime.cri import api_pb2 as pb
from kray.runtime.cri import portforward_pb2 as pfpb

from .fakedevices import FakeDevices
from .fakeimages import FakeImages, rpc_error

__all__ = ["FakeCri", "FakeDevices", "rpc_error"]


@dataclass
class _Sandbox:
    id: str
    config: pb.PodSandboxConfig
    ip: str
    created_at: int
    ready: bool = True


@dataclass
class _Container:
    id: str
    sandbox_id: str
    config: pb.ContainerConfig
    image_ref: str
    log_path: str
    created_at: int
    state: Any = pb.CONTAINER_CREATED  # a pb.ContainerState value
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""


@dataclass(kw_only=True)
class FakeCri(FakeImages):
    """Times come from ``now_ns`` (tie it to a FakeClock for deterministic back-off)."""

    now_ns: Callable[[], int]
    pod_ip: str | None = None  # fixed IP for every sandbox (probe tests); else 10.88.0.N
    log_root: str = "/nonexistent/logs"
    stop_exit_code: int = 143  # what a SIGTERM'd process exits with
    exec_handler: Callable[[str, list[str]], tuple[int, bytes]] = lambda name, cmd: (0, b"")
    # Ports "listening" in every sandbox: each chunk a connection receives is answered with
    # handler(chunk). A port not listed refuses connections.
    listening: dict[int, Callable[[bytes], bytes]] = field(default_factory=dict)
    # Usage of running containers, by container name: (nano cores, working-set bytes).
    usage: dict[str, tuple[int, int]] = field(default_factory=dict)
    network_ready: bool = True
    sandboxes: dict[str, _Sandbox] = field(default_factory=dict)
    containers: dict[str, _Container] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)  # (rpc, main argument)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    # --- test helpers -------------------------------------------------------------------------
    def exit(self, cid: str, code: int, reason: str = "") -> None:
        c = self.containers[cid]
        assert c.state == pb.CONTAINER_RUNNING, f"{cid} is not running"
        c.state, c.exit_code, c.finished_at = pb.CONTAINER_EXITED, code, self.now_ns()
        c.reason = reason or ("Completed" if code == 0 else "Error")

    def by_name(self, pod_uid: str, name: str) -> list[_Container]:
        """The containers of one pod container, oldest first."""
        from .ports import CONTAINER_NAME, POD_UID

        out = [
            c
            for c in self.containers.values()
            if c.config.labels.get(POD_UID) == pod_uid and c.config.labels.get(CONTAINER_NAME) == name
        ]
        return sorted(out, key=lambda c: c.config.metadata.attempt)

    def count(self, rpc: str) -> int:
        return sum(1 for n, _ in self.calls if n == rpc)

    # --- runtime ------------------------------------------------------------------------------
    async def status(self, verbose: bool = False) -> pb.StatusResponse:
        conds = [
            pb.RuntimeCondition(type="RuntimeReady", status=True),
            pb.RuntimeCondition(type="NetworkReady", status=self.network_ready),
        ]
        return pb.StatusResponse(status=pb.RuntimeStatus(conditions=conds))

    async def run_pod_sandbox(self, config: pb.PodSandboxConfig, runtime_handler: str = "") -> str:
        self.calls.append(("RunPodSandbox", config.metadata.name))
        md = config.metadata
        for sb in self.sandboxes.values():
            m = sb.config.metadata
            if (m.name, m.namespace, m.uid, m.attempt) == (md.name, md.namespace, md.uid, md.attempt):
                raise rpc_error(grpc.StatusCode.ALREADY_EXISTS, f"sandbox {md.name} attempt {md.attempt} exists")
        n = next(self._ids)
        sid = f"sb{n:04d}"
        ip = "" if config.linux.security_context.namespace_options.network == pb.NODE else self.pod_ip
        ip = f"10.88.0.{n % 250 + 2}" if ip is None else ip
        self.sandboxes[sid] = _Sandbox(sid, config, ip, self.now_ns())
        return sid

    def _sandbox(self, sid: str) -> _Sandbox:
        if sid not in self.sandboxes:
            raise rpc_error(grpc.StatusCode.NOT_FOUND, f"sandbox {sid} not found")
        return self.sandboxes[sid]

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        self.calls.append(("StopPodSandbox", sandbox_id))
        sb = self._sandbox(sandbox_id)
        sb.ready = False
        for c in self.containers.values():
            if c.sandbox_id == sandbox_id and c.state == pb.CONTAINER_RUNNING:
                self.exit(c.id, 137, "Error")

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        self.calls.append(("RemovePodSandbox", sandbox_id))
        if sandbox_id not in self.sandboxes:
            return  # idempotent, like the real service
        for cid in [c.id for c in self.containers.values() if c.sandbox_id == sandbox_id]:
            del self.containers[cid]
        del self.sandboxes[sandbox_id]

    async def pod_sandbox_status(self, sandbox_id: str, verbose: bool = False) -> pb.PodSandboxStatusResponse:
        sb = self._sandbox(sandbox_id)
        st = pb.PodSandboxStatus(
            id=sb.id,
            metadata=sb.config.metadata,
            state=pb.SANDBOX_READY if sb.ready else pb.SANDBOX_NOTREADY,
            created_at=sb.created_at,
            network=pb.PodSandboxNetworkStatus(ip=sb.ip),
            labels=sb.config.labels,
            annotations=sb.config.annotations,
        )
        return pb.PodSandboxStatusResponse(status=st)

    async def list_pod_sandbox(self, filter: pb.PodSandboxFilter | None = None) -> list[pb.PodSandbox]:
        f = filter or pb.PodSandboxFilter()
        out = []
        for sb in self.sandboxes.values():
            state = pb.SANDBOX_READY if sb.ready else pb.SANDBOX_NOTREADY
            if f.id and not sb.id.startswith(f.id):
                continue
            if f.HasField("state") and f.state.state != state:
                continue
            if any(sb.config.labels.get(k) != v for k, v in f.label_selector.items()):
                continue
            out.append(
                pb.PodSandbox(
                    id=sb.id,
                    metadata=sb.config.metadata,
                    state=state,
                    created_at=sb.created_at,
                    labels=sb.config.labels,
                    annotations=sb.config.annotations,
                )
            )
        return out

    # --- containers ---------------------------------------------------------------------------
    async def create_container(
        self, sandbox_id: str, config: pb.ContainerConfig, sandbox_config: pb.PodSandboxConfig | None = None
    ) -> str:
        self.calls.append(("CreateContainer", config.metadata.name))
        sb = self._sandbox(sandbox_id)
        if not sb.ready:
            raise rpc_error(grpc.StatusCode.FAILED_PRECONDITION, f"sandbox {sandbox_id} is not ready")
        if config.image.image not in self.images and config.image.image not in self.pulled:
            raise rpc_error(grpc.StatusCode.NOT_FOUND, f"image {config.image.image} not found")
        cid = f"c{next(self._ids):04d}"
        log_dir = sb.config.log_directory or f"{self.log_root}/{sandbox_id}"
        log = str(Path(log_dir) / (config.log_path or f"{config.metadata.name}/{config.metadata.attempt}.log"))
        img = f"sha256:{config.image.image}"
        self.containers[cid] = _Container(cid, sandbox_id, config, img, log, self.now_ns())
        return cid

    def _container(self, cid: str) -> _Container:
        if cid not in self.containers:
            raise rpc_error(grpc.StatusCode.NOT_FOUND, f"container {cid} not found")
        return self.containers[cid]

    async def start_container(self, container_id: str) -> None:
        self.calls.append(("StartContainer", container_id))
        c = self._container(container_id)
        if c.state != pb.CONTAINER_CREATED:
            raise rpc_error(grpc.StatusCode.FAILED_PRECONDITION, f"container {container_id} is not created")
        c.state, c.started_at = pb.CONTAINER_RUNNING, self.now_ns()

    async def stop_container(self, container_id: str, timeout: int = 0) -> None:
        self.calls.append(("StopContainer", (container_id, timeout)))
        c = self._container(container_id)
        if c.state == pb.CONTAINER_RUNNING:
            self.exit(container_id, self.stop_exit_code, "Error")
        elif c.state == pb.CONTAINER_CREATED:
            c.state, c.finished_at, c.exit_code, c.reason = pb.CONTAINER_EXITED, self.now_ns(), 0, ""

    async def remove_container(self, container_id: str) -> None:
        self.calls.append(("RemoveContainer", container_id))
        self.containers.pop(container_id, None)

    async def list_containers(self, filter: pb.ContainerFilter | None = None) -> list[pb.Container]:
        f = filter or pb.ContainerFilter()
        out = []
        for c in self.containers.values():
            if f.id and not c.id.startswith(f.id):
                continue
            if f.pod_sandbox_id and not c.sandbox_id.startswith(f.pod_sandbox_id):
                continue
            if f.HasField("state") and f.state.state != c.state:
                continue
            if any(c.config.labels.get(k) != v for k, v in f.label_selector.items()):
                continue
            out.append(
                pb.Container(
                    id=c.id,
                    pod_sandbox_id=c.sandbox_id,
                    metadata=c.config.metadata,
                    image=c.config.image,
                    image_ref=c.image_ref,
                    state=c.state,
                    created_at=c.created_at,
                    labels=c.config.labels,
                    annotations=c.config.annotations,
                )
            )
        return out

    async def container_status(self, container_id: str, verbose: bool = False) -> pb.ContainerStatus:
        c = self._container(container_id)
        return pb.ContainerStatus(
            id=c.id,
            metadata=c.config.metadata,
            state=c.state,
            created_at=c.created_at,
            started_at=c.started_at,
            finished_at=c.finished_at,
            exit_code=c.exit_code,
            image=c.config.image,
            image_ref=c.image_ref,
            reason=c.reason,
            labels=c.config.labels,
            annotations=c.config.annotations,
            log_path=c.log_path,
        )

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: int = 0) -> pb.ExecSyncResponse:
        self.calls.append(("ExecSync", container_id))
        c = self._container(container_id)
        if c.state != pb.CONTAINER_RUNNING:
            raise rpc_error(grpc.StatusCode.FAILED_PRECONDITION, f"container {container_id} is not running")
        code, out = self.exec_handler(c.config.metadata.name, list(cmd))
        return pb.ExecSyncResponse(stdout=out, exit_code=code)

    async def exec_stream(
        self, requests: AsyncIterator[pb.ExecStreamRequest]
    ) -> AsyncGenerator[pb.ExecStreamResponse, None]:
        """``exec_handler``'s output, then (with stdin) every stdin chunk echoed back as it
        arrives, like ``cat``; the exit code is ``exec_handler``'s once stdin closes. With
        ``tty``, newlines come out as a terminal's "\\r\\n", a typed ^D ends the input as a
        terminal's line discipline would (a raw client sends every key, ^D included), and every
        size the terminal gets (the first request's, then each resize) is recorded as
        ``("ExecStreamResize", (w, h))``."""
        first = await anext(requests, None)
        if first is None:
            raise rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "exec: the stream ended before saying what to run")
        self.calls.append(("ExecStream", first.container_id))
        c = self._container(first.container_id)
        if c.state != pb.CONTAINER_RUNNING:
            raise rpc_error(grpc.StatusCode.FAILED_PRECONDITION, f"container {first.container_id} is not running")
        code, out = self.exec_handler(c.config.metadata.name, list(first.cmd))
        if first.tty and first.HasField("resize"):
            self.calls.append(("ExecStreamResize", (first.resize.width, first.resize.height)))
        onlcr: Callable[[bytes], bytes] = (lambda b: b.replace(b"\n", b"\r\n")) if first.tty else (lambda b: b)
        if out:
            yield pb.ExecStreamResponse(stdout=onlcr(out))
        if first.stdin:
            async for req in requests:
                if first.tty and req.HasField("resize"):
                    self.calls.append(("ExecStreamResize", (req.resize.width, req.resize.height)))
                typed, eof, _ = req.stdin_data.partition(b"\x04") if first.tty else (req.stdin_data, b"", b"")
                if typed:
                    yield pb.ExecStreamResponse(stdout=onlcr(typed))
                if req.stdin_closed or eof:
                    break
        yield pb.ExecStreamResponse(exited=True, exit_code=code)

    async def list_container_stats(self, filter: pb.ContainerStatsFilter | None = None) -> list[pb.ContainerStats]:
        """Every running container, with ``usage`` for its name (zero when not set); a rate on
        every call, as the real runtime gives from its second sample on."""
        f = filter or pb.ContainerStatsFilter()
        out = []
        for c in self.containers.values():
            if c.state != pb.CONTAINER_RUNNING or (f.id and not c.id.startswith(f.id)):
                continue
            if any(c.config.labels.get(k) != v for k, v in f.label_selector.items()):
                continue
            cores, memory = self.usage.get(c.config.metadata.name, (0, 0))
            now = self.now_ns()
            out.append(
                pb.ContainerStats(
                    attributes=pb.ContainerAttributes(id=c.id, metadata=c.config.metadata, labels=c.config.labels),
                    cpu=pb.CpuUsage(timestamp=now, usage_nano_cores=pb.UInt64Value(value=cores)),
                    memory=pb.MemoryUsage(timestamp=now, working_set_bytes=pb.UInt64Value(value=memory)),
                )
            )
        return out

    async def port_forward(
        self, requests: AsyncIterator[pfpb.PortForwardRequest]
    ) -> AsyncGenerator[pfpb.PortForwardResponse, None]:
        first = await anext(requests, None)
        if first is None:
            raise rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "port-forward: the stream ended before naming a port")
        self.calls.append(("PortForward", (first.pod_sandbox_id, first.port)))
        if first.pod_sandbox_id not in self.sandboxes:
            raise rpc_error(grpc.StatusCode.NOT_FOUND, f"pod sandbox {first.pod_sandbox_id} not found")
        handler = self.listening.get(first.port)
        if handler is None:
            raise rpc_error(grpc.StatusCode.UNAVAILABLE, f"connect to port {first.port}: Connection refused")
        pending = [first]
        while pending:
            req = pending.pop()
            if req.data:
                yield pfpb.PortForwardResponse(data=handler(req.data))
            if req.close_write:
                return
            nxt = await anext(requests, None)
            if nxt is not None:
                pending.append(nxt)
