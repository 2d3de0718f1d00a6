"""Client-side errors, decoded from the API server's Kubernetes ``Status`` bodies.

The exception class is picked from the HTTP code (and, for 409, the Status ``reason``) so
callers can write ``except NotFound`` / ``except Conflict`` the way they would against
client-go's ``apierrors.IsNotFound``. Kept free of pydantic so importing it is cheap.
"""

from __future__ import annotations

import json
from typing import Any


class KrayClientError(Exception):
    """Base of every error the client raises."""


class ConnectionFailed(KrayClientError):
    """The API server could not be reached (refused, DNS, timeout, broken stream)."""


class UnknownResource(KrayClientError, LookupError):
    """Discovery found no resource for a name or for an apiVersion/kind."""


class ApiError(KrayClientError):
    """The server answered with an error ``Status``."""

    def __init__(self, status: int, reason: str, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.body: dict[str, Any] = body or {}

    @property
    def causes(self) -> list[dict[str, Any]]:
        """``details.causes`` of the Status: per-field problems of a 422."""
        details = self.body.get("details") or {}
        causes = details.get("causes") or []
        return [c for c in causes if isinstance(c, dict)]

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(status={self.status}, reason={self.reason!r}, message={self.message!r})"


class BadRequest(ApiError):
    """400: malformed request (bad selector, undecodable body, ...)."""


class Unauthorized(ApiError):
    """401: missing or wrong bearer token."""


class Forbidden(ApiError):
    """403: authenticated but not allowed (or namespace terminating)."""


class NotFound(ApiError):
    """404: the object, namespace or resource type does not exist."""


class MethodNotAllowed(ApiError):
    """405: the resource does not support this verb."""


class Conflict(ApiError):
    """409: optimistic-concurrency failure; re-read and retry."""


class AlreadyExists(Conflict):
    """409 with reason AlreadyExists: create() of a name already taken."""


class Gone(ApiError):
    """410: the requested resourceVersion is compacted ("too old"); relist and rewatch."""


class Invalid(ApiError):
    """422: the object failed validation; ``causes`` names the fields."""


class TooManyRequests(ApiError):
    """429: throttled; retry later."""


class ServerError(ApiError):
    """5xx: the server failed."""


_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
}

# Reason strings used when the body is not a Status (e.g. a proxy's HTML error page).
_DEFAULT_REASON = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
}


def error_from_status(code: int, body: dict[str, Any]) -> ApiError:
    """Build the right ``ApiError`` subclass from an HTTP code and a decoded Status body."""
    code = int(body.get("code") or code) if body.get("kind") == "Status" else code
    fallback = _DEFAULT_REASON.get(code, "InternalError" if code >= 500 else "Unknown")
    reason = str(body.get("reason") or fallback)
    message = str(body.get("message") or f"the server answered HTTP {code} ({reason})")
    if code == 409 and reason == "AlreadyExists":
        cls: type[ApiError] = AlreadyExists
    elif code in _BY_CODE:
        cls = _BY_CODE[code]
    elif code >= 500:
        cls = ServerError
    else:
        cls = ApiError
    return cls(code, reason, message, body)


def error_from_response(code: int, content: bytes) -> ApiError:
    """Decode a failed response body; a non-JSON body still yields a readable error."""
    try:
        body = json.loads(content) if content else {}
    except ValueError:
        text = content.decode("utf-8", "replace").strip()
        body = {"message": f"the server answered HTTP {code}: {text[:200]}"} if text else {}
    if not isinstance(body, dict):
        body = {}
    return error_from_status(code, body)
