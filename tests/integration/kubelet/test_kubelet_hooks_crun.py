"""Lifecycle hooks on real crun containers: postStart runs in the container right after it
starts, preStop before it is stopped when its pod is deleted."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from kubelet_node import RunningKubelet, pod_body, wait_for

from kray.client import AsyncClient
from kray.crds import Pod

pytestmark = [pytest.mark.root]


async def test_post_start_and_pre_stop_exec_hooks(client: AsyncClient, kubelet: RunningKubelet, node) -> None:
    out: Path = node.base / "hooks-out"
    out.mkdir()
    script = "until [ -f /out/post-start ]; do sleep 0.05; done; echo saw-post-start; sleep 1000"
    hooks = {
        "postStart": {"exec": {"command": ["sh", "-c", "echo started > /out/post-start"]}},
        "preStop": {"exec": {"command": ["sh", "-c", "echo stopping > /out/pre-stop"]}},
    }
    c = {"name": "app", "image": "busybox", "command": ["sh", "-c", script], "lifecycle": hooks,
         "volumeMounts": [{"name": "out", "mountPath": "/out"}]}  # fmt: skip
    volumes = [{"name": "out", "hostPath": {"path": str(out)}}]
    await client.create(pod_body("hooked", [c], volumes=volumes, terminationGracePeriodSeconds=1))

    async def log_says() -> bool:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{kubelet.log_port}") as http:
            resp = await http.get("/containerLogs/default/hooked/app")
            return resp.status_code == 200 and "saw-post-start" in resp.text

    await wait_for(log_says, 30, "the container to see what its postStart hook wrote")
    assert not (out / "pre-stop").exists()
    await client.delete(Pod, "hooked", "default")

    async def gone() -> bool:
        return not [p for p in (await client.list(Pod, "default")).items if p.metadata.name == "hooked"]

    await wait_for(gone, 30, "hooked deleted")
    assert (out / "pre-stop").read_text() == "stopping\n"
