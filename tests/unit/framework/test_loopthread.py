"""LoopThread: a core on its own thread's loop, callable from outside, stoppable, errors kept."""

from __future__ import annotations

import asyncio

import pytest

from kray.actors.framework.loopthread import LoopThread


def test_runs_calls_and_stops() -> None:
    seen: list[str] = []

    async def serve() -> None:
        seen.append("started")
        await asyncio.Event().wait()

    runner = LoopThread(serve, "t-serve")
    assert runner.running and seen == ["started"]

    async def on_loop() -> int:
        assert asyncio.get_running_loop() is runner.loop
        return 7

    assert runner.call(on_loop()) == 7
    runner.stop()
    assert not runner.running and runner.error is None
    with pytest.raises(RuntimeError, match="not running"):
        runner.call(on_loop())


def test_a_failing_core_is_reported() -> None:
    async def serve() -> None:
        raise ValueError("boom")

    runner = LoopThread(serve, "t-fail")
    runner.stop()
    assert runner.error is not None and "boom" in runner.error and not runner.running
