"""How a device plugin reaches the device manager: the Registration service it calls on the
kubelet's socket, and the connection (PluginEndpoint) the manager opens back to the plugin's own
socket once it has registered. Kept apart from manager.py, which holds what the manager does with
the plugins (ListAndWatch, allocation, checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from .api import pb, pb_grpc

if TYPE_CHECKING:
    from .manager import DeviceManager


class RegistrationError(Exception):
    pass


@dataclass
class PluginEndpoint:
    resource: str
    socket: Path
    options: pb.DevicePluginOptions
    channel: grpc.Channel
    stub: pb_grpc.DevicePluginStub
    healthy: set[str] = field(default_factory=set)
    unhealthy: set[str] = field(default_factory=set)
    connected: bool = True
    call: Any = None
    serves_usage: bool = True  # until it answers UNIMPLEMENTED (a plugin written for Kubernetes)

    def close(self) -> None:
        self.connected = False
        if self.call is not None:
            self.call.cancel()
        self.channel.close()


class RegistrationService(pb_grpc.RegistrationServicer):
    def __init__(self, manager: DeviceManager) -> None:
        self._m = manager

    def Register(self, request: pb.RegisterRequest, context: Any) -> pb.Empty:
        try:
            self._m._register(request)
        except RegistrationError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        return pb.Empty()
