"""The Node object and its heartbeat: registration, capacity/allocatable (host + device
plugins), addresses, conditions, and the Lease in ``kube-node-lease`` renewed every period."""

from __future__ import annotations

import logging
import os
import platform
import shutil
import socket
from datetime import datetime
from typing import Any

from kray.actors.framework.ports import Clock
from kray.client.errors import Conflict, NotFound
from kray.crds import Lease, Node

from .ports import ApiPort, CriPort, DevicePort, KubeletConfig

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _meminfo(key: str) -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def host_memory_bytes() -> int:
    return _meminfo("MemTotal") or 0


def mem_available_bytes() -> int | None:
    return _meminfo("MemAvailable")


def detect_ip(hostname: str) -> str:
    try:
        return socket.gethostbyname(hostname)
    except OSError:
        return "127.0.0.1"


class NodeStatusManager:
    def __init__(
        self,
        node_name: str,
        api: ApiPort,
        cri: CriPort,
        devices: DevicePort | None,
        clock: Clock,
        config: KubeletConfig,
    ) -> None:
        self.node_name, self.api, self.cri, self.devices = node_name, api, cri, devices
        self.clock, self.config = clock, config
        self.node_ip = config.node_ip or detect_ip(config.hostname)
        self.registered = False
        self.next_lease = 0.0
        self.next_status = 0.0
        self.last_written: dict[str, Any] | None = None

    # --- what the node has ------------------------------------------------------------------
    def capacity(self) -> dict[str, str]:
        cap = {
            "cpu": self.config.cpu or str(os.cpu_count() or 1),
            "memory": self.config.memory or f"{host_memory_bytes() // 1024}Ki",
            "pods": str(self.config.max_pods),
        }
        if self.config.ephemeral_storage_dir:
            try:
                cap["ephemeral-storage"] = str(shutil.disk_usage(self.config.ephemeral_storage_dir).total)
            except OSError:
                pass
        if self.devices is not None:
            cap.update({k: str(v) for k, v in self.devices.capacity().items()})
        return cap

    def allocatable(self) -> dict[str, str]:
        alloc = self.capacity()
        if self.devices is not None:
            alloc.update({k: str(v) for k, v in self.devices.allocatable().items()})
        return alloc

    async def _conditions(self, now: datetime) -> list[dict[str, Any]]:
        try:
            conds = {c.type: c for c in (await self.cri.status()).status.conditions}
            runtime_ok = conds.get("RuntimeReady") is not None and conds["RuntimeReady"].status
            net_ok = not self.config.pod_cidr or (
                conds.get("NetworkReady") is not None and conds["NetworkReady"].status
            )
            why = "" if runtime_ok and net_ok else "container runtime network not ready"
        except Exception as exc:  # the runtime is down: the node is not ready
            runtime_ok, net_ok, why = False, False, f"container runtime is down: {exc}"
        avail = mem_available_bytes()
        mem_pressure = avail is not None and avail < 100 * 1024 * 1024
        disk_pressure = False
        if self.config.ephemeral_storage_dir:
            try:
                du = shutil.disk_usage(self.config.ephemeral_storage_dir)
                disk_pressure = du.free < du.total * 0.1
            except OSError:
                pass
        ts = _iso(now)

        def cond(t: str, status: bool, reason: str, msg: str) -> dict[str, Any]:
            return {
                "type": t,
                "status": "True" if status else "False",
                "reason": reason,
                "message": msg,
                "lastHeartbeatTime": ts,
            }

        ready = runtime_ok and net_ok
        return [
            cond(
                "MemoryPressure",
                mem_pressure,
                "KubeletHasInsufficientMemory" if mem_pressure else "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available" if not mem_pressure else "low memory",
            ),
            cond(
                "DiskPressure",
                disk_pressure,
                "KubeletHasDiskPressure" if disk_pressure else "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure" if not disk_pressure else "low disk",
            ),
            cond("PIDPressure", False, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond(
                "Ready",
                ready,
                "KubeletReady" if ready else "KubeletNotReady",
                "kubelet is posting ready status" if ready else why,
            ),
        ]

    def _labels(self) -> dict[str, str]:
        return {
            "kubernetes.io/hostname": self.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": _ARCH.get(platform.machine(), platform.machine()),
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": _ARCH.get(platform.machine(), platform.machine()),
            **self.config.labels,
        }

    async def _status(self, now: datetime) -> dict[str, Any]:
        return {
            "capacity": self.capacity(),
            "allocatable": self.allocatable(),
            "phase": "Running",
            "conditions": await self._conditions(now),
            "addresses": [
                {"type": "InternalIP", "address": self.node_ip},
                {"type": "Hostname", "address": self.config.hostname},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.config.log_port}},
            "nodeInfo": {
                "kernelVersion": platform.release(),
                "osImage": platform.platform(),
                "operatingSystem": "linux",
                "architecture": _ARCH.get(platform.machine(), platform.machine()),
                "containerRuntimeVersion": "kray://0.1.0",
                "kubeletVersion": "v1.30.0-kray",
            },
        }

    # --- writes -----------------------------------------------------------------------------
    async def register(self) -> None:
        now = self.clock.now()
        status = await self._status(now)
        for c in status["conditions"]:
            c["lastTransitionTime"] = c["lastHeartbeatTime"]
        spec: dict[str, Any] = {}
        if self.config.pod_cidr:
            spec = {"podCIDR": self.config.pod_cidr, "podCIDRs": [self.config.pod_cidr]}
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name, "labels": self._labels()},
            "spec": spec,
            "status": status,
        }
        try:
            node = await self.api.create(Node.model_validate(body))
        except Conflict:  # registered before (a restarted kubelet): keep it, refresh labels and spec
            node = await self.api.get(Node, self.node_name)
            node.metadata.labels = {**(node.metadata.labels or {}), **self._labels()}
            if self.config.pod_cidr:
                node.spec.pod_cidr, node.spec.pod_cidrs = self.config.pod_cidr, [self.config.pod_cidr]
            node = await self.api.update(node)
        self.registered = True
        await self.update_status(force=True, node=node)

    async def update_status(self, force: bool = False, node: Node | None = None) -> None:
        """Write the status when something but the heartbeat changed, or when the period is up."""
        now = self.clock.now()
        status = await self._status(now)
        comparable = {k: v for k, v in status.items() if k != "conditions"}
        comparable["conditions"] = [
            {k: v for k, v in c.items() if k != "lastHeartbeatTime"} for c in status["conditions"]
        ]
        if not force and comparable == self.last_written and self.clock.monotonic() < self.next_status:
            return
        for _ in range(3):
            node = node or await self.api.get(Node, self.node_name)
            old = {c.type: c for c in (node.status.conditions if node.status else None) or []}
            for c in status["conditions"]:
                prev = old.get(c["type"])
                same = prev is not None and prev.status == c["status"] and prev.last_transition_time is not None
                c["lastTransitionTime"] = (
                    _iso(prev.last_transition_time) if same and prev and prev.last_transition_time else _iso(now)
                )
            raw = node.to_dict()
            raw["status"] = {**raw.get("status", {}), **status}
            try:
                await self.api.update_status(Node.model_validate(raw))
                break
            except Conflict:
                node = None
        self.last_written = comparable
        self.next_status = self.clock.monotonic() + self.config.node_status_period

    async def renew_lease(self) -> None:
        now = self.clock.now()
        try:
            lease = await self.api.get(Lease, self.node_name, LEASE_NAMESPACE)
        except NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.node_name, "namespace": LEASE_NAMESPACE},
                "spec": {
                    "holderIdentity": self.node_name,
                    "leaseDurationSeconds": self.config.lease_duration,
                    "renewTime": now,
                },
            }
            await self.api.create(Lease.model_validate(body))
        else:
            lease.spec.holder_identity = self.node_name
            lease.spec.lease_duration_seconds = self.config.lease_duration
            lease.spec.renew_time = now
            await self.api.update(lease)
        self.next_lease = self.clock.monotonic() + self.config.lease_period

    async def tick(self) -> None:
        if not self.registered:
            await self.register()
        if self.clock.monotonic() >= self.next_lease:
            await self.renew_lease()
        await self.update_status()
