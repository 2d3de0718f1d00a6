"""The runtime's streaming exec (ExecStream) on real crun containers: output while the command
runs, stdin in and closed, the exit code, and a cancelled stream ending the command (root only).
With a TTY: a real /dev/pts terminal sized before the command starts, resized while it runs, an
interactive shell driven through it, a hang-up when the caller leaves; also on the process runtime."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from cri_harness import Service, ctr_config, run_pod

from kray.runtime.cri import api_pb2 as pb
from kray.runtime.cri.client import RuntimeClient
from kray.runtime.ocirt import make_runtime
from tests.leftovers import session_prefix

pytestmark = [pytest.mark.root]


async def requests(
    cid: str, cmd: list[str], stdin: asyncio.Queue[bytes | None] | None = None
) -> AsyncIterator[pb.ExecStreamRequest]:
    yield pb.ExecStreamRequest(container_id=cid, cmd=cmd, stdin=stdin is not None)
    while stdin is not None and (chunk := await stdin.get()) is not None:
        yield pb.ExecStreamRequest(stdin_data=chunk)
    if stdin is not None:
        yield pb.ExecStreamRequest(stdin_closed=True)


async def test_output_streams_while_the_command_runs(cri: RuntimeClient) -> None:
    _, [cid] = await run_pod(cri, "xs", ctr_config("main", ["sleep", "1000"]))
    seen: list[tuple[float, pb.ExecStreamResponse]] = []
    script = "echo first; sleep 1; echo second >&2; exit 5"
    async for out in cri.exec_stream(requests(cid, ["sh", "-c", script])):
        seen.append((time.monotonic(), out))
    stdout = b"".join(o.stdout for _, o in seen)
    stderr = b"".join(o.stderr for _, o in seen)
    assert (stdout, stderr) == (b"first\n", b"second\n")
    first_at = next(t for t, o in seen if o.stdout)
    exited = [(t, o) for t, o in seen if o.exited]
    assert len(exited) == 1 and exited[0][1].exit_code == 5
    assert exited[0][0] - first_at > 0.5  # "first" came while the command still ran


async def test_stdin_reaches_the_command_and_closes(cri: RuntimeClient) -> None:
    _, [cid] = await run_pod(cri, "xi", ctr_config("main", ["sleep", "1000"]))
    stdin: asyncio.Queue[bytes | None] = asyncio.Queue()
    outputs = cri.exec_stream(requests(cid, ["sh", "-c", "read first; echo got $first; cat; echo done"], stdin))
    await stdin.put(b"one\n")
    first = await anext(outputs)
    assert first.stdout == b"got one\n"  # answered before stdin closed: it is a live stream
    await stdin.put(b"two\nthree\n")
    await stdin.put(None)
    rest = [o async for o in outputs]
    assert b"".join(o.stdout for o in rest) == b"two\nthree\ndone\n"
    assert rest[-1].exited and rest[-1].exit_code == 0


async def test_a_cancelled_stream_ends_the_command(cri: RuntimeClient) -> None:
    _, [cid] = await run_pod(cri, "xc", ctr_config("main", ["sleep", "1000"]))
    outputs = cri.exec_stream(requests(cid, ["sh", "-c", "echo started; exec sleep 777"]))
    assert (await anext(outputs)).stdout == b"started\n"
    await outputs.aclose()  # the caller leaves
    deadline = time.monotonic() + 10
    while True:
        ps = await cri.exec_sync(cid, ["ps", "-o", "args"], timeout=10)
        if b"sleep 777" not in ps.stdout or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert b"sleep 777" not in ps.stdout and b"sleep 1000" in ps.stdout


async def test_exec_into_what_is_not_there(cri: RuntimeClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in cri.exec_stream(requests("nope", ["true"])):
            pass
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    _, [cid] = await run_pod(cri, "xe", ctr_config("main", ["sleep", "1000"]))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in cri.exec_stream(requests(cid, [])):
            pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- on a terminal ------------------------------------------------------------------------------


async def tty_requests(
    cid: str, cmd: list[str], size: tuple[int, int], more: asyncio.Queue[pb.ExecStreamRequest | None]
) -> AsyncIterator[pb.ExecStreamRequest]:
    """A terminal exec of `cmd` at `size` (columns, rows), then whatever is put on `more`."""
    yield pb.ExecStreamRequest(
        container_id=cid, cmd=cmd, stdin=True, tty=True, resize=pb.TerminalSize(width=size[0], height=size[1])
    )
    while (req := await more.get()) is not None:
        yield req


def output(data: bytes, relayed: bool) -> bytes:
    """Terminal output as compared. Through runc it may say a newline as "\\r\\r\\n" (which a
    terminal shows as "\\r\\n"): runc adds the CR on its side and clears ONLCR in the container
    once it holds the master, and a shell that started first keeps restoring ONLCR."""
    return data.replace(b"\r\r\n", b"\r\n") if relayed else data


async def read_until(
    outputs: AsyncIterator[pb.ExecStreamResponse], want: bytes, relayed: bool = False, timeout: float = 20
) -> bytes:
    """Terminal output up to and including `want` (it is one stream: stdout only)."""
    seen = b""
    try:
        async with asyncio.timeout(timeout):
            while want not in output(seen, relayed):
                out = await anext(outputs)
                assert not out.stderr and not out.exited, (seen, out)
                seen += out.stdout
    except TimeoutError:
        raise AssertionError(f"no {want!r} in {timeout}s, only {seen!r}") from None
    return output(seen, relayed)


# A shell function: wait (10 s at most) until `stty size` says $1.
SETTLE = (
    'settle() { i=0; while [ "$(stty size 2>/dev/null)" != "$1" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; }'
)


async def a_terminal_is_sized_and_resized(
    cri: RuntimeClient, cid: str, first_settles: bool = False, resize_settles: bool = False
) -> None:
    """A terminal of the size asked for, then resized. The process runtime sizes it before the
    command starts and resizes it at once (TIOCSWINSZ on the master), and so does runc at the
    start. crun sets the first size as it lets the command run (it may win, under load), runc
    a new size when it handles the SIGWINCH it is sent (soon, but maybe after the next key): for
    those the command waits (boundedly) for the size to show, in `settle`."""
    more: asyncio.Queue[pb.ExecStreamRequest | None] = asyncio.Queue()
    first = 'settle "40 100"; ' if first_settles else ""
    resized = 'settle "50 120"; ' if resize_settles else ""
    script = f"{SETTLE}; tty; {first}stty size; read _; {resized}stty size; exit 3"
    outputs = cri.exec_stream(tty_requests(cid, ["sh", "-c", script], (100, 40), more))
    relayed = resize_settles
    seen = await read_until(outputs, b"40 100\r\n", relayed)
    assert re.match(rb"^/dev/pts/\d+\r\n40 100\r\n$", seen), seen  # ONLCR: a terminal's newlines
    await more.put(pb.ExecStreamRequest(resize=pb.TerminalSize(width=120, height=50)))
    await more.put(pb.ExecStreamRequest(stdin_data=b"\n"))  # `read` returns: the size is asked again
    rest = [o async for o in outputs]
    await more.put(None)
    assert output(b"".join(o.stdout for o in rest), relayed) == b"\r\n50 120\r\n"  # the typed newline, echoed
    assert rest[-1].exited and rest[-1].exit_code == 3


async def an_interactive_shell(cri: RuntimeClient, cid: str, relayed: bool = False) -> None:
    more: asyncio.Queue[pb.ExecStreamRequest | None] = asyncio.Queue()
    outputs = cri.exec_stream(tty_requests(cid, ["sh"], (80, 24), more))
    await more.put(pb.ExecStreamRequest(stdin_data=b"[ -t 0 ] && echo tty$((6 * 7))\n"))
    await read_until(outputs, b"tty42\r\n", relayed)  # the answer: the line itself is echoed (and prompts)
    await more.put(pb.ExecStreamRequest(stdin_data=b"echo hi; exit 7\n"))
    rest = [o async for o in outputs]
    await more.put(None)
    assert b"echo hi; exit 7\r\nhi\r\n" in output(b"".join(o.stdout for o in rest), relayed)
    assert rest[-1].exited and rest[-1].exit_code == 7


async def test_a_terminal_is_sized_and_resized(cri: RuntimeClient) -> None:
    _, [cid] = await run_pod(cri, "xt", ctr_config("main", ["sleep", "1000"]))
    await a_terminal_is_sized_and_resized(cri, cid, first_settles=True)


async def test_an_interactive_shell_on_a_terminal(cri: RuntimeClient) -> None:
    _, [cid] = await run_pod(cri, "xsh", ctr_config("main", ["sleep", "1000"]))
    await an_interactive_shell(cri, cid)
    more: asyncio.Queue[pb.ExecStreamRequest | None] = asyncio.Queue()
    outputs = cri.exec_stream(tty_requests(cid, ["sh", "-c", "cat; echo eof $?"], (80, 24), more))
    await more.put(pb.ExecStreamRequest(stdin_data=b"typed\n"))
    await more.put(pb.ExecStreamRequest(stdin_closed=True))  # ^D: the end of cat's input
    rest = [o async for o in outputs]
    await more.put(None)
    assert b"".join(o.stdout for o in rest) == b"typed\r\ntyped\r\neof 0\r\n"
    assert rest[-1].exited and rest[-1].exit_code == 0


async def test_leaving_a_terminal_hangs_it_up(cri: RuntimeClient) -> None:
    _, [cid] = await run_pod(cri, "xh", ctr_config("main", ["sleep", "1000"]))
    await leaving_hangs_up(cri, cid)


async def leaving_hangs_up(cri: RuntimeClient, cid: str, relayed: bool = False) -> None:
    more: asyncio.Queue[pb.ExecStreamRequest | None] = asyncio.Queue()
    outputs = cri.exec_stream(tty_requests(cid, ["sh"], (80, 24), more))
    await more.put(pb.ExecStreamRequest(stdin_data=b"trap '' TERM; echo re''ady\n"))
    await read_until(outputs, b"ready\r\n", relayed)
    left = time.monotonic()
    await outputs.aclose()  # an interactive shell ignores SIGTERM: only the hang-up ends it
    await more.put(None)
    while True:
        ps = await cri.exec_sync(cid, ["ps", "-o", "args"], timeout=10)
        shells = [line for line in ps.stdout.decode().splitlines() if line.strip() == "sh"]
        if not shells or time.monotonic() - left > 10:
            break
        await asyncio.sleep(0.1)
    assert not shells and b"sleep 1000" in ps.stdout
    assert time.monotonic() - left < 1.5  # the hang-up, not the SIGKILL after the grace period


async def test_a_terminal_refused(cri: RuntimeClient) -> None:
    _, [cid] = await run_pod(cri, "xr", ctr_config("main", ["sleep", "1000"]))
    more: asyncio.Queue[pb.ExecStreamRequest | None] = asyncio.Queue()
    outputs = cri.exec_stream(tty_requests(cid, ["no-such-command"], (80, 24), more))
    seen = [o async for o in outputs]
    await more.put(None)
    assert b"no-such-command" in b"".join(o.stdout for o in seen)  # said on the terminal, as crun does
    assert seen[-1].exited and seen[-1].exit_code != 0
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in cri.exec_stream(tty_requests("nope", ["sh"], (80, 24), more)):
            pass
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def process_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The CRI service on the process runtime (containers as host processes)."""
    base = tmp_path_factory.mktemp(session_prefix("kx"))
    socket = base / "run" / "cri.sock"
    argv = [sys.executable, "-m", "kray.runtime", "--socket", str(socket), "--state-dir", str(base / "state")]
    proc = subprocess.Popen([*argv, "--runtime", "process", "--log-level", "ERROR"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().startswith(b"ready")
        yield socket
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


async def test_a_terminal_on_the_process_runtime(process_service: Path) -> None:
    cri = RuntimeClient(process_service, timeout=30)
    await cri.wait_ready(30)
    host = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="main"), image=pb.ImageSpec(image="host"), command=["sleep", "1000"]
    )
    try:
        _, [cid] = await run_pod(cri, "xp", host)
        await a_terminal_is_sized_and_resized(cri, cid)
        await an_interactive_shell(cri, cid)
    finally:
        for sb in await cri.list_pod_sandbox():
            await cri.stop_pod_sandbox(sb.id)
            await cri.remove_pod_sandbox(sb.id)
        await cri.close()


class RuncService(Service):
    """The CRI service on runc, which relays a terminal through its own stdio (a pty of ours)."""

    def argv(self) -> list[str]:
        return ["runc" if a == "crun" else a for a in super().argv()]

    def hard_cleanup(self) -> None:
        self.stop()
        with contextlib.suppress(Exception):  # Service's clean-up knows crun's containers only
            rt = make_runtime("runc", self.state / "oci")
            for c in rt.list():
                rt.delete(c["id"], force=True)
        super().hard_cleanup()


@pytest.fixture(scope="module")
def runc_service(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> Iterator[Service]:
    if not shutil.which("runc") and not os.path.exists("/usr/sbin/runc"):
        pytest.skip("runc not installed")
    prefix = session_prefix("kr")
    base = tmp_path_factory.mktemp(prefix)
    subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}.0/24"
    svc = RuncService(prefix, base, base / "run" / "cri.sock", subnet)
    try:
        svc.start()
        yield svc
    finally:
        svc.hard_cleanup()


async def test_a_terminal_on_runc(runc_service: Service, busybox_tar: Path) -> None:
    cri = RuntimeClient(runc_service.socket, timeout=60)
    await cri.wait_ready(30)
    try:
        await cri.pull_image(f"oci-archive:{busybox_tar}:busybox:latest")
        _, [cid] = await run_pod(cri, "xrunc", ctr_config("main", ["sleep", "1000"]))
        await a_terminal_is_sized_and_resized(cri, cid, resize_settles=True)
        await an_interactive_shell(cri, cid, relayed=True)
        await leaving_hangs_up(cri, cid, relayed=True)
    finally:
        with contextlib.suppress(grpc.aio.AioRpcError):
            for sb in await cri.list_pod_sandbox():
                await cri.remove_pod_sandbox(sb.id)
        await cri.close()
