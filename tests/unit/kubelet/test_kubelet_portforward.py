"""``pods/{name}/portforward``: the kubelet's /portForward WebSocket (over the runtime's
PortForwardStream, a FakeCri here) and the API server's relay, on real loopback ports, driven by
the official ``kubernetes`` client's ``portforward`` and by `kray port-forward`."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest
from kubelet_harness import Env, served

from kray.actors.kubelet.logserver import log_app

KRAY = str(Path(sys.executable).with_name("kray"))
BUSY = {"name": "main", "image": "busybox", "command": ["sleep", "1000"]}


@pytest.fixture
async def running(env: Env) -> Env:
    env.cri.listening = {8080: bytes.upper, 9090: lambda b: b[::-1]}
    await env.create("one", {"containers": [{**BUSY, "ports": [{"name": "http", "containerPort": 8080}]}]})
    await env.step()
    return env


def official(address: str) -> tuple[bytes, bytes, str | None]:
    from kubernetes import client as k8s
    from kubernetes.stream import portforward

    config = k8s.Configuration(host=f"http://{address}", api_key={"authorization": "Bearer t"})
    api = k8s.CoreV1Api(k8s.ApiClient(config))
    pf = portforward(api.connect_get_namespaced_pod_portforward, "one", "default", ports="8080,9090,7070")
    answers = []
    for port, data in ((8080, b"hello"), (9090, b"abc")):
        sock = pf.socket(port)
        sock.settimeout(10)
        sock.sendall(data)
        answers.append(sock.recv(100))
    refused = pf.socket(7070)
    refused.settimeout(10)
    assert refused.recv(100) == b""  # closed: nothing listens there
    error = pf.error(7070)
    pf.close()
    return answers[0], answers[1], error


async def test_portforward_through_api_server_and_kubelet(running: Env, tmp_path: Path) -> None:
    async with served(log_app(running.kubelet)) as kubelet, served(running.api.app) as address:
        running.api.exec.kubelet_base = f"http://{kubelet}"
        upper, reversed_, error = await asyncio.to_thread(official, address)
        assert (upper, reversed_) == (b"HELLO", b"cba")
        assert error is not None and "port 7070" in error and "Connection refused" in error

        env = {**os.environ, "KRAY_SERVER": f"http://{address}", "KRAY_TOKEN": "t", "KRAY_CONFIG": str(tmp_path / "c")}
        proc = await asyncio.create_subprocess_exec(
            KRAY, "port-forward", "pod/one", ":http", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            assert line.startswith("Forwarding from 127.0.0.1:") and line.endswith(" -> 8080\n"), line
            local = int(line.split(":")[1].split()[0])

            def through_cli() -> bytes:
                with socket.create_connection(("127.0.0.1", local), timeout=10) as sock:
                    sock.sendall(b"via kray")
                    return sock.recv(100)

            assert await asyncio.to_thread(through_cli) == b"VIA KRAY"
            assert (await asyncio.wait_for(proc.stdout.readline(), 10)).decode() == f"Handling connection for {local}\n"
        finally:
            proc.terminate()
            await proc.wait()


async def test_portforward_refusals(running: Env, tmp_path: Path) -> None:
    env = {**os.environ, "KRAY_SERVER": "http://127.0.0.1:1", "KRAY_TOKEN": "t", "KRAY_CONFIG": str(tmp_path / "c")}
    for bad, message in (
        ("99999", "invalid remote port"),
        ("http", "a named port needs a local port"),
        ("x:80", "invalid local port"),
    ):
        proc = await asyncio.create_subprocess_exec(
            KRAY, "port-forward", "one", bad, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        _, err = await proc.communicate()
        assert proc.returncode == 1 and message in err.decode(), err
    await running.create(
        "pending",
        {"containers": [BUSY]},
    )
    async with served(log_app(running.kubelet)) as kubelet, served(running.api.app) as address:
        running.api.exec.kubelet_base = f"http://{kubelet}"
        from websockets.asyncio.client import connect
        from websockets.typing import Subprotocol

        url = f"ws://{address}/api/v1/namespaces/default/pods/pending/portforward?ports=80"
        async with connect(url, subprotocols=[Subprotocol("v4.channel.k8s.io")],
                           additional_headers={"Authorization": "Bearer t"}) as ws:  # fmt: skip
            frames = [m async for m in ws]
        assert frames[:2] == [b"\x00\x50\x00", b"\x01\x50\x00"]
        assert frames[2].startswith(b"\x01") and b"pod pending is not running" in frames[2]
