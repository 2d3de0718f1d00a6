"""Reading CRI-format container logs (what the shim writes, what `kray logs` shows).

A record is `<RFC3339Nano time> <stdout|stderr> <F|P> <content>`; `P` marks a partial record
(a line longer than the shim's limit, split) that continues in the next record of that stream.
Logs are named like the kubelet's, `<log-dir>/<container-name>/<restartCount>.log`, so the
previous instance's log stays next to the current one (`kray logs --previous`).
"""

from __future__ import annotations

import asyncio
import calendar
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

STREAMS = ("stdout", "stderr")


@dataclass
class LogLine:
    time_ns: int
    stream: str
    content: bytes  # without the newline; partial records already joined

    def text(self) -> str:
        return self.content.decode(errors="replace")


def parse_time(ts: str) -> int:
    """RFC3339 (with up to 9 fractional digits, `Z` or +hh:mm) -> ns since the epoch."""
    ts = ts.strip()
    offset = 0
    if ts.endswith("Z"):
        ts = ts[:-1]
    elif len(ts) > 6 and ts[-6] in "+-" and ts[-3] == ":":
        sign = 1 if ts[-6] == "+" else -1
        offset = sign * (int(ts[-5:-3]) * 3600 + int(ts[-2:]) * 60)
        ts = ts[:-6]
    base, _, frac = ts.partition(".")
    secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) - offset
    return secs * 1_000_000_000 + int((frac + "000000000")[:9])


def parse_record(raw: bytes) -> tuple[int, str, bool, bytes] | None:
    """(time_ns, stream, partial, content) of one record, None when it is not CRI format."""
    parts = raw.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3 or parts[1].decode(errors="replace") not in STREAMS or parts[2] not in (b"F", b"P"):
        return None
    try:
        ns = parse_time(parts[0].decode())
    except ValueError:
        return None
    return ns, parts[1].decode(), parts[2] == b"P", parts[3] if len(parts) > 3 else b""


class _Joiner:
    """Joins partial records per stream into whole lines."""

    def __init__(self, streams: tuple[str, ...]) -> None:
        self.streams = streams
        self.pending: dict[str, tuple[int, bytes]] = {}

    def feed(self, raw: bytes) -> LogLine | None:
        rec = parse_record(raw)
        if rec is None:
            return None
        ns, stream, partial, content = rec
        if stream not in self.streams:
            return None
        first_ns, prev = self.pending.pop(stream, (ns, b""))
        if partial:
            self.pending[stream] = (first_ns, prev + content)
            return None
        return LogLine(first_ns, stream, prev + content)


def log_path(log_dir: Path | str, container: str, restart_count: int) -> Path:
    return Path(log_dir) / container / f"{restart_count}.log"


def previous_log_path(log_dir: Path | str, container: str) -> Path | None:
    """The log of the instance before the newest one, if kept."""
    d = Path(log_dir) / container
    counts = sorted(int(p.stem) for p in d.glob("*.log") if p.stem.isdigit()) if d.is_dir() else []
    return d / f"{counts[-2]}.log" if len(counts) >= 2 else None


def read_log(
    path: Path | str,
    tail: int | None = None,
    since_ns: int | None = None,
    streams: tuple[str, ...] = STREAMS,
) -> list[LogLine]:
    """Whole lines of the log, oldest first: the last `tail` of them, only those at or after
    `since_ns`, only the given streams."""
    lines = list(_lines(Path(path), streams, since_ns))
    if tail is not None:
        lines = lines[-tail:] if tail > 0 else []
    return lines


def _lines(path: Path, streams: tuple[str, ...], since_ns: int | None) -> Iterator[LogLine]:
    joiner = _Joiner(streams)
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # a record being written right now: the next read gets it whole
            line = joiner.feed(raw)
            if line is not None and (since_ns is None or line.time_ns >= since_ns):
                yield line


def follow(
    path: Path | str,
    tail: int | None = None,
    since_ns: int | None = None,
    streams: tuple[str, ...] = STREAMS,
    stop: Callable[[], bool] = lambda: False,
    poll: float = 0.1,
) -> Iterator[LogLine]:
    """Like `tail -f`: the selected existing lines, then new ones as they are written, until
    `stop()` says so (e.g. the container exited) and everything written is read."""
    path = Path(path)
    while not path.exists():
        if stop():
            return
        time.sleep(poll)
    joiner = _Joiner(streams)

    def keep(raw: bytes) -> LogLine | None:
        line = joiner.feed(raw)
        return line if line is not None and (since_ns is None or line.time_ns >= since_ns) else None

    with open(path, "rb") as f:
        existing: list[LogLine] = []
        buf = b""
        while chunk := f.readline():
            buf += chunk
            if not buf.endswith(b"\n"):
                break  # a record being written right now: finished in the loop below
            line, buf = keep(buf), b""
            if line is not None:
                existing.append(line)
        if tail is not None:
            existing = existing[-tail:] if tail > 0 else []
        yield from existing
        while True:
            chunk = f.readline()
            if chunk:
                buf += chunk
                if buf.endswith(b"\n"):
                    line, buf = keep(buf), b""
                    if line is not None:
                        yield line
                continue
            if stop():
                # One last look: the writer may have finished between our read and stop().
                for raw in (buf + f.read()).splitlines(keepends=True):
                    line = keep(raw)
                    if line is not None:
                        yield line
                return
            time.sleep(poll)


async def afollow(
    path: Path | str,
    tail: int | None = None,
    since_ns: int | None = None,
    streams: tuple[str, ...] = STREAMS,
    stop: Callable[[], bool] = lambda: False,
    poll: float = 0.1,
) -> AsyncIterator[LogLine]:
    """`follow` for asyncio callers: the blocking reads run in a worker thread."""
    it = follow(path, tail, since_ns, streams, stop, poll)
    sentinel = object()
    while True:
        line = await asyncio.to_thread(next, it, sentinel)
        if line is sentinel:
            return
        assert isinstance(line, LogLine)
        yield line


def file_size(path: Path | str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
