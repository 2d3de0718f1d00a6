"""Container logs: the kubelet's /containerLogs endpoint, and the API server's pods/{name}/log
proxying to it (routed in-process), including the container-name rules."""

from __future__ import annotations

from pathlib import Path

import httpx
from kubelet_harness import Env

from kray.actors.kubelet.logserver import log_app

BUSY = {"name": "main", "image": "busybox", "command": ["sleep", "1000"]}


def write_log(path: str, *lines: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("a") as f:
        for i, line in enumerate(lines):
            f.write(f"2024-01-01T00:00:0{i}.000000001Z stdout F {line}\n")


async def test_logs_through_kubelet_and_apiserver(env: Env):
    await env.create("one", {"containers": [BUSY]})
    await env.create("two", {"containers": [BUSY, {**BUSY, "name": "side"}]})
    await env.step()
    uid = (await env.pod("one")).metadata.uid
    first = env.cri.by_name(uid, "main")[0]
    write_log(first.log_path, "hello", "world")
    kubelet_app = log_app(env.kubelet)
    env.api.logs.transport = httpx.ASGITransport(app=kubelet_app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=kubelet_app), base_url="http://node") as node:
        r = await node.get("/containerLogs/default/one/main")
        assert r.status_code == 200 and r.text == "hello\nworld\n"
        r = await node.get("/containerLogs/default/one/main", params={"tailLines": "1", "timestamps": "true"})
        assert r.text == "2024-01-01T00:00:01.000000001Z world\n"
        assert (await node.get("/containerLogs/default/nope/main")).status_code == 404
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=env.api.app), base_url="http://api", headers={"Authorization": "Bearer t"}
    )
    async with http:
        r = await http.get("/api/v1/namespaces/default/pods/one/log")
        assert r.status_code == 200 and r.text == "hello\nworld\n"
        r = await http.get("/api/v1/namespaces/default/pods/two/log")
        assert r.status_code == 400
        assert "a container name must be specified for pod two, choose one of: [main side]" in r.json()["message"]
        r = await http.get("/api/v1/namespaces/default/pods/one/log", params={"previous": "true"})
        assert r.status_code == 400 and "previous terminated container" in r.json()["message"]
        # after a restart, --previous shows the first instance
        env.cri.exit(first.id, 1)
        await env.step()
        second = env.cri.by_name(uid, "main")[1]
        write_log(second.log_path, "again")
        r = await http.get("/api/v1/namespaces/default/pods/one/log", params={"previous": "true"})
        assert r.text == "hello\nworld\n"
        r = await http.get("/api/v1/namespaces/default/pods/one/log", params={"container": "main"})
        assert r.text == "again\n"
        r = await http.get("/api/v1/namespaces/default/pods/one/log", params={"container": "bogus"})
        assert r.status_code == 400
