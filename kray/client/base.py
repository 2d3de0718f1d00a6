"""What the sync and async clients share besides the sans-I/O ops: config, headers, errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, Union

import httpx

from .discovery import DiscoveryCache
from .errors import ConnectionFailed

if TYPE_CHECKING:
    from kray.config import KrayConfig
    from kray.crds.meta import Resource
    from kray.crds.registry import KindInfo

    from .paths import ResourceRef

R = TypeVar("R", bound="Resource")
# What raw methods accept: anything ``paths.ref_of`` understands.
RefArg = Union["ResourceRef", "type[Resource]", "KindInfo"]

DEFAULT_TIMEOUT = 30.0


class ClientBase:
    """Holds the server address, the token and the discovery cache."""

    def __init__(
        self,
        config: KrayConfig | None = None,
        *,
        server: str | None = None,
        token: str | None = None,
        namespace: str = "default",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if config is None and server is None:
            from kray.config import load_config

            config = load_config()
        self.server = (server or (config.server if config else "")).rstrip("/")
        self.token = token if token is not None else (config.token if config else "")
        self.namespace = namespace
        self.timeout = timeout
        self.discovery = DiscoveryCache()

    def _http_options(self) -> dict[str, Any]:
        headers = {"Accept": "application/json", "User-Agent": "kray-client"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return {"base_url": self.server, "headers": headers, "timeout": self.timeout}

    def _connection_failed(self, exc: Exception) -> ConnectionFailed:
        detail = str(exc) or type(exc).__name__
        return ConnectionFailed(f"cannot reach the kray API server at {self.server}: {detail}")

    def invalidate_discovery(self) -> None:
        """Forget discovered resources (after installing a CustomResourceDefinition)."""
        self.discovery.invalidate()


# httpx's error for refused connections, DNS failures, timeouts and broken streams.
TransportError = httpx.TransportError


def watch_timeout(timeout_seconds: int | None) -> httpx.Timeout:
    # A watch may sit idle for a long time between events: no read timeout unless the server
    # was asked to end the watch, then a little slack past that.
    read = None if timeout_seconds is None else timeout_seconds + 10.0
    return httpx.Timeout(DEFAULT_TIMEOUT, read=read)
