"""Running the API server with uvicorn: on the caller's loop, or on a thread of its own.

The socket is bound before uvicorn starts, so port 0 works (the kernel picks a free port)
and the bound port is known without racing uvicorn's startup.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from .app import ApiServer

GRACEFUL_SHUTDOWN_SECONDS = 5


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only turns on TCP_NODELAY for accepted sockets whose
    # proto says TCP, and without it every response waits ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn waits for open requests before running lifespan shutdown, and a watch never
    finishes by itself: end the watches first, so shutdown does not hang on them."""

    def __init__(self, config: uvicorn.Config, api: ApiServer) -> None:
        super().__init__(config)
        self.api = api

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.api.stop()
        await super().shutdown(sockets)


def make_server(api: ApiServer, *, log_level: str = "warning", **config: Any) -> uvicorn.Server:
    cfg = uvicorn.Config(
        api.app,
        log_level=log_level,
        access_log=False,  # per-request logging costs more than many requests themselves
        # No proxy in front of the API server, and nothing reads the client address: skip
        # uvicorn's X-Forwarded-* middleware on every request.
        proxy_headers=False,
        lifespan="on",
        ws="websockets-sansio",  # pods/{name}/exec (podexec.py); plain HTTP pays nothing for it
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        **config,
    )
    return _Server(cfg, api)


async def serve(api: ApiServer, host: str = "127.0.0.1", port: int = 6443, *, log_level: str = "warning") -> None:
    """Serve until cancelled or until the server is told to exit (inside a running loop)."""
    sock = bind_socket(host, port)
    server = make_server(api, log_level=log_level)
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()


class ServerThread:
    """An API server on its own thread and event loop (tests; the Ray actor).

    ``factory`` builds the ApiServer on the server's loop, which matters for stores whose
    clients bind to the loop they were created on (grpc.aio for etcd).
    """

    def __init__(
        self,
        factory: Callable[[], Awaitable[ApiServer]] | ApiServer,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_level: str = "warning",
    ) -> None:
        self._factory = factory
        self.host = host
        self._sock = bind_socket(host, port)
        self.port: int = self._sock.getsockname()[1]
        self._log_level = log_level
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.server: uvicorn.Server | None = None
        self.api: ApiServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name=f"kray-apiserver-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:
            self._error = exc
        finally:
            self._started.set()
            self.loop.close()

    async def _main(self) -> None:
        factory = self._factory
        self.api = factory if isinstance(factory, ApiServer) else await factory()
        self.server = make_server(self.api, log_level=self._log_level)
        serving = asyncio.ensure_future(self.server.serve(sockets=[self._sock]))
        while not self.server.started and not serving.done():
            await asyncio.sleep(0.01)
        self._started.set()
        await serving

    def start(self, timeout: float = 30.0) -> int:
        """Start serving; returns the bound port once requests are accepted."""
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError(f"API server did not start within {timeout}s")
        if self._error is not None:
            raise RuntimeError(f"API server failed to start: {self._error!r}") from self._error
        if self.server is None or not self.server.started:
            raise RuntimeError("API server exited during startup")
        return self.port

    def stop(self, timeout: float = 15.0) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()


def start_in_thread(
    api: ApiServer | Callable[[], Awaitable[ApiServer]], host: str = "127.0.0.1", port: int = 0
) -> ServerThread:
    """Start an API server on a background thread; ``.port``/``.url`` say where, ``.stop()`` ends it."""
    thread = ServerThread(api, host, port)
    thread.start()
    return thread
