"""The kubelet's ports and its configuration.

The core is handed these, never concrete clients, so unit tests drive it with the in-memory
API server and the in-memory CRI of ``fakes.py`` (both with real semantics).
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterator, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from kray.deviceplugins.api.usage import DeviceUsage
from kray.runtime.cri import api_pb2 as pb
from kray.runtime.cri import portforward_pb2 as pfpb

# CRI labels that tie a sandbox/container to its Pod (the names the real kubelet uses), so a
# restarted kubelet finds what it started before.
POD_UID = "io.kubernetes.pod.uid"
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
CONTAINER_NAME = "io.kubernetes.container.name"
CONTAINER_KIND = "io.kray.container.kind"  # "init" or "app"
# Remembered on the container because a restarted kubelet has no other record of them.
ANN_GRACE = "io.kubernetes.pod.terminationGracePeriod"


class CriPort(Protocol):
    """The subset of ``kray.runtime.cri.client.RuntimeClient`` the kubelet calls. Errors are
    ``grpc.aio.AioRpcError`` with the CRI status code (NOT_FOUND, ALREADY_EXISTS, ...)."""

    async def status(self, verbose: bool = False) -> pb.StatusResponse: ...

    async def run_pod_sandbox(self, config: pb.PodSandboxConfig, runtime_handler: str = "") -> str: ...

    async def stop_pod_sandbox(self, sandbox_id: str) -> None: ...

    async def remove_pod_sandbox(self, sandbox_id: str) -> None: ...

    async def pod_sandbox_status(self, sandbox_id: str, verbose: bool = False) -> pb.PodSandboxStatusResponse: ...

    async def list_pod_sandbox(self, filter: pb.PodSandboxFilter | None = None) -> list[pb.PodSandbox]: ...

    async def create_container(
        self, sandbox_id: str, config: pb.ContainerConfig, sandbox_config: pb.PodSandboxConfig | None = None
    ) -> str: ...

    async def start_container(self, container_id: str) -> None: ...

    async def stop_container(self, container_id: str, timeout: int = 0) -> None: ...

    async def remove_container(self, container_id: str) -> None: ...

    async def list_containers(self, filter: pb.ContainerFilter | None = None) -> list[pb.Container]: ...

    async def container_status(self, container_id: str, verbose: bool = False) -> pb.ContainerStatus: ...

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: int = 0) -> pb.ExecSyncResponse: ...

    async def list_container_stats(self, filter: pb.ContainerStatsFilter | None = None) -> list[pb.ContainerStats]:
        """CPU and memory of the running containers (rates once the runtime has an earlier sample)."""
        ...

    def exec_stream(self, requests: AsyncIterator[pb.ExecStreamRequest]) -> AsyncGenerator[pb.ExecStreamResponse, None]:
        """Output as it comes, then ``exited``; ``requests``: what to run, then stdin. With
        ``tty`` the command is on a terminal: one output stream (stdout), and ``resize``
        requests (the first request's: its starting size) set its size."""
        ...

    def port_forward(
        self, requests: AsyncIterator[pfpb.PortForwardRequest]
    ) -> AsyncGenerator[pfpb.PortForwardResponse, None]:
        """Bytes from a port inside a pod; ``requests``: the sandbox and port, then bytes to it."""
        ...

    async def image_status(self, image: str, verbose: bool = False) -> pb.ImageStatusResponse: ...

    async def list_images(self, image: str = "") -> list[pb.Image]: ...

    async def remove_image(self, image: str) -> None: ...

    async def image_fs_info(self) -> pb.ImageFsInfoResponse: ...

    async def pull_image(
        self, image: str, sandbox_config: pb.PodSandboxConfig | None = None, auth: pb.AuthConfig | None = None
    ) -> str: ...


class ApiPort(Protocol):
    """What the kubelet reads and writes through the API server; ``AsyncClient`` as is."""

    async def get(self, kind: Any, name: str, namespace: str | None = None) -> Any: ...

    async def list(
        self,
        kind: Any,
        namespace: str | None = None,
        *,
        all_namespaces: bool = False,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
    ) -> Any: ...

    async def create(self, obj: Any) -> Any: ...

    async def update(self, obj: Any) -> Any: ...

    async def update_status(self, obj: Any) -> Any: ...

    # Unused by the kubelet itself; it makes an ApiPort a framework Writer (the EventRecorder's).
    async def patch(self, kind: Any, name: str, patch: Any, namespace: str | None = None) -> Any: ...

    async def delete(
        self,
        kind: Any,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: str | None = None,
        preconditions: dict[str, str] | None = None,
        grace_period_seconds: int | None = None,
    ) -> Any: ...

    def watch(
        self,
        kind: Any,
        namespace: str | None = None,
        *,
        all_namespaces: bool = False,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
        allow_bookmarks: bool = False,
    ) -> AsyncIterator[Any]: ...


class VolumePort(Protocol):
    """``kray.runtime.volumes.VolumeManager`` (blocking: called in a worker thread)."""

    def node_publish(self, vol: Any, pod_uid: str, target: Path | None = None) -> Path: ...

    def cleanup_pod(self, pod_uid: str) -> None: ...


class DevicePort(Protocol):
    """``kray.deviceplugins.manager.DeviceManager`` (blocking: called in a worker thread)."""

    def capacity(self) -> dict[str, int]: ...

    def allocatable(self) -> dict[str, int]: ...

    def allocate(
        self,
        pod_uid: str,
        container: str,
        resource: str,
        count: int,
        requested: list[str] | None = None,
        init_containers: Collection[str] = (),
    ) -> Any:
        """``requested``: the scheduler's devices (``kray.io/gpu-devices``), taken when free;
        ``init_containers``: the pod's, whose devices this container may reuse."""
        ...

    def free_pod(self, pod_uid: str) -> list[str]: ...

    def retain_pods(self, active: set[str]) -> list[str]: ...


@runtime_checkable
class DeviceUsagePort(Protocol):
    """Optional on a ``DevicePort`` (``DeviceManager`` and ``FakeDevices`` have it): how busy the
    node's devices are, for ``/stats/summary``. Blocking: called in a worker thread."""

    def usage(self) -> dict[str, DeviceUsage]:
        """Device id -> usage (a time-sliced ``<uuid>::<i>`` maps to its GPU's)."""
        ...

    def container_usage(self) -> dict[tuple[str, str], list[DeviceUsage]]:
        """(pod uid, container name) -> its devices' usage, each physical device once."""
        ...


def _default_hostname() -> str:
    return os.uname().nodename


@dataclass
class KubeletConfig:
    pod_cidr: str = ""
    node_ip: str = ""  # "" -> the address the hostname resolves to
    hostname: str = field(default_factory=_default_hostname)
    cpu: str | None = None  # None -> the host's cores
    memory: str | None = None  # None -> MemTotal
    max_pods: int = 110
    ephemeral_storage_dir: str | None = None  # capacity from this filesystem, when set
    labels: dict[str, str] = field(default_factory=dict)
    lease_period: float = 10.0  # heartbeat
    lease_duration: int = 40
    node_status_period: float = 60.0  # full status write even without changes
    tick: float = 0.5  # runtime relist (PLEG), probes, due retries
    log_host: str = "0.0.0.0"
    log_port: int = 10250
    backoff_initial: float = 10.0
    backoff_max: float = 300.0
    backoff_reset: float = 600.0  # a container that ran this long starts its back-off afresh
    image_backoff_initial: float = 10.0
    runtime_handler: str = ""
    default_grace: int = 30
    # Pods with dnsPolicy ClusterFirst resolve through these (the node's cluster DNS server);
    # empty: they get the node's own resolv.conf, as with dnsPolicy Default.
    cluster_dns: list[str] = field(default_factory=list)
    cluster_domain: str = "cluster.local"
    # Image GC (Kubernetes' imageGCHighThresholdPercent, imageGCLowThresholdPercent, imageMinimumGCAge).
    image_gc_high_threshold_percent: int = 85
    image_gc_low_threshold_percent: int = 80
    image_minimum_gc_age: float = 120.0
    image_gc_period: float = 300.0
    event_queue_size: int = 1000  # Pod Events waiting for the API server; more are dropped (counted)
