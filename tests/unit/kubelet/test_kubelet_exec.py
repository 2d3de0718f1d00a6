"""``pods/{name}/exec``: the kubelet's /exec WebSocket (over the runtime's ExecStream) and the API
server's relay to it, both in Kubernetes' channel protocol and served by real uvicorns on
loopback, driven by a WebSocket client, by `kray exec` (the installed console script, stdin
included; ``-it`` on a real pty, in raw mode, resized by SIGWINCH) and by the official
``kubernetes`` client's ``stream``."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import select
import shutil
import struct
import sys
import termios
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from kubelet_harness import Env
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from kray.actors.kubelet.logserver import log_app
from kray.etcd_server import free_port

KRAY = str(Path(sys.executable).with_name("kray"))
BUSY = {"name": "main", "image": "busybox", "command": ["sleep", "1000"]}
V5 = [Subprotocol("v5.channel.k8s.io")]


def scripted(container: str, cmd: list[str]) -> tuple[int, bytes]:
    """``exit N`` ends with N; anything else echoes where it ran."""
    if cmd[:1] == ["exit"]:
        return int(cmd[1]), b"bye\n"
    return 0, f"{container}: {' '.join(cmd)}\n".encode()


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="websockets-sansio"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def serving(env: Env) -> AsyncIterator[str]:
    """The API server and the kubelet on real ports (WebSockets need them), exec relayed between."""
    async with served(log_app(env.kubelet)) as kubelet, served(env.api.app) as api:
        env.api.exec.kubelet_base = f"http://{kubelet}"
        yield api


async def ws_exec(
    address: str, pod: str, query: str, token: str = "t", stdin: tuple[bytes, ...] = (), path: str = ""
) -> tuple[bytes, bytes, dict[str, Any]]:
    url = f"ws://{address}{path or f'/api/v1/namespaces/default/pods/{pod}/exec'}?{query}"
    out, err, status = b"", b"", {}
    async with connect(url, subprotocols=V5, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        assert ws.subprotocol == "v5.channel.k8s.io"
        for chunk in stdin:
            await ws.send(b"\x00" + chunk)
        if stdin:
            await ws.send(b"\xff\x00")  # v5: stdin is closed
        async for message in ws:
            assert isinstance(message, bytes)
            channel, data = message[0], message[1:]
            if channel == 1:
                out += data
            elif channel == 2:
                err += data
            elif channel == 3:
                status = json.loads(data)
    return out, err, status


@pytest.fixture
async def running(env: Env) -> Env:
    env.cri.exec_handler = scripted
    await env.create("one", {"containers": [BUSY]})
    await env.create("two", {"containers": [BUSY, {**BUSY, "name": "side"}]})
    await env.step()
    return env


async def test_kubelet_exec_endpoint(running: Env) -> None:
    async with served(log_app(running.kubelet)) as kubelet:
        out, _, status = await ws_exec(
            kubelet, "", "command=cat&stdin=true", stdin=(b"a", b"b"), path="/exec/default/one/main"
        )
        assert (out, status) == (b"main: cat\nab", {"metadata": {}, "status": "Success"})
        _, _, status = await ws_exec(kubelet, "", "command=exit&command=4", path="/exec/default/two/side")
        assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "4"}]
        _, _, status = await ws_exec(kubelet, "", "command=ls", path="/exec/default/nope/main")
        assert status["status"] == "Failure" and "pod default/nope not found on this node" in status["message"]
        uid = (await running.pod("one")).metadata.uid
        running.cri.exit(running.cri.by_name(uid, "main")[0].id, 0)
        _, _, status = await ws_exec(kubelet, "", "command=ls", path="/exec/default/one/main")
        assert "not running" in status["message"]


async def test_exec_websocket_channels_and_statuses(running: Env) -> None:
    async with serving(running) as address:
        out, err, status = await ws_exec(address, "one", "command=echo&command=hi&stdout=true&stderr=true")
        assert (out, err, status) == (b"main: echo hi\n", b"", {"metadata": {}, "status": "Success"})

        out, _, status = await ws_exec(address, "two", "command=exit&command=3&container=side&stdout=1")
        assert out == b"bye\n" and status["reason"] == "NonZeroExitCode"
        assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]

        _, _, status = await ws_exec(address, "two", "command=ls")
        assert status["status"] == "Failure" and status["code"] == 400
        assert "a container name must be specified for pod two, choose one of: [main side]" in status["message"]
        out, _, status = await ws_exec(address, "one", "command=cat&stdin=true", stdin=(b"through ", b"the relay\n"))
        assert out == b"main: cat\nthrough the relay\n" and status["status"] == "Success"
        _, _, status = await ws_exec(address, "ghost", "command=ls")
        assert status["code"] == 404 and status["reason"] == "NotFound"

        with pytest.raises(InvalidStatus) as refused:
            await ws_exec(address, "one", "command=ls", token="wrong")
        assert refused.value.response.status_code == 403
        async with httpx.AsyncClient(base_url=f"http://{address}", headers={"Authorization": "Bearer t"}) as http:
            r = await http.post("/api/v1/namespaces/default/pods/one/exec", params={"command": "ls"})
            assert r.status_code == 400 and r.json()["message"] == "Upgrade request required"


async def test_kray_exec_and_the_kubernetes_client(running: Env, tmp_path: Path) -> None:
    async with serving(running) as address:
        env = {**os.environ, "KRAY_SERVER": f"http://{address}", "KRAY_TOKEN": "t", "KRAY_CONFIG": str(tmp_path / "c")}

        async def kray(*args: str) -> tuple[int, str, str]:
            proc = await asyncio.create_subprocess_exec(
                KRAY, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            out, err = await proc.communicate()
            return proc.returncode or 0, out.decode(), err.decode()

        assert await kray("exec", "one", "--", "ls", "-l", "/") == (0, "main: ls -l /\n", "")
        assert await kray("exec", "two", "-c", "side", "--", "exit", "7") == (7, "bye\n", "")
        code, _, err = await kray("exec", "two", "--", "ls")
        assert code == 1 and "error: a container name must be specified for pod two" in err
        # As kubectl: -t without a terminal for stdin is dropped with a warning, -t without -i quietly.
        code, out, err = await kray("exec", "-it", "one", "--", "sh")
        assert (code, out, err) == (
            0,
            "main: sh\n",
            "Unable to use a TTY - input is not a terminal or the right kind of file\n",
        )
        assert await kray("exec", "-t", "one", "--", "sh") == (0, "main: sh\n", "")
        proc = await asyncio.create_subprocess_exec(
            KRAY, "exec", "-i", "one", "--", "cat", env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        piped = await proc.communicate(b"piped in\n")
        assert (proc.returncode, *piped) == (0, b"main: cat\npiped in\n", b"")

        def official() -> tuple[str, int | None]:
            from kubernetes import client as k8s
            from kubernetes.stream import stream

            config = k8s.Configuration(host=f"http://{address}", api_key={"authorization": "Bearer t"})
            api = k8s.CoreV1Api(k8s.ApiClient(config))
            resp = stream(
                api.connect_get_namespaced_pod_exec, "two", "default", container="side",
                command=["exit", "5"], stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False,
            )  # fmt: skip
            resp.run_forever(timeout=10)
            out = resp.read_stdout()
            resp.close()
            return out, resp.returncode

        assert await asyncio.to_thread(official) == ("bye\n", 5)


async def ws_frames(address: str, query: str, frames: tuple[bytes, ...], path: str) -> tuple[bytes, dict[str, Any]]:
    """Send `frames` (channel byte first) as they are; stdout and the Status back."""
    out, status = b"", {}
    async with connect(
        f"ws://{address}{path}?{query}", subprotocols=V5, additional_headers={"Authorization": "Bearer t"}
    ) as ws:
        for frame in frames:
            await ws.send(frame)
        async for message in ws:
            assert isinstance(message, bytes)
            if message[0] == 1:
                out += message[1:]
            elif message[0] == 2:
                raise AssertionError(f"stderr on a terminal: {message!r}")
            elif message[0] == 3:
                status = json.loads(message[1:])
    return out, status


def resize(width: int, height: int) -> bytes:
    return b"\x04" + json.dumps({"Width": width, "Height": height}).encode()


def sizes(env: Env) -> list[Any]:
    return [arg for rpc, arg in env.cri.calls if rpc == "ExecStreamResize"]


async def test_a_terminal_through_the_relay(running: Env) -> None:
    async with serving(running) as address:
        frames = (resize(100, 40), b"\x00ls\n", resize(120, 50), b"\x04not json", b"\x04{}", b"\xff\x00")
        path = "/api/v1/namespaces/default/pods/one/exec"
        out, status = await ws_frames(address, "command=sh&stdin=true&stdout=true&tty=true", frames, path)
        assert (out, status) == (b"main: sh\r\nls\r\n", {"metadata": {}, "status": "Success"})
        assert sizes(running) == [(100, 40), (120, 50)]  # the first is the command's starting size
    async with served(log_app(running.kubelet)) as kubelet:  # no size first: the command starts anyway
        out, status = await ws_frames(
            kubelet, "command=sh&stdin=true&tty=true", (b"\x00x", resize(90, 30), b"\xff\x00"), "/exec/default/one/main"
        )
        assert (out, status["status"]) == (b"main: sh\r\nx", "Success")
        assert sizes(running)[2:] == [(90, 30)]
        out, _ = await ws_frames(
            kubelet, "command=sh&stdin=true", (resize(1, 1), b"\xff\x00"), "/exec/default/one/main"
        )
        assert out == b"main: sh\n" and len(sizes(running)) == 3  # no terminal: no size, no CR


def read_until(fd: int, want: bytes, timeout: float = 15) -> bytes:
    """What a pty master gives until `want` shows up (blocking: run it in a thread)."""
    seen = b""
    while want not in seen:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"no {want!r} on the terminal: {seen!r}"
        seen += os.read(fd, 4096)
    return seen


@pytest.mark.skipif(not shutil.which("setsid"), reason="needs util-linux setsid")
async def test_kray_exec_it_on_a_terminal(running: Env, tmp_path: Path) -> None:
    """`kray exec -it` with a pty as its controlling terminal: raw while it runs (keys go out
    untouched, ^D included), its size first, a new size on SIGWINCH, put back at the end."""
    master, slave = os.openpty()
    termios_before = termios.tcgetattr(slave)
    try:
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))  # rows, columns
        async with serving(running) as address:
            env = {
                **os.environ,
                "KRAY_SERVER": f"http://{address}",
                "KRAY_TOKEN": "t",
                "KRAY_CONFIG": str(tmp_path / "c"),
            }
            # setsid --ctty: a new session whose controlling terminal is this pty, so resizing it
            # sends SIGWINCH to kray as a terminal emulator's window does.
            proc = await asyncio.create_subprocess_exec(
                "setsid", "--ctty", "--wait", KRAY, "exec", "-it", "two", "-c", "side", "--", "exit", "7",
                env=env, stdin=slave, stdout=slave, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert b"bye\r\n" in await asyncio.to_thread(read_until, master, b"bye\r\n")
            raw = termios.tcgetattr(slave)
            assert not raw[3] & (termios.ECHO | termios.ICANON | termios.ISIG)  # raw: ^C is a key
            assert sizes(running) == [(101, 33)]
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
            for _ in range(200):
                if len(sizes(running)) == 2:
                    break
                await asyncio.sleep(0.02)
            assert sizes(running) == [(101, 33), (120, 50)]
            os.write(master, b"typed\n")  # raw: no local echo, the newline goes as it is
            assert await asyncio.to_thread(read_until, master, b"typed\r\n") == b"typed\r\n"
            os.write(master, b"\x04")  # ^D, sent as a key: the remote terminal's end of input
            _, err = await asyncio.wait_for(proc.communicate(), 15)
            assert (proc.returncode, err) == (7, b"")
            assert termios.tcgetattr(slave) == termios_before  # the terminal is as it was
    finally:
        os.close(master)
        os.close(slave)
