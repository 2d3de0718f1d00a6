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


async def test_kray_logs_all_containers(env: Env, tmp_path: Path) -> None:
    import asyncio
    import os
    import sys

    from kubelet_harness import served

    await env.create("two", {"containers": [BUSY, {**BUSY, "name": "side"}]})
    await env.step()
    uid = (await env.pod("two")).metadata.uid
    write_log(env.cri.by_name(uid, "main")[0].log_path, "from main")
    write_log(env.cri.by_name(uid, "side")[0].log_path, "from side")
    env.api.logs.transport = httpx.ASGITransport(app=log_app(env.kubelet))
    kray = str(Path(sys.executable).with_name("kray"))
    async with served(env.api.app) as address:
        cli_env = {
            **os.environ,
            "KRAY_SERVER": f"http://{address}",
            "KRAY_TOKEN": "t",
            "KRAY_CONFIG": str(tmp_path / "c"),
        }
        proc = await asyncio.create_subprocess_exec(
            kray, "logs", "two", "--all-containers", "--prefix", env=cli_env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert out.decode().splitlines() == ["[pod/two/main] from main", "[pod/two/side] from side"]
