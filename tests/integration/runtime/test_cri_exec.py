"""The runtime's streaming exec (ExecStream) on real crun containers: output while the command
runs, stdin in and closed, the exit code, and a cancelled stream ending the command (root only)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from cri_harness import ctr_config, run_pod

from kray.runtime.cri import api_pb2 as pb
from kray.runtime.cri.client import RuntimeClient

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
