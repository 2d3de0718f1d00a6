"""The runtime's side of ``ExecStream``: a command in a container, its pipes relayed over gRPC.

The first request names the container, the command and whether stdin is wanted; later requests
carry stdin bytes and finally ``stdin_closed``. A feeder thread writes them to the process while
this thread reads stdout and stderr as they come (``selectors``), so a command that prints while
it runs is seen while it runs. When the RPC ends early (the client went away, a deadline), the
process is terminated, then killed: an exec never outlives its caller.

With ``tty`` the command runs on a terminal instead of pipes. The OCI runtime allocates it in
the container, sized from the first request's ``resize`` (runc and the process runtime before
the command starts; crun as it lets it start, so a command that asks at once may, under load,
see 0x0 and then get SIGWINCH), and crun sends its master over a console socket
(``SCM_RIGHTS``, ``--console-socket``). runc takes a console socket only when it detaches (then
nobody gets the exit code), so it runs in the foreground and relays the terminal through its
own stdio, a pty of ours in raw mode (it copies that pty's size on SIGWINCH). What the command
writes arrives as stdout (a terminal has one output), stdin is typed on it, later resizes set
its size (``TIOCSWINSZ``) and ``stdin_closed`` types ^D. An early end of the RPC hangs the
terminal up, which ends an interactive shell that ignores SIGTERM.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import select
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import termios
import threading
import time
import tty
from collections.abc import Iterator
from typing import IO, Any

from kray.runtime.cri import api_pb2 as pb
from kray.runtime.records import CriError, DeadlineExceeded, InvalidArgument
from kray.runtime.service import NodeRuntime

log = logging.getLogger("kray.runtime.cri")

CHUNK = 64 << 10
TERM_GRACE_S = 2.0
CONSOLE_TIMEOUT_S = 30.0  # for the runtime to send the terminal (it has a container to enter)
DRAIN_QUIET_S = 0.25  # after the exit: what the terminal still holds comes within this...
DRAIN_MAX_S = 2.0  # ...and a background job that keeps it open and talking is cut off here
EOF_CHAR = b"\x04"  # ^D, the terminal's default VEOF: "end of input" to a program reading it
RELAYING_RUNTIMES = ("runc",)  # a terminal through their stdio, not a console socket


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


def _exit_code(proc: subprocess.Popen[bytes]) -> int:
    code = proc.wait()
    return 128 - code if code < 0 else code  # -N: killed by signal N, which a shell says as 128+N


# Sent once the command runs: the caller writes stdin only after it (see client._bidi), so a
# refusal (no such container, not running) always reaches it as this call's status.
HANDSHAKE = pb.ExecStreamResponse()


def exec_stream(
    node: NodeRuntime, requests: Iterator[pb.ExecStreamRequest], context: Any
) -> Iterator[pb.ExecStreamResponse]:
    first = next(requests, None)
    if first is None:
        raise InvalidArgument("exec: the stream ended before saying what to run")
    if first.tty:
        yield from _exec_on_terminal(node, first, requests, context)
        return
    proc = node.exec_start(first.container_id, list(first.cmd), first.stdin)
    context.add_callback(lambda: _end(proc))  # runs when the RPC ends, however it ends
    yield HANDSHAKE
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
    yield pb.ExecStreamResponse(exited=True, exit_code=_exit_code(proc))


# --- on a terminal ----------------------------------------------------------------------------


class _Console:
    """A listening unix socket in a private (0700) folder: where the runtime sends the master.
    Under the temp dir, not the state dir: a socket path must fit in 108 bytes."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="kray-exec-")
        self.path = os.path.join(self.dir, "console.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)

    def receive(self, proc: subprocess.Popen[bytes]) -> int:
        """The terminal's master fd, once the runtime sends it; an error if it exits first."""
        deadline = time.monotonic() + CONSOLE_TIMEOUT_S
        self.sock.settimeout(0.1)
        while True:
            exited = proc.poll() is not None  # before accept: a sender that then exited is queued
            try:
                conn, _ = self.sock.accept()
                break
            except TimeoutError:
                if exited:
                    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                    raise CriError(f"exec: the runtime exited ({proc.returncode}) without a terminal: {err}") from None
                if time.monotonic() > deadline:
                    raise DeadlineExceeded(f"exec: no terminal from the runtime in {CONSOLE_TIMEOUT_S:.0f}s") from None
        with conn:
            conn.settimeout(max(deadline - time.monotonic(), 1.0))
            _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        if not fds:
            raise CriError("exec: the runtime's console message carried no terminal")
        return fds[0]

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)  # the socket and the process file


class _Terminal:
    """The master of the command's terminal, shared by the reader (the RPC's thread) and the
    typist (the feeder thread). Closed once, under a lock, so no thread writes to a reused fd;
    non-blocking, so a command that does not read its input never holds the lock."""

    def __init__(self, fd: int, relay: subprocess.Popen[bytes] | None = None) -> None:
        self.fd = fd
        self.relay = relay  # a runtime that copies this terminal's size to the container's one
        os.set_blocking(fd, False)
        self._lock = threading.Lock()
        self.closed = False

    def type(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            with self._lock:
                if self.closed:
                    return
                try:
                    view = view[os.write(self.fd, view) :]
                    continue
                except BlockingIOError:  # its input queue is full: wait until the command reads
                    select.select([], [self.fd], [], 0.1)

    def resize(self, width: int, height: int) -> None:
        with self._lock:
            if not self.closed:
                _set_size(self.fd, width, height)
                if self.relay is not None and self.relay.poll() is None:
                    self.relay.send_signal(signal.SIGWINCH)  # no session has this pty: say it

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                os.close(self.fd)


def _set_size(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def _type_on(requests: Iterator[pb.ExecStreamRequest], term: _Terminal, stdin: bool) -> None:
    """Stdin and resizes to the terminal until the stream ends (resizes outlive stdin)."""
    try:
        for req in requests:
            if req.HasField("resize"):
                term.resize(req.resize.width, req.resize.height)
            if stdin and req.stdin_data:
                term.type(req.stdin_data)
            if stdin and req.stdin_closed:
                term.type(EOF_CHAR)
                stdin = False
    except Exception:  # the RPC ended, or the terminal went away: nothing left to type on
        pass


def _poke(sock: socket.socket, why: bytes) -> None:
    with contextlib.suppress(OSError):  # already closed: the exec is over
        sock.send(why)


def _read(fd: int) -> bytes | None:
    """What is there; b"" at the end (EIO: a master whose terminal nobody holds any more)."""
    try:
        return os.read(fd, CHUNK)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno == errno.EIO:
            return b""
        raise


def _exec_on_terminal(
    node: NodeRuntime, first: pb.ExecStreamRequest, requests: Iterator[pb.ExecStreamRequest], context: Any
) -> Iterator[pb.ExecStreamResponse]:
    size = (first.resize.width, first.resize.height) if first.HasField("resize") else None
    if node.runtime.name in RELAYING_RUNTIMES:
        term = _relayed_terminal(node, first, size)
        proc = term.relay
        assert proc is not None
    else:
        proc, term = _console_terminal(node, first, size)
    wake, waker = socket.socketpair()  # "c": the RPC ended; "e": the command exited

    def rpc_ended() -> None:
        _poke(waker, b"c")  # the reader hangs the terminal up...
        if term.relay is not None and proc.poll() is None:
            proc.send_signal(signal.SIGHUP)  # ...which a relaying runtime passes on...
        _end(proc)  # ...and the runtime's exec is ended, as without a terminal

    if not context.add_callback(rpc_ended):  # the RPC is already over
        rpc_ended()
    yield HANDSHAKE
    threading.Thread(target=_type_on, args=(requests, term, first.stdin), name="exec-tty", daemon=True).start()

    def wait_exit() -> None:
        proc.wait()
        _poke(waker, b"e")

    threading.Thread(target=wait_exit, name="exec-wait", daemon=True).start()
    cancelled = False
    try:
        for out in _relay(term, proc, wake):
            if out is None:
                cancelled = True
                break
            yield out
    finally:
        term.close()  # a hang-up for whatever still holds the terminal
        wake.close()
        waker.close()
        if proc.stderr:
            proc.stderr.close()
    if not cancelled:
        yield pb.ExecStreamResponse(exited=True, exit_code=_exit_code(proc))


def _console_terminal(
    node: NodeRuntime, first: pb.ExecStreamRequest, size: tuple[int, int] | None
) -> tuple[subprocess.Popen[bytes], _Terminal]:
    """The command on a terminal whose master the runtime sends to our console socket."""
    console = _Console()
    try:
        proc = node.exec_start(first.container_id, list(first.cmd), first.stdin, console.path, size)
        try:
            return proc, _Terminal(console.receive(proc))
        except BaseException:
            _end(proc)
            raise
    finally:
        console.close()  # the runtime has read the process file and sent the master (or failed)


def _relayed_terminal(node: NodeRuntime, first: pb.ExecStreamRequest, size: tuple[int, int] | None) -> _Terminal:
    """The command on a terminal the runtime relays through its stdio: a pty of ours."""
    console = _Console()  # its folder takes the process file; the runtime is not given the socket
    master, slave = os.openpty()
    try:
        tty.setraw(slave)  # bytes pass as they are: the container's terminal does the terminal work
        if size and all(size):
            _set_size(master, *size)  # the runtime copies it to the container's terminal
        cid, cmd = first.container_id, list(first.cmd)
        proc = node.exec_start(cid, cmd, first.stdin, console.path, size, relay_fd=slave)
    except BaseException:
        os.close(master)
        console.close()
        raise
    finally:
        os.close(slave)

    def clean_up() -> None:  # the runtime reads the process file as it starts: keep it till the end
        proc.wait()
        console.close()

    threading.Thread(target=clean_up, name="exec-clean", daemon=True).start()
    return _Terminal(master, relay=proc)


def _relay(
    term: _Terminal, proc: subprocess.Popen[bytes], wake: socket.socket
) -> Iterator[pb.ExecStreamResponse | None]:
    """The terminal's output as stdout, the runtime's own errors as stderr, until the command
    exited and the terminal is drained; None: the RPC ended first."""
    exited_at: float | None = None
    with selectors.DefaultSelector() as sel:
        sel.register(term.fd, selectors.EVENT_READ, "terminal")
        if proc.stderr:
            sel.register(proc.stderr, selectors.EVENT_READ, "runtime")
        sel.register(wake, selectors.EVENT_READ, "wake")
        while True:
            if exited_at is not None and (len(sel.get_map()) == 1 or time.monotonic() - exited_at > DRAIN_MAX_S):
                return
            ready = sel.select(DRAIN_QUIET_S if exited_at is not None else None)
            if not ready:
                return  # exited, and the terminal fell quiet (a background job may still hold it)
            for key, _ in ready:
                if key.data == "wake":
                    why = wake.recv(16)
                    if b"c" in why or not why:
                        yield None
                        return
                    exited_at = time.monotonic()
                    continue
                data = _read(key.fd)
                if data is None:
                    continue
                if not data:
                    sel.unregister(key.fileobj)
                elif key.data == "terminal":
                    yield pb.ExecStreamResponse(stdout=data)
                else:
                    yield pb.ExecStreamResponse(stderr=data)
