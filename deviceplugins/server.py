"""The plugin side of the device plugin protocol, shared by every plugin kray ships.

A plugin is a ``PluginCore`` (what devices exist, how to allocate them: no gRPC in it) served
by ``PluginServer``: a gRPC DevicePlugin service on a unix socket in the plugin dir, registered
with the device manager's Registration service on ``kubelet.sock``. Like Kubernetes plugins,
the server re-registers when ``kubelet.sock`` is re-created (the kubelet restarted). A core
that also has ``usage()`` (a ``UsageCore``) is served kray's DeviceUsage extension on the same
socket; other cores are not, and the device manager then hears UNIMPLEMENTED.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import grpc

from .api import KUBELET_SOCKET, VERSION, pb, pb_grpc, usage_grpc, usage_pb

log = logging.getLogger(__name__)


class PluginCore(Protocol):
    resource_name: str

    def options(self) -> pb.DevicePluginOptions: ...

    def devices(self) -> list[pb.Device]: ...

    def wait_changed(self, seen: int, timeout_s: float) -> int:
        """The device list's version, once it differs from ``seen`` or ``timeout_s`` passed."""
        ...

    def preferred(self, available: list[str], must_include: list[str], size: int) -> list[str]: ...

    def allocate(self, ids: list[str]) -> pb.ContainerAllocateResponse:
        """Raises ``ValueError`` for ids the plugin does not know."""
        ...

    def pre_start(self, ids: list[str]) -> None: ...


@runtime_checkable
class UsageCore(Protocol):
    """Optional on a ``PluginCore``: how busy its devices are (kray's DeviceUsage extension)."""

    def usage(self) -> list[usage_pb.DeviceUsageEntry]: ...


class Versioned:
    """A counter that wakes waiters when it moves: how a core tells ListAndWatch to re-send."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.version = 0

    def bump(self) -> None:
        with self._cond:
            self.version += 1
            self._cond.notify_all()

    def wait_changed(self, seen: int, timeout_s: float) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self.version != seen, timeout=timeout_s)
            return self.version


class _Servicer(pb_grpc.DevicePluginServicer):
    def __init__(self, core: PluginCore, stopping: threading.Event) -> None:
        self._core = core
        self._stopping = stopping

    def GetDevicePluginOptions(self, request: pb.Empty, context: Any) -> pb.DevicePluginOptions:
        return self._core.options()

    def ListAndWatch(self, request: pb.Empty, context: Any) -> Iterator[pb.ListAndWatchResponse]:
        seen = -1
        while context.is_active() and not self._stopping.is_set():
            version = self._core.wait_changed(seen, 0.5)
            if version != seen:
                seen = version
                yield pb.ListAndWatchResponse(devices=self._core.devices())

    def GetPreferredAllocation(
        self, request: pb.PreferredAllocationRequest, context: Any
    ) -> pb.PreferredAllocationResponse:
        resp = pb.PreferredAllocationResponse()
        for req in request.container_requests:
            ids = self._core.preferred(
                list(req.available_deviceIDs), list(req.must_include_deviceIDs), req.allocation_size
            )
            resp.container_responses.add(deviceIDs=ids)
        return resp

    def Allocate(self, request: pb.AllocateRequest, context: Any) -> pb.AllocateResponse:
        resp = pb.AllocateResponse()
        for req in request.container_requests:
            try:
                resp.container_responses.append(self._core.allocate(list(req.devices_ids)))
            except ValueError as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        return resp

    def PreStartContainer(self, request: pb.PreStartContainerRequest, context: Any) -> pb.PreStartContainerResponse:
        self._core.pre_start(list(request.devices_ids))
        return pb.PreStartContainerResponse()


class _UsageServicer(usage_grpc.DeviceUsageServicer):
    def __init__(self, core: UsageCore) -> None:
        self._core = core

    def GetUsage(self, request: usage_pb.Empty, context: Any) -> usage_pb.DeviceUsageList:
        return usage_pb.DeviceUsageList(devices=self._core.usage())


class PluginServer:
    def __init__(
        self,
        core: PluginCore,
        plugin_dir: str | os.PathLike[str],
        socket_name: str,
        kubelet_socket: str = KUBELET_SOCKET,
        watch_interval_s: float = 1.0,
    ) -> None:
        self.core = core
        self.plugin_dir = Path(plugin_dir)
        self.socket_name = socket_name
        self.socket_path = self.plugin_dir / socket_name
        self.kubelet_path = self.plugin_dir / kubelet_socket
        self._watch_interval_s = watch_interval_s
        self._stopping = threading.Event()
        self._server: grpc.Server | None = None
        self._watcher: threading.Thread | None = None
        # Identity of the kubelet.sock we registered with: a new file means a restarted manager.
        self._registered_id: tuple[int, int] | None = None
        self.registrations = 0

    def start(self, register: bool = True) -> None:
        from .manager import check_socket_path

        check_socket_path(self.socket_path)
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)  # a stale socket from a previous run blocks bind
        self._stopping.clear()
        # Every ListAndWatch stream holds a worker thread, so leave room for unary calls.
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix=f"dp-{self.socket_name}"))
        pb_grpc.add_DevicePluginServicer_to_server(_Servicer(self.core, self._stopping), server)
        if isinstance(self.core, UsageCore):
            usage_grpc.add_DeviceUsageServicer_to_server(_UsageServicer(self.core), server)
        server.add_insecure_port(f"unix://{self.socket_path}")
        server.start()
        self._server = server
        if register:
            try:
                self.register()
            except grpc.RpcError as e:
                # The device manager may not be serving yet (a plugin started before its
                # kubelet): the watcher below registers as soon as kubelet.sock answers.
                log.info("registration of %s deferred: %s", self.core.resource_name, e.code())
            self._watcher = threading.Thread(target=self._watch_kubelet, name="dp-kubelet-watch", daemon=True)
            self._watcher.start()

    def register(self, timeout_s: float = 5.0) -> None:
        """Register with the device manager; raises ``grpc.RpcError`` if it refuses or is absent."""
        ident = self._kubelet_id()
        with grpc.insecure_channel(f"unix://{self.kubelet_path}") as ch:
            pb_grpc.RegistrationStub(ch).Register(
                pb.RegisterRequest(
                    version=VERSION,
                    endpoint=self.socket_name,
                    resource_name=self.core.resource_name,
                    options=self.core.options(),
                ),
                timeout=timeout_s,
            )
        self._registered_id = ident
        self.registrations += 1
        log.info("registered %s on %s", self.core.resource_name, self.socket_path)

    def _kubelet_id(self) -> tuple[int, int] | None:
        # The inode alone is not enough: a re-created socket often gets the same one back.
        try:
            st = self.kubelet_path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_ctime_ns)

    def _watch_kubelet(self) -> None:
        while not self._stopping.wait(self._watch_interval_s):
            ident = self._kubelet_id()
            if ident is None:
                self._registered_id = None  # gone: whatever appears next is a new manager
                continue
            if ident == self._registered_id:
                continue
            try:
                self.register()
            except grpc.RpcError as e:  # the manager may still be starting; try next tick
                log.info("re-registration of %s failed: %s", self.core.resource_name, e)

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.stop(grace=0.5).wait(2)
            self._server = None
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None
        self.socket_path.unlink(missing_ok=True)
