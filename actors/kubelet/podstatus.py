"""PodStatus from what the runtime holds (Kubernetes' getPhase and container-status rules)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from kray.crds import Pod
from kray.crds.core.container import Container
from kray.runtime.cri import api_pb2 as pb

from .runtimepod import RuntimePod

TERMINAL = ("Succeeded", "Failed")
# The condition types the kubelet computes from the runtime on every sync (Kubernetes'
# PodConditionsByKubelet, with PodReadyToStartContainers). PodScheduled is the scheduler's
# until binding; like Kubernetes' kubelet, ours reports True for a pod bound to its node.
KUBELET_CONDITIONS = frozenset({"PodScheduled", "Initialized", "ContainersReady", "Ready", "PodReadyToStartContainers"})


def _ts(ns: int) -> str | None:
    if ns <= 0:
        return None
    t = datetime.fromtimestamp(ns / 1e9, timezone.utc).replace(microsecond=0)
    return t.isoformat().replace("+00:00", "Z")


def container_id(cid: str) -> str:
    return f"kray://{cid}"


def terminated(st: pb.ContainerStatus) -> dict[str, Any]:
    reason = st.reason or ("Completed" if st.exit_code == 0 else "Error")
    out: dict[str, Any] = {
        "exitCode": st.exit_code,
        "reason": reason,
        "startedAt": _ts(st.started_at),
        "finishedAt": _ts(st.finished_at),
        "containerID": container_id(st.id),
    }
    if st.message:
        out["message"] = st.message
    return {"terminated": {k: v for k, v in out.items() if v is not None}}


def container_status(
    spec: Container,
    rp: RuntimePod,
    waiting: tuple[str, str] | None,
    ready: bool,
    started: bool,
    default_waiting: str,
) -> dict[str, Any]:
    latest = rp.latest(spec.name)
    out: dict[str, Any] = {"name": spec.name, "image": spec.image, "imageID": "", "ready": False}
    out["restartCount"] = latest.metadata.attempt if latest is not None else 0
    last: dict[str, Any] | None = None
    if latest is not None:
        out["containerID"] = container_id(latest.id)
        out["imageID"] = latest.image_ref
    if latest is not None and latest.state == pb.CONTAINER_RUNNING:
        out["state"] = {"running": {"startedAt": _ts(latest.started_at)}}
        out["ready"], out["started"] = ready, started
        prev = rp.previous(spec.name)
        if prev is not None and prev.state == pb.CONTAINER_EXITED:
            last = terminated(prev)
    elif waiting is not None:
        reason, message = waiting
        out["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        out["started"] = False
        if latest is not None and latest.state == pb.CONTAINER_EXITED:
            last = terminated(latest)
    elif latest is not None and latest.state == pb.CONTAINER_EXITED:
        out["state"] = terminated(latest)
        out["started"] = False
        prev = rp.previous(spec.name)
        if prev is not None and prev.state == pb.CONTAINER_EXITED:
            last = terminated(prev)
    else:
        out["state"] = {"waiting": {"reason": default_waiting}}
        out["started"] = False
    out["lastState"] = last or {}
    return out


def _kind(st: dict[str, Any]) -> str:
    return next(iter(st.get("state") or {"waiting": {}}))


def init_done(pod: Pod, rp: RuntimePod) -> bool:
    for c in pod.spec.init_containers or []:
        st = rp.latest(c.name)
        if st is None or st.state != pb.CONTAINER_EXITED or st.exit_code != 0:
            return False
    return True


def init_failed(pod: Pod, rp: RuntimePod) -> bool:
    """An init container failed and the policy does not retry it."""
    if pod.spec.restart_policy != "Never":
        return False
    for c in pod.spec.init_containers or []:
        st = rp.latest(c.name)
        if st is not None and st.state == pb.CONTAINER_EXITED and st.exit_code != 0:
            return True
    return False


def phase(pod: Pod, rp: RuntimePod, statuses: list[dict[str, Any]]) -> str:
    if init_failed(pod, rp):
        return "Failed"
    if not init_done(pod, rp):
        return "Pending"
    running = waiting = stopped = succeeded = failed = 0
    for st in statuses:
        kind = _kind(st)
        if kind == "running":
            running += 1
        elif kind == "terminated":
            stopped += 1
            if st["state"]["terminated"]["exitCode"] == 0:
                succeeded += 1
            else:
                failed += 1
        elif st.get("lastState", {}).get("terminated"):
            stopped += 1  # waiting to restart (back-off): it ran before
        else:
            waiting += 1
    policy = pod.spec.restart_policy
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped == len(statuses):
        if policy == "Always":
            return "Running"
        if failed and policy == "Never":
            return "Failed"
        if failed:
            return "Running"  # OnFailure: it restarts
        return "Succeeded"
    return "Pending"


def _cond(type_: str, ok: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    c: dict[str, Any] = {"type": type_, "status": "True" if ok else "False"}
    if not ok and reason:
        c["reason"] = reason
    if not ok and message:
        c["message"] = message
    return c


def conditions(pod: Pod, rp: RuntimePod, statuses: list[dict[str, Any]], phase_: str) -> list[dict[str, Any]]:
    initialized = init_done(pod, rp) or (phase_ in TERMINAL and not pod.spec.init_containers)
    not_ready = [s["name"] for s in statuses if not s["ready"]]
    done = phase_ in TERMINAL
    all_ready = not not_ready and not done
    reason = "PodCompleted" if done else "ContainersNotReady"
    msg = "" if done else f"containers with unready status: [{' '.join(not_ready)}]"
    init_reason = "PodCompleted" if done else "ContainersNotInitialized"
    return [
        _cond("PodScheduled", True),
        _cond("Initialized", initialized or done, init_reason),
        _cond("ContainersReady", all_ready, reason, msg),
        _cond("Ready", all_ready, reason, msg),
    ]


def merge_conditions(old: list[dict[str, Any]] | None, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conditions to write: the kubelet's own from ``new``, and every other type kept.

    Kubernetes' status manager (mergePodStatus) keeps "pod conditions owned by other
    components" (readiness gates, DisruptionTarget, ...) on every kubelet write. Types outside
    KUBELET_CONDITIONS in ``new`` come from the kubelet's condition sources (GPU health): they
    replace the old condition of their type; when a source stops reporting one (the Pod
    finished and gave its GPUs back), the last written value stays, as any other component's.
    """
    own = [c for c in new if c["type"] in KUBELET_CONDITIONS]
    shared = {c["type"]: c for c in new if c["type"] not in KUBELET_CONDITIONS}
    kept: list[dict[str, Any]] = []
    for c in old or []:
        t = c.get("type")
        if t in KUBELET_CONDITIONS or not isinstance(t, str):
            continue
        kept.append(shared.pop(t, c))  # in the old order, so an unchanged status compares equal
    return own + kept + list(shared.values())


def merge_transition_times(old: list[dict[str, Any]] | None, new: list[dict[str, Any]], now: str) -> None:
    """Keep lastTransitionTime unless a condition's status changed."""
    prev = {c.get("type"): c for c in old or []}
    for c in new:
        p = prev.get(c["type"])
        if p is not None and p.get("status") == c["status"] and p.get("lastTransitionTime"):
            c["lastTransitionTime"] = p["lastTransitionTime"]
        else:
            c["lastTransitionTime"] = now
