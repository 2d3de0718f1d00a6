"""The client side of the runtime's bidirectional streams (runtime/cri/client._bidi): the
handshake, a refusal arriving as itself, and a port-forward that gRPC's asyncio client failed to
send being opened once more (an exec never is)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from kray.runtime.cri.client import _bidi

UNSENT = grpc.aio.AioRpcError(
    grpc.StatusCode.INTERNAL,
    grpc.aio.Metadata(),
    grpc.aio.Metadata(),
    details="Internal error from Core",
    debug_error_string='Failed "execute_batch": (<grpc._cython.cygrpc.SendMessageOperation object>,)',
)
REFUSED = grpc.aio.AioRpcError(
    grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details="connect refused"
)


class Call:
    """A bidirectional call that answers `answers` in turn (an exception is raised when read)."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers, self.written, self.cancelled, self.closed = list(answers), [], False, False

    async def write(self, message: Any) -> None:
        self.written.append(message)

    async def done_writing(self) -> None:
        self.closed = True

    async def read(self) -> Any:
        answer = self.answers.pop(0) if self.answers else grpc.aio.EOF
        if isinstance(answer, Exception):
            raise answer
        return answer

    def cancel(self) -> None:
        self.cancelled = True


async def requests(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


def starter(*calls: Call) -> tuple[Any, list[Call]]:
    started: list[Call] = []

    def start() -> Call:
        started.append(calls[len(started)])
        return started[-1]

    return start, started


async def collect(start: Any, retry: bool) -> list[Any]:
    return [r async for r in _bidi(start, requests("open", "more"), retry_unsent=retry)]


async def test_handshake_then_responses_and_the_rest_written() -> None:
    start, started = starter(Call(["", "out1", "out2"]))
    assert await collect(start, retry=False) == ["out1", "out2"]
    assert started[0].written[0] == "open" and started[0].cancelled


async def test_unsent_port_forward_is_opened_again() -> None:
    start, started = starter(Call([UNSENT]), Call(["", "data"]))
    assert await collect(start, retry=True) == ["data"]
    assert len(started) == 2 and started[0].cancelled and started[1].written[0] == "open"


async def test_unsent_exec_is_not_retried_and_a_refusal_is_itself() -> None:
    start, started = starter(Call([UNSENT]))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(start, retry=False)
    assert err.value.code() == grpc.StatusCode.INTERNAL and len(started) == 1
    start, started = starter(Call([REFUSED]), Call(["", "never"]))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(start, retry=True)  # a refusal by the server is final
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and len(started) == 1
