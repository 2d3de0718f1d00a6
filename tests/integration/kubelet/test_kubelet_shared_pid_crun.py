"""shareProcessNamespace: the containers of a pod see each other's processes (one PID namespace,
held by the sandbox), and nothing of it outlives the pod."""

from __future__ import annotations

import subprocess

import httpx
import pytest
from kubelet_node import RunningKubelet, pod_body, wait_for

from kray.client import AsyncClient
from kray.crds import Pod

pytestmark = [pytest.mark.root]


async def logs(kubelet: RunningKubelet, pod: str, container: str) -> str:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{kubelet.log_port}") as http:
        resp = await http.get(f"/containerLogs/default/{pod}/{container}")
        return resp.text if resp.status_code == 200 else ""


def holders(node) -> list[str]:
    """This node's PID namespace holders (`unshare --pid ... <sandbox folder>`)."""
    out = subprocess.run(["pgrep", "-f", f"unshare --pid .* {node.state}/sandboxes/"], capture_output=True)
    return out.stdout.decode().split()


async def test_share_process_namespace(client: AsyncClient, kubelet: RunningKubelet, node) -> None:
    # ($$$$: the kubelet expands $(VAR) in commands, and $$ is its escape for one $)
    a = {"name": "a", "image": "busybox", "command": ["sh", "-c", "echo a-pid=$$$$; exec sleep 1001"]}
    see = "until ps | grep -q '[s]leep 1001'; do sleep 0.1; done; echo b-sees-a; ps | head -3; sleep 1000"
    b = {"name": "b", "image": "busybox", "command": ["sh", "-c", see]}
    await client.create(pod_body("shared", [a, b], shareProcessNamespace=True, terminationGracePeriodSeconds=1))
    text = await wait_for(lambda: _has(kubelet, "shared", "b", "b-sees-a"), 30, "b to see a's process")
    assert "sleep infinity" in text  # PID 1 of the pod is the sandbox's holder, as with a pause container
    assert "a-pid=1\n" not in await logs(kubelet, "shared", "a")  # a is not PID 1 of its own namespace
    assert len(holders(node)) == 1
    # Without the option, each container keeps its own PID namespace.
    await client.create(pod_body("apart", [a, b], terminationGracePeriodSeconds=1))
    await wait_for(lambda: _has(kubelet, "apart", "a", "a-pid="), 30, "a to start")
    assert "a-pid=1\n" in await logs(kubelet, "apart", "a")
    assert "b-sees-a" not in await logs(kubelet, "apart", "b")
    for name in ("shared", "apart"):
        await client.delete(Pod, name, "default")
    # 60 s as in test_zz_everything_removed: on a loaded node two pods' kill + sandbox teardown
    # (cgroup and PID-holder removal) once took over 30 s.
    await wait_for(lambda: _none_left(client), 60, "pods deleted")
    assert holders(node) == []


async def _has(kubelet: RunningKubelet, pod: str, container: str, text: str) -> str | None:
    got = await logs(kubelet, pod, container)
    return got if text in got else None


async def _none_left(client: AsyncClient) -> bool:
    return not (await client.list(Pod, "default")).items
