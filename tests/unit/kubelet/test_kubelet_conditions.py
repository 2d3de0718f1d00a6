"""The kubelet writes only its own Pod condition types and keeps every other one: conditions of
other components, and those of its condition sources (GPU health) once a source stops reporting
them because the Pod finished."""

from __future__ import annotations

from typing import Any

from kubelet_harness import Env

from kray.actors.kubelet import podstatus
from kray.crds import Pod
from kray.crds.meta import Condition

BUSY = {"name": "main", "image": "busybox", "command": ["sleep", "1000"]}
GATE = "example.com/feature-ready"


def by_type(pod: Pod) -> dict[str, Any]:
    return {c.type: c for c in pod.status.conditions or []}


def test_merge_keeps_foreign_conditions_and_replaces_own() -> None:
    old = [
        {"type": "Ready", "status": "True"},
        {"type": GATE, "status": "True", "lastTransitionTime": "t0"},
        {"type": "kray.io/GPUHealthy", "status": "True"},
        {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"},
    ]
    new = [
        {"type": "PodScheduled", "status": "True"},
        {"type": "Ready", "status": "False"},
        {"type": "kray.io/GPUHealthy", "status": "False"},
        {"type": "example.com/new", "status": "True"},
    ]
    got = podstatus.merge_conditions(old, new)
    assert [(c["type"], c["status"]) for c in got] == [
        ("PodScheduled", "True"),
        ("Ready", "False"),  # the kubelet's own: the new value only
        (GATE, "True"),  # another component's: kept as it was, in place
        ("kray.io/GPUHealthy", "False"),  # a condition source's: the new value replaces it
        ("DisruptionTarget", "True"),
        ("example.com/new", "True"),
    ]
    assert got[2]["lastTransitionTime"] == "t0"
    # A kubelet-owned type the kubelet no longer reports is dropped, never kept from the old.
    assert podstatus.merge_conditions([{"type": "PodReadyToStartContainers", "status": "True"}], []) == []
    assert podstatus.merge_conditions(None, []) == []


async def test_other_components_conditions_survive_kubelet_writes(env: Env) -> None:
    await env.create("web", {"containers": [BUSY], "restartPolicy": "Never"})
    await env.step()
    pod = await env.pod("web")
    pod.status.conditions = [*(pod.status.conditions or []), Condition(type=GATE, status="True")]
    await env.client.update_status(pod)
    [c] = env.cri.by_name(pod.metadata.uid, "main")
    env.cri.exit(c.id, 0)
    await env.step()
    pod = await env.pod("web")
    assert pod.status.phase == "Succeeded"
    conds = by_type(pod)
    assert conds[GATE].status == "True" and conds["Ready"].status == "False"
    # An unchanged status is not written again.
    rv = pod.metadata.resource_version
    await env.step(advance=30)
    assert (await env.pod("web")).metadata.resource_version == rv


async def test_source_condition_stays_after_the_pod_finishes(env: Env) -> None:
    """nodesync reports GPUHealthy only while the Pod holds its GPUs: a finished Pod gives them
    back, and the last reported condition (why it failed) must stay on it."""
    holding: set[str] = set()

    def gpu_health(pod: Pod) -> list[dict[str, Any]]:
        if (pod.metadata.uid or "") not in holding:
            return []
        return [{"type": "kray.io/GPUHealthy", "status": "False", "reason": "GPUUnhealthy", "message": "XID 79"}]

    env.kubelet.condition_sources.append(gpu_health)
    pod = await env.create("train", {"containers": [BUSY], "restartPolicy": "Never"})
    holding.add(pod.metadata.uid or "")
    await env.step()
    assert by_type(await env.pod("train"))["kray.io/GPUHealthy"].status == "False"
    [c] = env.cri.by_name(pod.metadata.uid, "main")
    env.cri.exit(c.id, 1)
    holding.clear()  # the devices are freed with the pod's end
    await env.step()
    pod = await env.pod("train")
    assert pod.status.phase == "Failed"
    cond = by_type(pod)["kray.io/GPUHealthy"]
    assert (cond.status, cond.reason, cond.message) == ("False", "GPUUnhealthy", "XID 79")
