"""kray's DeviceUsage extension (``deviceusage.proto``) as the device manager and the kubelet see it.

``DeviceUsage`` is one device's figures, tagged with the resource whose plugin reported them;
``get_usage`` asks a plugin over its socket's channel and tells "does not serve the extension"
(None: plugins written for Kubernetes) apart from a failure (``grpc.RpcError``).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from . import deviceusage_pb2 as usage_pb
from . import deviceusage_pb2_grpc as usage_grpc


@dataclass(frozen=True)
class DeviceUsage:
    id: str  # the device as its plugin reports it: a GPU's UUID, even under time-slicing
    resource: str  # e.g. "nvidia.com/gpu"
    model: str = ""
    gpu_percent: int | None = None  # None: the device cannot tell (NVML's NOT_SUPPORTED)
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None

    @property
    def make(self) -> str:
        """The vendor, as the Summary API's ``make`` spells it: "nvidia" for ``nvidia.com/gpu``."""
        return self.resource.split("/", 1)[0].split(".", 1)[0]

    @classmethod
    def from_pb(cls, resource: str, entry: usage_pb.DeviceUsageEntry) -> DeviceUsage:
        def known(name: str) -> int | None:
            return int(getattr(entry, name)) if entry.HasField(name) else None

        return cls(
            id=entry.id,
            resource=resource,
            model=entry.model,
            gpu_percent=known("gpu_percent"),
            memory_used_bytes=known("memory_used_bytes"),
            memory_total_bytes=known("memory_total_bytes"),
        )


def get_usage(channel: grpc.Channel, resource: str, timeout_s: float) -> list[DeviceUsage] | None:
    """The plugin's answer, or None when it does not serve DeviceUsage (UNIMPLEMENTED)."""
    try:
        answer = usage_grpc.DeviceUsageStub(channel).GetUsage(usage_pb.Empty(), timeout=timeout_s)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNIMPLEMENTED:
            return None
        raise
    return [DeviceUsage.from_pb(resource, entry) for entry in answer.devices]
