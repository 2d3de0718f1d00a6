"""``kray exec POD [-c CONTAINER] [-i] [-t] -- COMMAND [ARGS...]``: run a command in a running container.

Speaks Kubernetes' WebSocket channel protocol (``v5.channel.k8s.io``) to the API server's
``pods/{name}/exec``, as kubectl does: the command's stdout and stderr arrive as it writes them,
``-i`` sends this process's stdin (its end closes the command's stdin), and kray exits with the
command's exit code.

``-it`` from a terminal is an interactive session: the command runs on a terminal in the
container, this one is put in raw mode (every key, ^C included, goes to the command; restored
when the session ends, however it ends), and its size is sent first and again on every SIGWINCH
(channel 4). As with kubectl, ``-t`` without ``-i`` is ignored, and with stdin that is not a
terminal it is dropped with a warning.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import termios
import threading
import tty as ttymode
from collections.abc import Callable, Iterator
from typing import Any

import click

from kray.cli import remote
from kray.cli.common import make_client
from kray.client import channels

NOT_A_TERMINAL = "Unable to use a TTY - input is not a terminal or the right kind of file"


def resize_message(fds: tuple[int, ...]) -> bytes | None:
    """The first terminal's size among ``fds`` as a resize message (kubectl asks stdout first)."""
    for fd in fds:
        with contextlib.suppress(OSError):
            size = os.get_terminal_size(fd)
            return channels.resize_message(size.columns, size.lines)
    return None


def _send_resizes(ws: Any, wanted: queue.SimpleQueue[bool], fds: tuple[int, ...]) -> None:
    """The terminal's size each time SIGWINCH asks (False: the session is over)."""
    while wanted.get():
        message = resize_message(fds)
        if message is None:
            continue
        try:
            ws.send(message)
        except Exception:
            return  # the connection ended: nothing more to size


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """``fd``'s terminal in raw mode, put back as it was when the block ends, however it ends
    (SIGTERM and SIGHUP too: they become SystemExit, so the ``finally`` runs)."""
    saved = termios.tcgetattr(fd)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}

    def leave(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    for sig in handlers:
        signal.signal(sig, leave)
    try:
        ttymode.setraw(fd, termios.TCSANOW)  # as kubectl: keys typed ahead are kept, not flushed
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _writer(stream: Any) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        stream.buffer.write(data)
        stream.buffer.flush()

    return write


def _session(ws: Any, stdin: bool, tty: bool) -> dict[str, Any] | None:
    """Pump stdin (and sizes) in, output out; the error channel's Status at the end."""
    status: dict[str, Any] | None
    resizes: queue.SimpleQueue[bool] = queue.SimpleQueue()  # put() is safe in a signal handler
    previous = None
    if tty:
        size_fds = (sys.stdout.fileno(), sys.stdin.fileno())
        if (message := resize_message(size_fds)) is not None:  # first: the command starts this big
            ws.send(message)
        previous = signal.signal(signal.SIGWINCH, lambda *_: resizes.put(True))
        threading.Thread(target=_send_resizes, args=(ws, resizes, size_fds), daemon=True).start()
        # Keys as they are typed, straight from the raw terminal (no buffering: a key is a message).
        keys = iter(lambda: os.read(sys.stdin.fileno(), 64 << 10), b"")
        threading.Thread(target=remote.send_stdin, args=(ws, keys), daemon=True).start()
    elif stdin:
        source: Any = sys.stdin.buffer  # a BufferedReader: read1 returns what is there, not 64 KiB
        lines = iter(lambda: source.read1(64 << 10), b"")
        threading.Thread(target=remote.send_stdin, args=(ws, lines), daemon=True).start()
    try:
        status = remote.receive(ws, _writer(sys.stdout), _writer(sys.stderr))
    finally:
        if tty:
            signal.signal(signal.SIGWINCH, previous)
            resizes.put(False)
    return status


@click.command("exec")
@click.argument("pod")
@click.argument("command", nargs=-1, required=True)
@click.option("-c", "--container", default=None, help="Container name (default: the pod's only one).")
@click.option("-n", "--namespace", default="default")
@click.option("-i", "--stdin", is_flag=True, help="Pass stdin to the command.")
@click.option("-t", "--tty", is_flag=True, help="Stdin is a TTY: with -i, an interactive session on a terminal.")
def exec_cmd(pod: str, command: tuple[str, ...], container: str | None, namespace: str, stdin: bool, tty: bool) -> None:
    """Run COMMAND in a container of POD (put it after --), with its exit code as kray's."""
    if tty and not stdin:
        tty = False  # as kubectl: no input, so no terminal to type on
    if tty and not sys.stdin.isatty():
        click.echo(NOT_A_TERMINAL, err=True)
        tty = False
    client = make_client()
    client.close()  # only its server and token are needed: the session is a WebSocket of its own
    url = remote.exec_url(client.server, namespace, pod.removeprefix("pod/"), list(command), container, stdin, tty)
    with (
        remote.session(client, url) as ws,
        raw_terminal(sys.stdin.fileno()) if tty else contextlib.nullcontext(),
    ):
        status = _session(ws, stdin, tty)
    sys.exit(remote.exit_code_of(status))
