"""Lifecycle hooks: postStart after the container starts (a failure kills it, the restart
policy takes over), preStop before StopContainer on deletion and on liveness restarts."""

from __future__ import annotations

from kubelet_harness import Env

from kray.crds import Pod
from kray.runtime.cri import api_pb2 as pb

SLEEP = {"name": "main", "image": "busybox", "command": ["sleep", "1000"]}


def execs(env: Env) -> list[str]:
    return [cid for call, cid in env.cri.calls if call == "ExecSync"]


async def test_post_start_runs_after_start_and_a_failure_kills_the_container(env: Env) -> None:
    ran: list[list[str]] = []
    fail = {"now": True}

    def handler(name: str, cmd: list[str]) -> tuple[int, bytes]:
        ran.append(cmd)
        return (1, b"no config yet") if fail["now"] else (0, b"")

    env.cri.exec_handler = handler
    hook = {"postStart": {"exec": {"command": ["sh", "-c", "touch /ready"]}}}
    await env.create("ps", {"containers": [{**SLEEP, "lifecycle": hook}]})
    await env.step(rounds=1)
    uid = (await env.pod("ps")).metadata.uid
    first = env.cri.by_name(uid, "main")
    assert ran == [["sh", "-c", "touch /ready"]]
    assert len(first) == 1 and first[0].exit_code == 143  # started, hook failed, stopped
    calls = env.cri.calls
    assert calls.index(("StartContainer", first[0].id)) < calls.index(("ExecSync", first[0].id))
    assert any(call == "StopContainer" and arg[0] == first[0].id for call, arg in calls)
    fail["now"] = False
    for _ in range(5):  # the restart, after whatever back-off applies
        await env.step(advance=11)
    instances = env.cri.by_name(uid, "main")
    assert instances[-1].state == pb.CONTAINER_RUNNING
    status = (await env.pod("ps")).status.to_dict()["containerStatuses"][0]
    assert "running" in status["state"] and status["restartCount"] >= 1
    assert ran[-1] == ["sh", "-c", "touch /ready"] and len(ran) == len(instances)


async def test_pre_stop_runs_before_stop_on_delete(env: Env) -> None:
    ran: list[list[str]] = []
    env.cri.exec_handler = lambda name, cmd: (ran.append(cmd), (0, b""))[1]
    hook = {"preStop": {"exec": {"command": ["/bin/drain"]}}}
    await env.create("pre", {"containers": [{**SLEEP, "lifecycle": hook}], "terminationGracePeriodSeconds": 30})
    await env.step()
    uid = (await env.pod("pre")).metadata.uid
    cid = env.cri.by_name(uid, "main")[0].id
    assert ran == []  # nothing before a stop
    await env.client.delete(Pod, "pre", "default")
    await env.step()
    assert ran == [["/bin/drain"]]
    i_exec = env.cri.calls.index(("ExecSync", cid))
    stop = next(i for i, (call, arg) in enumerate(env.cri.calls) if call == "StopContainer" and arg[0] == cid)
    assert i_exec < stop
    grace = env.cri.calls[stop][1][1]
    assert 2 <= grace <= 30  # what the hook left of the grace period
    assert execs(env) == [cid]
