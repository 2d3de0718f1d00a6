"""Named network namespaces and netlink sockets inside them, without forking.

pyroute2's ``NetNS`` and ``netns.create`` fork the calling process to enter a namespace. In a
process that also runs Ray, gRPC or an asyncio loop, that forked copy can fail and then carry
on running the parent's code (seen in the test suite: a second pytest). Instead: namespaces
are made by ``ip netns add`` (exec, not a bare fork), and a socket for one is opened on the
calling thread after ``setns(2)`` into it — network namespaces are per thread, and a socket
stays in the namespace it was opened in after the thread goes back.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from pyroute2 import IPRoute

NETNS_DIR = Path("/var/run/netns")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def create(name: str) -> None:
    if not exists(name):
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, text=True)


def remove(name: str) -> None:
    if exists(name):
        done = subprocess.run(["ip", "netns", "delete", name], capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError(f"ip netns delete {name}: {done.stderr.strip()}")


@contextlib.contextmanager
def entered(path: str | Path) -> Iterator[None]:
    """This thread inside the namespace at ``path`` for the block, then back in its own: for
    opening sockets there (they stay in it). Keep the block short: nothing else should run
    on this thread in the meantime."""
    target = os.open(path, os.O_RDONLY)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


@contextlib.contextmanager
def iproute(name: str | None = None) -> Iterator[IPRoute]:
    """An ``IPRoute`` in the named namespace (the current one when ``name`` is None)."""
    if not name:
        with IPRoute() as ip:
            yield ip
        return
    with entered(NETNS_DIR / name):
        ip = IPRoute()
    try:
        yield ip
    finally:
        ip.close()
