"""The runtime's side of ``ExecStream``: a command in a container, its pipes relayed over gRPC.

The first request names the container, the command and whether stdin is wanted; later requests
carry stdin bytes and finally ``stdin_closed``. A feeder thread writes them to the process while
this thread reads stdout and stderr as they come (``selectors``), so a command that prints while
it runs is seen while it runs. When the RPC ends early (the client went away, a deadline), the
process is terminated, then killed: an exec never outlives its caller.
"""

from __future__ import annotations

import logging
import os
import selectors
import subprocess
import threading
from collections.abc import Iterator
from typing import IO, Any

from kray.runtime.cri import api_pb2 as pb
from kray.runtime.records import InvalidArgument
from kray.runtime.service import NodeRuntime

log = logging.getLogger("kray.runtime.cri")

CHUNK = 64 << 10
TERM_GRACE_S = 2.0


def _feed(requests: Iterator[pb.ExecStreamRequest], stdin: IO[bytes] | None) -> None:
    """Copy stdin messages to the process until stdin_closed or the stream's end."""
    try:
        for req in requests:
            if stdin is None:
                continue  # no stdin asked for: drain the stream so the client can half-close
            if req.stdin_data:
                stdin.write(req.stdin_data)
                stdin.flush()
            if req.stdin_closed:
                break
    except (BrokenPipeError, ValueError):
        pass  # the process exited or closed its stdin: what is left has nowhere to go
    except Exception:  # the RPC was cancelled under us: the reader side ends the process
        pass
    finally:
        if stdin is not None:
            try:
                stdin.close()
            except OSError:
                pass


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(TERM_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def exec_stream(
    node: NodeRuntime, requests: Iterator[pb.ExecStreamRequest], context: Any
) -> Iterator[pb.ExecStreamResponse]:
    first = next(requests, None)
    if first is None:
        raise InvalidArgument("exec: the stream ended before saying what to run")
    proc = node.exec_start(first.container_id, list(first.cmd), first.stdin)
    context.add_callback(lambda: _end(proc))  # runs when the RPC ends, however it ends
    feeder = threading.Thread(target=_feed, args=(requests, proc.stdin), name="exec-stdin", daemon=True)
    feeder.start()
    assert proc.stdout is not None and proc.stderr is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
        sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
        while sel.get_map():
            for key, _ in sel.select():
                data = os.read(key.fd, CHUNK)
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                if key.data == "stdout":
                    yield pb.ExecStreamResponse(stdout=data)
                else:
                    yield pb.ExecStreamResponse(stderr=data)
    code = proc.wait()
    yield pb.ExecStreamResponse(exited=True, exit_code=code)
