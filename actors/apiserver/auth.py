"""Bearer-token authentication as plain ASGI middleware.

Plain ASGI (not Starlette's BaseHTTPMiddleware) so streaming watch responses pass through
untouched and the per-request cost is one header scan and a constant-time compare.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import unauthorized

# Probes and /version are open, as kube-apiserver's default RBAC allows them anonymously.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/livez", "/version"})


def token_matches(header: bytes, token: bytes) -> bool:
    scheme, _, value = header.strip().partition(b" ")
    # Compare even on a wrong scheme so the timing does not reveal which part was wrong.
    ok = hmac.compare_digest(value.strip(), token)
    return ok and scheme.lower() == b"bearer"


class BearerAuth:
    def __init__(self, app: ASGIApp, token: str | None, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] not in ("http", "websocket") or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        header = b""
        for key, value in scope["headers"]:
            if key == b"authorization":
                header = value
                break
        if token_matches(header, self.token):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            # Closing before accepting makes the server answer the upgrade with HTTP 403.
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": "Unauthorized"})
            return
        await unauthorized().response()(scope, receive, send)
