"""A tiny device plugin for a made-up resource, ``example.com/widget``.

It shows the device manager accepts plugins that are not kray's GPU plugin: anything that
speaks the v1beta1 API on a socket in the plugin dir and registers. Widgets are numbered,
can be marked unhealthy, and are exposed to containers as an env var and one file mount.
"""

from __future__ import annotations

import os
import threading

from .api import HEALTHY, UNHEALTHY, pb
from .server import PluginServer, Versioned

RESOURCE_NAME = "example.com/widget"
SOCKET_NAME = "widget.sock"


class WidgetCore:
    resource_name = RESOURCE_NAME

    def __init__(self, count: int = 2, state_dir: str = "/var/lib/widgets") -> None:
        self.ids = [f"widget-{i}" for i in range(count)]
        self.state_dir = state_dir
        self._unhealthy: set[str] = set()
        self._lock = threading.Lock()
        self._versions = Versioned()

    def set_health(self, widget: str, healthy: bool) -> None:
        with self._lock:
            (self._unhealthy.discard if healthy else self._unhealthy.add)(widget)
        self._versions.bump()

    def options(self) -> pb.DevicePluginOptions:
        return pb.DevicePluginOptions()  # no preferred allocation: the manager picks

    def devices(self) -> list[pb.Device]:
        with self._lock:
            return [pb.Device(ID=w, health=UNHEALTHY if w in self._unhealthy else HEALTHY) for w in self.ids]

    def wait_changed(self, seen: int, timeout_s: float) -> int:
        return self._versions.wait_changed(seen, timeout_s)

    def preferred(self, available: list[str], must_include: list[str], size: int) -> list[str]:
        return (list(must_include) + [a for a in available if a not in must_include])[:size]

    def allocate(self, ids: list[str]) -> pb.ContainerAllocateResponse:
        unknown = [i for i in ids if i not in self.ids]
        if unknown:
            raise ValueError(f"unknown widgets {unknown}")
        return pb.ContainerAllocateResponse(
            envs={"WIDGETS": ",".join(ids)},
            mounts=[pb.Mount(container_path="/run/widgets", host_path=os.path.join(self.state_dir), read_only=True)],
        )

    def pre_start(self, ids: list[str]) -> None:
        return None


def widget_plugin(plugin_dir: str | os.PathLike[str], count: int = 2, watch_interval_s: float = 1.0) -> PluginServer:
    return PluginServer(WidgetCore(count), plugin_dir, SOCKET_NAME, watch_interval_s=watch_interval_s)
