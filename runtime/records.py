"""What the node runtime keeps per sandbox and per container, and the CRI errors its verbs raise.

Records live on disk (`sandboxes/<id>/sandbox.json`, `containers/<id>/cri.json`) so a restarted
service re-adopts what is running; `RecordCache` keeps them in memory too, re-read only when
their file changed, so listings (the kubelet's every sync, its PLEG relist) stay cheap however
many pods the node has.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf import json_format

from kray.runtime.cri import api_pb2 as pb
from kray.runtime.shim import write_json_atomic

R = TypeVar("R")


class CriError(Exception):
    code = "INTERNAL"


class NotFound(CriError):
    code = "NOT_FOUND"


class AlreadyExists(CriError):
    code = "ALREADY_EXISTS"


class InvalidArgument(CriError):
    code = "INVALID_ARGUMENT"


class FailedPrecondition(CriError):
    code = "FAILED_PRECONDITION"


class DeadlineExceeded(CriError):
    code = "DEADLINE_EXCEEDED"


class Unauthenticated(CriError):
    code = "UNAUTHENTICATED"


class PermissionDenied(CriError):
    code = "PERMISSION_DENIED"


class Unavailable(CriError):
    code = "UNAVAILABLE"


@dataclass
class SandboxRecord:
    id: str
    config: dict[str, Any]  # the PodSandboxConfig, as protobuf JSON
    created_at: int
    state: str = "ready"  # ready | notready
    hostname: str = ""
    netns_path: str | None = None
    ip: str | None = None
    ipc_path: str | None = None
    uts_path: str | None = None
    shm_path: str | None = None
    cgroup_parent: str = ""
    runtime_handler: str = ""
    host_network: bool = False
    host_ipc: bool = False
    host_pid: bool = False
    pid_holder: int = 0  # PID 1 of the pod's shared PID namespace (shareProcessNamespace), seen from the node

    def pb_config(self) -> pb.PodSandboxConfig:
        """Parsed once per record (callers only read it): listings parse no JSON twice."""
        memo: pb.PodSandboxConfig | None = self.__dict__.get("_pb")
        if memo is None:
            memo = self.__dict__["_pb"] = json_format.ParseDict(self.config, pb.PodSandboxConfig())
        return memo


@dataclass
class ContainerRecord:
    id: str
    sandbox_id: str
    config: dict[str, Any]  # the ContainerConfig, as protobuf JSON
    image_id: str
    image_name: str
    log_path: str
    created_at: int
    uid: int = 0
    gid: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def pb_config(self) -> pb.ContainerConfig:
        """Parsed once per record (callers only read it): listings parse no JSON twice."""
        memo: pb.ContainerConfig | None = self.__dict__.get("_pb")
        if memo is None:
            memo = self.__dict__["_pb"] = json_format.ParseDict(self.config, pb.ContainerConfig())
        return memo


def to_json(msg: Any) -> dict[str, Any]:
    return dict(json_format.MessageToDict(msg, preserving_proto_field_name=True))


class RecordCache:
    """Records read from disk, by path, with the file's mtime: every listing used to re-read and
    re-parse every record (O(pods) per call, O(pods^2) for a burst of pod starts)."""

    def __init__(self) -> None:
        self._records: dict[Path, tuple[int, Any]] = {}

    def load(self, path: Path, kind: type[R]) -> R | None:
        """The record in `path`, from memory while the file is unchanged; None when unreadable."""
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            self._records.pop(path, None)
            return None
        cached = self._records.get(path)
        if cached is not None and cached[0] == mtime:
            rec: R = cached[1]
            return rec
        try:
            rec = kind(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        self._records[path] = (mtime, rec)
        return rec

    def store(self, path: Path, rec: Any) -> None:
        write_json_atomic(path, asdict(rec))
        with contextlib.suppress(OSError):
            self._records[path] = (path.stat().st_mtime_ns, rec)

    def forget(self, path: Path) -> None:
        self._records.pop(path, None)
