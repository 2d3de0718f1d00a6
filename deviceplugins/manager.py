"""The device manager: the kubelet's side of the device plugin protocol.

It serves Registration on ``<plugin_dir>/kubelet.sock``; for each plugin that registers it
opens the plugin's socket and follows ListAndWatch, keeping per-resource healthy/unhealthy
device sets (the Node's capacity and allocatable). ``allocate`` picks devices for a pod's
container (the scheduler's choice when usable, else asking the plugin's GetPreferredAllocation
when it offers one; a finished init container's devices first), calls Allocate,
and records the result in a checkpoint file, which a restarted manager reads back so that a
device held by a running pod is never handed to a second one. ``usage``/``container_usage``
(usage.py) ask the plugins that serve kray's DeviceUsage extension how busy their devices are;
the Registration service and the connection to each plugin are registration.py.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent import futures
from pathlib import Path

import grpc

from .allocation import base_uuid
from .api import HEALTHY, KUBELET_SOCKET, VERSION, pb, pb_grpc
from .api.usage import DeviceUsage
from .checkpoint import Checkpoint, ContainerDevices, CorruptCheckpointError
from .registration import PluginEndpoint, RegistrationError, RegistrationService
from .usage import DeviceUsageMixin

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "kubelet_internal_checkpoint"
# sockaddr_un.sun_path is 108 bytes with the terminating NUL; gRPC fails cryptically beyond it.
MAX_SOCKET_PATH = 107

__all__ = [
    "CHECKPOINT_NAME",
    "ContainerDevices",
    "CorruptCheckpointError",
    "DeviceManager",
    "DeviceUsage",
    "InsufficientDevicesError",
    "RegistrationError",
]


class InsufficientDevicesError(Exception):
    """Not enough free healthy devices of a resource (Kubernetes: UnexpectedAdmissionError)."""


def check_socket_path(path: Path) -> None:
    """Fail early, naming the path, when a unix socket path is too long to bind."""
    n = len(os.fsencode(str(path)))
    if n > MAX_SOCKET_PATH:
        raise ValueError(f"unix socket path {path} is {n} bytes; the limit is {MAX_SOCKET_PATH}: use a shorter root")


class DeviceManager(DeviceUsageMixin):
    def __init__(
        self,
        plugin_dir: str | os.PathLike[str],
        checkpoint_path: str | os.PathLike[str] | None = None,
        socket_name: str = KUBELET_SOCKET,
        rpc_timeout_s: float = 10.0,
        usage_timeout_s: float = 1.0,
        usage_ttl_s: float = 1.5,
    ) -> None:
        self.plugin_dir = Path(plugin_dir)
        self.socket_path = self.plugin_dir / socket_name
        self.checkpoint = Checkpoint(Path(checkpoint_path) if checkpoint_path else self.plugin_dir / CHECKPOINT_NAME)
        self.checkpoint_error: str | None = None
        self._rpc_timeout_s = rpc_timeout_s
        self._cond = threading.Condition()  # guards endpoints and allocations; notified on change
        self._alloc_lock = threading.Lock()  # one allocation at a time: choose + Allocate + record
        self._endpoints: dict[str, PluginEndpoint] = {}
        # (pod uid, container) -> resource -> devices
        self._allocations: dict[tuple[str, str], dict[str, ContainerDevices]] = {}
        self._server: grpc.Server | None = None
        self._init_usage(usage_timeout_s, usage_ttl_s)
        # Bumped on every registration and ListAndWatch update: watchers of device health
        # (the NodeDevices publisher) compare it instead of diffing device sets.
        self.generation = 0

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        check_socket_path(self.socket_path)
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._allocations = self.checkpoint.load()
        except CorruptCheckpointError as e:
            # Like the kubelet: carry on, but say so; the file is kept aside for inspection.
            self.checkpoint_error = str(e)
            log.error("device checkpoint unusable, starting without allocations: %s", e)
            self.checkpoint.quarantine()
            self._allocations = {}
        self.socket_path.unlink(missing_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="dm-registration"))
        pb_grpc.add_RegistrationServicer_to_server(RegistrationService(self), server)
        server.add_insecure_port(f"unix://{self.socket_path}")
        server.start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0.5).wait(2)
            self._server = None
        with self._cond:
            endpoints, self._endpoints = list(self._endpoints.values()), {}
            self._cond.notify_all()
        for ep in endpoints:
            ep.close()
        self.socket_path.unlink(missing_ok=True)

    # -- registration and ListAndWatch ----------------------------------------------------------

    def _register(self, req: pb.RegisterRequest) -> None:
        if req.version != VERSION:
            raise RegistrationError(f"unsupported device plugin API version {req.version!r} (want {VERSION})")
        if "/" not in req.resource_name or req.resource_name.startswith(("kubernetes.io/", "requests.")):
            raise RegistrationError(f"invalid extended resource name {req.resource_name!r}")
        if "/" in req.endpoint or not req.endpoint:
            raise RegistrationError(f"endpoint must be a socket name in the plugin dir, got {req.endpoint!r}")
        socket = self.plugin_dir / req.endpoint
        channel = grpc.insecure_channel(f"unix://{socket}")
        options = pb.DevicePluginOptions()
        options.CopyFrom(req.options)
        ep = PluginEndpoint(req.resource_name, socket, options, channel, pb_grpc.DevicePluginStub(channel))
        with self._cond:
            old = self._endpoints.get(req.resource_name)
            self._endpoints[req.resource_name] = ep  # a re-registering plugin replaces its old self
            self.generation += 1
        if old is not None:
            old.close()
        threading.Thread(target=self._watch, args=(ep,), name=f"dm-law-{req.resource_name}", daemon=True).start()
        log.info("device plugin %s registered at %s", req.resource_name, socket)

    def _watch(self, ep: PluginEndpoint) -> None:
        try:
            ep.call = ep.stub.ListAndWatch(pb.Empty())
            for resp in ep.call:
                healthy = {d.ID for d in resp.devices if d.health == HEALTHY}
                with self._cond:
                    ep.healthy, ep.unhealthy = healthy, {d.ID for d in resp.devices} - healthy
                    self.generation += 1
                    self._cond.notify_all()
        except grpc.RpcError as e:
            if ep.connected:
                log.warning("ListAndWatch of %s ended: %s", ep.resource, e.code())
        finally:
            with self._cond:
                # A plugin that went away keeps its capacity but nothing is allocatable from it.
                ep.unhealthy |= ep.healthy
                ep.healthy = set()
                ep.connected = False
                self.generation += 1
                self._cond.notify_all()

    # -- node status ----------------------------------------------------------------------------

    def capacity(self) -> dict[str, int]:
        with self._cond:
            return {r: len(ep.healthy) + len(ep.unhealthy) for r, ep in self._endpoints.items()}

    def allocatable(self) -> dict[str, int]:
        """Healthy devices per resource: what the Node advertises (allocated ones included)."""
        with self._cond:
            return {r: len(ep.healthy) for r, ep in self._endpoints.items()}

    def healthy_devices(self, resource: str) -> set[str]:
        with self._cond:
            ep = self._endpoints.get(resource)
            return set(ep.healthy) if ep else set()

    def unhealthy_devices(self, resource: str) -> set[str]:
        with self._cond:
            ep = self._endpoints.get(resource)
            return set(ep.unhealthy) if ep else set()

    def resources(self) -> list[str]:
        with self._cond:
            return sorted(self._endpoints)

    def in_use(self, resource: str) -> set[str]:
        with self._cond:
            return {d for per in self._allocations.values() if resource in per for d in per[resource].device_ids}

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
        """Block until ``predicate`` holds after some device update (for callers and tests)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
            return True

    # -- allocation -----------------------------------------------------------------------------

    def allocate(
        self,
        pod_uid: str,
        container: str,
        resource: str,
        count: int,
        requested: Sequence[str] | None = None,
        init_containers: Collection[str] = (),
    ) -> ContainerDevices:
        """Give ``count`` devices of ``resource`` to a container; idempotent per container.

        ``requested``: the devices the scheduler chose (``kray.io/gpu-devices``). They are
        taken as is when all are free and healthy; otherwise the plugin's preference wins.
        ``init_containers``: the names of the pod's init containers. They ran to completion,
        one at a time, before this container starts, so the devices they hold are reused
        first (Kubernetes' devicesToReuse) unless another of the pod's app containers already
        took them: an init container's GPUs are not held twice over.
        """
        who = f"pod {pod_uid} container {container}"
        with self._alloc_lock:
            existing = self.allocation(pod_uid, container).get(resource)
            if existing is not None:
                return existing  # kubelet restarts re-admit running pods: same devices again
            with self._cond:
                ep = self._endpoints.get(resource)
                if ep is None:
                    raise InsufficientDevicesError(f"insufficient {resource}: no device plugin registered")
                used = {d for per in self._allocations.values() if resource in per for d in per[resource].device_ids}
                free = sorted(ep.healthy - used)
                reuse = sorted(self._reusable_locked(pod_uid, resource, set(init_containers)) & ep.healthy)
            if len(free) + len(reuse) < count:
                more = f", {len(reuse)} reusable" if reuse else ""
                raise InsufficientDevicesError(
                    f"insufficient {resource}: requested {count}, {len(free)} free of {len(ep.healthy)} healthy{more}"
                )
            ids = self._requested(requested, reuse + free, count, who)
            if ids is None:
                ids = self._choose(ep, free, count, reuse)
            resp = ep.stub.Allocate(
                pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=ids)]),
                timeout=self._rpc_timeout_s,
            )
            got = ContainerDevices.from_response(resource, ids, resp.container_responses[0])
            with self._cond:
                self._allocations.setdefault((pod_uid, container), {})[resource] = got
                self._save_locked()
            return got

    def _reusable_locked(self, pod_uid: str, resource: str, init_containers: set[str]) -> set[str]:
        """Devices of the pod's init containers that none of its other containers holds."""
        held: dict[bool, set[str]] = {True: set(), False: set()}
        for (uid, name), per in self._allocations.items():
            if uid == pod_uid and resource in per:
                held[name in init_containers].update(per[resource].device_ids)
        return held[True] - held[False]

    @staticmethod
    def _requested(requested: Sequence[str] | None, free: list[str], count: int, who: str) -> list[str] | None:
        """The scheduler's devices as advertised ids, or None (with the reason logged) when unusable.

        ``free``: the devices this container may take (free ones and reusable ones). The
        scheduler names GPUs (NodeDevices names); under time-slicing a GPU is advertised as
        ``<uuid>::<i>``, so a plain GPU name takes one free replica of it."""
        if requested is None:
            return None
        if len(requested) != count:
            log.warning("%s: scheduler chose %d devices for %d; using the plugin's choice", who, len(requested), count)
            return None
        ids: list[str] = []
        for want in requested:
            pick = want if want in free and want not in ids else None
            if pick is None:
                pick = next((d for d in free if d not in ids and base_uuid(d) == want and d != want), None)
            if pick is None:
                log.warning(
                    "%s: scheduler-chosen device %s is not free and healthy here; using the plugin's choice", who, want
                )
                return None
            ids.append(pick)
        return ids

    def _choose(self, ep: PluginEndpoint, free: list[str], count: int, reuse: Sequence[str] = ()) -> list[str]:
        """Reusable devices first (all of them if they suffice), the rest as the plugin prefers."""
        reuse = list(reuse)
        if len(reuse) >= count:
            return reuse[:count]
        available = reuse + free
        if ep.options.get_preferred_allocation_available:
            req = pb.PreferredAllocationRequest(
                container_requests=[
                    pb.ContainerPreferredAllocationRequest(
                        available_deviceIDs=available, must_include_deviceIDs=reuse, allocation_size=count
                    )
                ]
            )
            try:
                resp = ep.stub.GetPreferredAllocation(req, timeout=self._rpc_timeout_s)
                ids = list(resp.container_responses[0].deviceIDs)
                # A hint only: use it if it is a valid choice, else fall back to our own.
                valid = len(ids) == count and len(set(ids)) == count and set(reuse) <= set(ids) <= set(available)
                if valid:
                    return ids
                log.warning("ignoring invalid preferred allocation from %s: %s", ep.resource, ids)
            except grpc.RpcError as e:
                log.warning("GetPreferredAllocation of %s failed: %s", ep.resource, e.code())
        return reuse + free[: count - len(reuse)]

    def pre_start(self, pod_uid: str, container: str) -> None:
        """Call PreStartContainer on the plugins that asked for it, before the container starts."""
        for resource, devs in self.allocation(pod_uid, container).items():
            with self._cond:
                ep = self._endpoints.get(resource)
            if ep is not None and ep.options.pre_start_required:
                ep.stub.PreStartContainer(
                    pb.PreStartContainerRequest(devices_ids=devs.device_ids), timeout=self._rpc_timeout_s
                )

    def allocation(self, pod_uid: str, container: str) -> dict[str, ContainerDevices]:
        with self._cond:
            return dict(self._allocations.get((pod_uid, container), {}))

    def allocated_ids(self, pod_uid: str, resource: str) -> list[str]:
        """Every device of ``resource`` the pod's containers hold, once each (an app container
        may hold one of its init containers' devices too)."""
        with self._cond:
            ids = (
                d
                for (uid, _), per in self._allocations.items()
                if uid == pod_uid and resource in per
                for d in per[resource].device_ids
            )
            return list(dict.fromkeys(ids))

    def allocated_pods(self) -> set[str]:
        with self._cond:
            return {uid for uid, _ in self._allocations}

    def free_pod(self, pod_uid: str) -> list[str]:
        """Release every device held by the pod's containers; returns the freed ids."""
        with self._cond:
            keys = [k for k in self._allocations if k[0] == pod_uid]
            freed = list(
                dict.fromkeys(d for k in keys for per in self._allocations.pop(k).values() for d in per.device_ids)
            )
            if keys:
                self._save_locked()
            return freed

    def retain_pods(self, active: set[str]) -> list[str]:
        """Free the devices of every pod not in ``active`` (the kubelet's periodic cleanup)."""
        freed: list[str] = []
        for uid in self.allocated_pods() - active:
            freed += self.free_pod(uid)
        return freed

    def _save_locked(self) -> None:
        self.checkpoint.save(self._allocations)
