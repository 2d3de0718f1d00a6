"""NodeRuntime's records as CRI protobuf messages: container and image status, sandbox state, and
the label selector match the List* calls filter with. Kept apart from server.py, whose servicers
call these and do nothing else with the records."""

from __future__ import annotations

from typing import Any

from kray.runtime.containers import ContainerStatus
from kray.runtime.cri import api_pb2 as pb
from kray.runtime.images import ImageInfo
from kray.runtime.logs import parse_time
from kray.runtime.records import ContainerRecord, SandboxRecord

CONTAINER_STATES = {
    "created": pb.CONTAINER_CREATED,
    "running": pb.CONTAINER_RUNNING,
    "exited": pb.CONTAINER_EXITED,
}


def _ns(ts: str | None) -> int:
    if not ts:
        return 0
    try:
        return parse_time(ts)
    except ValueError:
        return 0


def sandbox_state(rec: SandboxRecord) -> pb.PodSandboxState:
    return pb.SANDBOX_READY if rec.state == "ready" else pb.SANDBOX_NOTREADY


def labels_match(labels: Any, selector: Any) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def container_status_pb(rec: ContainerRecord, st: ContainerStatus) -> pb.ContainerStatus:
    cfg = rec.pb_config()
    out = pb.ContainerStatus(
        id=rec.id,
        metadata=cfg.metadata,
        state=CONTAINER_STATES.get(st.state, pb.CONTAINER_UNKNOWN),
        created_at=rec.created_at,
        started_at=_ns(st.started_at),
        finished_at=_ns(st.finished_at) if st.state == "exited" else 0,
        exit_code=int(st.exit_code or 0) if st.state == "exited" else 0,
        image=pb.ImageSpec(image=rec.image_name),
        image_ref=rec.image_id,
        image_id=rec.image_id,
        reason=st.reason if st.state == "exited" else "",
        message=st.message,
        labels=cfg.labels,
        annotations=cfg.annotations,
        mounts=cfg.mounts,
        log_path=rec.log_path,
        resources=pb.ContainerResources(linux=cfg.linux.resources),
        user=pb.ContainerUser(linux=pb.LinuxContainerUser(uid=rec.uid, gid=rec.gid)),
    )
    if st.state == "exited" and st.finished_at is None:
        out.finished_at = rec.created_at  # the shim vanished without a record: say when we knew
    return out


def image_pb(info: ImageInfo) -> pb.Image:
    user = str(info.config.get("User") or "")
    name = user.partition(":")[0]
    img = pb.Image(
        id=info.config_digest,
        repo_tags=[info.name],
        repo_digests=[info.repo_digest or f"{info.name.rsplit(':', 1)[0]}@{info.digest}"],
        size=max(1, info.size),
        spec=pb.ImageSpec(image=info.name),
        # An imported image has no registry to pull it from again: exempt from image GC, and
        # the kubelet treats it as present whatever the pull policy.
        pinned=not info.repo_digest,
    )
    if name.isdigit():
        img.uid.value = int(name)
    else:
        img.username = name
    return img
