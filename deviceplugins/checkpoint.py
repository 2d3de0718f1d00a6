"""The device manager's checkpoint: which container holds which devices, and what Allocate said.

The file is JSON with a checksum over its entries (like the kubelet's checkpoint manager), so
a truncated or hand-edited file is detected rather than silently trusted. Writes go through a
temporary file and ``os.replace``, so a crash mid-write leaves the previous checkpoint intact.
The Allocate answer is kept too: a restarted kubelet can re-create a container with the same
env and device nodes without asking the plugin again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .api import pb

FORMAT_VERSION = 1


class CorruptCheckpointError(Exception):
    pass


@dataclass
class ContainerDevices:
    """Devices of one resource given to one container, with what the container needs for them."""

    resource: str
    device_ids: list[str]
    envs: dict[str, str] = field(default_factory=dict)
    mounts: list[dict[str, Any]] = field(default_factory=list)  # containerPath, hostPath, readOnly
    devices: list[dict[str, str]] = field(default_factory=list)  # containerPath, hostPath, permissions
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_response(cls, resource: str, ids: list[str], resp: pb.ContainerAllocateResponse) -> ContainerDevices:
        return cls(
            resource=resource,
            device_ids=list(ids),
            envs=dict(resp.envs),
            mounts=[
                {"containerPath": m.container_path, "hostPath": m.host_path, "readOnly": m.read_only}
                for m in resp.mounts
            ],
            devices=[
                {"containerPath": d.container_path, "hostPath": d.host_path, "permissions": d.permissions}
                for d in resp.devices
            ],
            annotations=dict(resp.annotations),
        )

    def oci_devices(self) -> list[Any]:
        """The device nodes as ``runtime.oci.Device`` (stat'ed on the host, renamed for the container)."""
        from dataclasses import replace

        from kray.runtime.oci import Device

        return [replace(Device.from_host(d["hostPath"]), path=d["containerPath"]) for d in self.devices]


Allocations = dict[tuple[str, str], dict[str, ContainerDevices]]


def _checksum(entries: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Checkpoint:
    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, allocations: Allocations) -> None:
        entries = [
            {"podUID": uid, "containerName": ctr, **asdict(devs)}
            for (uid, ctr), per in sorted(allocations.items())
            for _, devs in sorted(per.items())
        ]
        data = {"version": FORMAT_VERSION, "entries": entries, "checksum": _checksum(entries)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def load(self) -> Allocations:
        """The saved allocations ({} when there is no file); ``CorruptCheckpointError`` if unreadable."""
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
            entries = data["entries"]
            if data.get("version") != FORMAT_VERSION:
                raise CorruptCheckpointError(f"{self.path}: unknown format version {data.get('version')!r}")
            if data.get("checksum") != _checksum(entries):
                raise CorruptCheckpointError(f"{self.path}: checksum mismatch")
            out: Allocations = {}
            for e in entries:
                e = dict(e)
                key = (e.pop("podUID"), e.pop("containerName"))
                devs = ContainerDevices(**e)
                out.setdefault(key, {})[devs.resource] = devs
            return out
        except CorruptCheckpointError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CorruptCheckpointError(f"{self.path}: {e!r}") from e

    def quarantine(self) -> Path | None:
        """Move an unusable checkpoint aside (``<name>.corrupt``) so the next save starts clean."""
        if not self.path.exists():
            return None
        dest = self.path.with_name(self.path.name + ".corrupt")
        os.replace(self.path, dest)
        return dest
