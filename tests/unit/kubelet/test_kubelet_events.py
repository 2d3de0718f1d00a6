"""The kubelet's Pod Events over FakeCri and a real in-memory API server: what a pod's life
records (Pulled, Created, Started, BackOff, Unhealthy, Killing, hook failures, image errors),
repeats aggregated into one Event's count, and a full queue dropping (counted) instead of
blocking the pod worker."""

from __future__ import annotations

from kubelet_harness import Env

from kray.actors.kubelet.events import PodEvents
from kray.crds import Pod
from kray.crds.core import Event

SLEEP = {"name": "main", "image": "busybox", "command": ["sleep", "1000"]}


async def events_of(env: Env, pod: str) -> list[Event]:
    return [e for e in (await env.client.list(Event, "default")).items if e.involved_object.name == pod]


async def reasons(env: Env, pod: str) -> dict[str, list[tuple[str, str, int]]]:
    """reason -> [(type, message, count)] of the pod's events."""
    out: dict[str, list[tuple[str, str, int]]] = {}
    for e in await events_of(env, pod):
        out.setdefault(e.reason or "", []).append((e.type or "", e.message or "", e.count or 0))
    return out


async def test_pod_start_records_pulled_created_started_from_the_kubelet(env: Env):
    await env.create("web", {"containers": [SLEEP]})
    await env.step()
    pod = await env.pod("web")
    evs = await events_of(env, "web")
    assert [e.reason for e in evs] == ["Pulled", "Created", "Started"]
    pulled, created, started = evs
    assert pulled.message == 'Container image "busybox" already present on machine'
    assert created.message == "Created container main" and started.message == "Started container main"
    for e in evs:
        assert e.type == "Normal" and e.count == 1
        assert e.source.component == "kubelet" and e.source.host == "n1" and e.reporting_component == "kubelet"
        assert e.involved_object.kind == "Pod" and e.involved_object.uid == pod.metadata.uid
        assert e.metadata.namespace == "default"
    await env.step(advance=30)  # a running pod records nothing more
    assert len(await events_of(env, "web")) == 3


async def test_crashloop_backoff_is_one_aggregated_warning(env: Env):
    await env.create("crash", {"containers": [SLEEP]})
    await env.step()
    uid = (await env.pod("crash")).metadata.uid
    for advance in (0, 0, 11):  # immediate restart, a 10 s back-off, restart, back-off again
        await env.step(advance=advance)
        env.cri.exit(env.cri.by_name(uid, "main")[-1].id, 2)
        await env.step()
    got = await reasons(env, "crash")
    [(type_, message, count)] = got["BackOff"]
    assert type_ == "Warning" and count == 2
    assert message == f"Back-off restarting failed container main in pod crash_default({uid})"
    assert got["Started"] == [("Normal", "Started container main", 3)]  # three starts, one Event


async def test_liveness_failure_records_unhealthy_and_killing(env: Env):
    healthy = {"ok": True}
    env.cri.exec_handler = lambda name, cmd: (0, b"") if healthy["ok"] else (1, b"no /tmp/healthy")
    probe = {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 5, "failureThreshold": 2}
    await env.create("live", {"containers": [{**SLEEP, "livenessProbe": probe}]})
    await env.step()
    healthy["ok"] = False
    await env.step(advance=5)
    await env.step(advance=5)
    got = await reasons(env, "live")
    [(type_, message, count)] = got["Unhealthy"]
    assert type_ == "Warning" and message == "Liveness probe failed: no /tmp/healthy" and count == 2
    assert ("Normal", "Container main failed liveness probe, will be restarted", 1) in got["Killing"]


async def test_hook_failures_are_warnings(env: Env):
    env.cri.exec_handler = lambda name, cmd: (1, b"hook says no")
    hooks = {"postStart": {"exec": {"command": ["/bin/start"]}}, "preStop": {"exec": {"command": ["/bin/stop"]}}}
    await env.create("hooked", {"containers": [{**SLEEP, "lifecycle": hooks}], "restartPolicy": "Never"})
    await env.step(rounds=1)
    got = await reasons(env, "hooked")
    [(type_, message, _)] = got["FailedPostStartHook"]
    assert type_ == "Warning" and "/bin/start" in message and "hook says no" in message

    await env.create("stopper", {"containers": [{**SLEEP, "lifecycle": {"preStop": hooks["preStop"]}}]})
    await env.step()
    await env.client.delete(Pod, "stopper", "default")
    await env.step()
    got = await reasons(env, "stopper")
    assert got["Killing"] == [("Normal", "Stopping container main", 1)]
    [(type_, message, _)] = got["FailedPreStopHook"]
    assert type_ == "Warning" and message.startswith("PreStopHook failed for container main:")


async def test_missing_image_records_failed_and_backoff(env: Env):
    await env.create("img", {"containers": [{"name": "main", "image": "nothere:1"}]})
    await env.step(rounds=1)
    await env.step(advance=1)
    got = await reasons(env, "img")
    assert ("Normal", 'Pulling image "nothere:1"', 1) in got["Pulling"]
    failed = {m for t, m, _ in got["Failed"] if t == "Warning"}
    assert "Error: ErrImagePull" in failed and any(m.startswith('Failed to pull image "nothere:1"') for m in failed)
    assert got["BackOff"][0][:2] == ("Normal", 'Back-off pulling image "nothere:1"')


async def test_full_queue_drops_and_counts_instead_of_blocking(env: Env):
    pod = await env.create("spam", {"containers": [SLEEP]})
    events = PodEvents(env.client, "n1", env.clock, max_queued=3)
    for i in range(5):
        events.normal(pod, "Spam", f"number {i}")
    assert len(events.queue) == 3 and events.dropped == 2
    assert await events.flush() == 3 and events.written == 3
    assert sorted(e.message or "" for e in await events_of(env, "spam")) == ["number 0", "number 1", "number 2"]
    events.normal(pod, "Spam", "number 0")  # a repeat: the same Event, count 2
    await events.flush()
    assert {e.message: e.count for e in await events_of(env, "spam")}["number 0"] == 2
