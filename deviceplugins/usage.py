"""How busy the plugins' devices are (kray's DeviceUsage extension of the device plugin API), as
a mixin of DeviceManager: `usage` asks every plugin that serves the extension, behind a short-lived
cache, and `container_usage` maps the answer onto the devices each container holds. Kept apart
from manager.py: it reads the manager's endpoints and allocations but takes no part in
registration, ListAndWatch or allocation.
"""

from __future__ import annotations

import logging
import threading
import time

import grpc

from .allocation import base_uuid
from .api.usage import DeviceUsage, get_usage
from .checkpoint import ContainerDevices
from .registration import PluginEndpoint

log = logging.getLogger("kray.deviceplugins.manager")  # the manager's log, as before the split


class DeviceUsageMixin:
    """`usage`/`container_usage` over DeviceManager's endpoints and allocations."""

    _cond: threading.Condition
    _endpoints: dict[str, PluginEndpoint]
    _allocations: dict[tuple[str, str], dict[str, ContainerDevices]]

    def _init_usage(self, timeout_s: float, ttl_s: float) -> None:
        # Usage is asked for on every /stats/summary (node and pod metrics of one `kray top`
        # scrape twice): a short-lived cache keeps a busy plugin from being asked each time.
        self._usage_timeout_s, self._usage_ttl_s = timeout_s, ttl_s
        self._usage_lock = threading.Lock()
        self._usage_cache: tuple[float, dict[str, DeviceUsage]] | None = None

    def usage(self) -> dict[str, DeviceUsage]:
        """Device id -> usage, for the plugins that serve the extension: each device under its
        plugin's id (a GPU's UUID) and under every id advertised for it (``<uuid>::<i>``)."""
        with self._usage_lock:
            if self._usage_cache is not None and time.monotonic() - self._usage_cache[0] < self._usage_ttl_s:
                return dict(self._usage_cache[1])
            with self._cond:
                endpoints = [ep for ep in self._endpoints.values() if ep.connected and ep.serves_usage]
            found: dict[str, DeviceUsage] = {}
            for ep in endpoints:
                try:
                    got = get_usage(ep.channel, ep.resource, self._usage_timeout_s)
                except grpc.RpcError as e:  # a slow or restarting plugin: no figures this time
                    log.info("DeviceUsage of %s failed: %s", ep.resource, e.code())
                    continue
                if got is None:
                    ep.serves_usage = False
                    continue
                mine = {u.id: u for u in got}
                with self._cond:
                    advertised = ep.healthy | ep.unhealthy
                found.update(mine)
                found.update({d: mine[base_uuid(d)] for d in advertised if d not in mine and base_uuid(d) in mine})
            self._usage_cache = (time.monotonic(), found)
            return dict(found)

    def container_usage(self) -> dict[tuple[str, str], list[DeviceUsage]]:
        """(pod uid, container) -> usage of each device it holds, once per physical device (two
        replicas of one time-sliced GPU are one GPU); containers without known usage are left out."""
        usage = self.usage()
        with self._cond:
            held = {key: [d for per in v.values() for d in per.device_ids] for key, v in self._allocations.items()}
        out: dict[tuple[str, str], list[DeviceUsage]] = {}
        for key, ids in held.items():
            devices = {u.id: u for u in (usage.get(d) for d in ids) if u is not None}
            if devices:
                out[key] = list(devices.values())
        return out
