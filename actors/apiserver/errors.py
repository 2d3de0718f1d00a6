"""API errors and their Kubernetes ``Status`` bodies.

Every failure leaves the server as a ``Status`` JSON document with the code, reason and
message text kube-apiserver would use, because clients (kubectl, the official Python
client, controllers) branch on ``reason`` and users grep the messages.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from kray.actors.store.kv import (
    CompactedError,
    KeyExistsError,
    KeyNotFoundError,
    RevisionConflictError,
    StoreError,
    StoreUnavailableError,
)
from kray.crds.meta import Status, StatusCause, StatusDetails
from kray.crds.registry import KindInfo

JSON = "application/json"


class ApiError(Exception):
    """A request failed; ``status`` is the body sent to the client."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: StatusDetails | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    @property
    def status(self) -> Status:
        return Status(code=self.code, reason=self.reason, message=self.message, details=self.details)

    def response(self) -> Response:
        return status_response(self.status)


def status_response(status: Status, code: int | None = None) -> Response:
    body = status.model_dump_json(by_alias=True, exclude_none=True)
    return Response(body, status_code=code or status.code, media_type=JSON)


def _details(info: KindInfo | None, name: str | None, kind: str | None = None) -> StatusDetails:
    # Kubernetes puts the *resource* (plural) in details.kind for these errors.
    return StatusDetails(
        name=name or None,
        group=(info.group or None) if info else None,
        kind=kind or (info.plural if info else None),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(info: KindInfo, name: str, why: str) -> ApiError:
    return ApiError(403, "Forbidden", f'{info.resource} "{name}" is forbidden: {why}', _details(info, name))


def not_found(info: KindInfo, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{info.resource} "{name}" not found', _details(info, name))


def namespace_not_found(namespace: str) -> ApiError:
    details = StatusDetails(name=namespace, kind="namespaces")
    return ApiError(404, "NotFound", f'namespaces "{namespace}" not found', details)


def resource_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def already_exists(info: KindInfo, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{info.resource} "{name}" already exists', _details(info, name))


def conflict(info: KindInfo, name: str, why: str | None = None) -> ApiError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    message = f'Operation cannot be fulfilled on {info.resource} "{name}": {why}'
    return ApiError(409, "Conflict", message, _details(info, name))


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def too_large(limit: int) -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    message = (
        f"the body of the request was in an unknown format ({content_type or 'none'})"
        f" - accepted media types include: {', '.join(accepted)}"
    )
    return ApiError(415, "UnsupportedMediaType", message)


def invalid(info: KindInfo, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 Invalid; ``causes`` are (field, message, reason) like Kubernetes' field.ErrorList."""
    parts = [f"{field}: {message}" if field else message for field, message, _ in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details = StatusDetails(
        name=name or None,
        group=info.group or None,
        kind=info.kind,
        causes=[StatusCause(field=f or None, message=m, reason=r) for f, m, r in causes],
    )
    return ApiError(422, "Invalid", f'{info.kind} "{name}" is invalid: {summary}', details)


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")


def unavailable(message: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)


def from_store_error(exc: StoreError, info: KindInfo, name: str) -> ApiError:
    """Map a store exception to the error Kubernetes would report for the same condition."""
    if isinstance(exc, KeyNotFoundError):
        return not_found(info, name)
    if isinstance(exc, KeyExistsError):
        return already_exists(info, name)
    if isinstance(exc, RevisionConflictError):
        return conflict(info, name)
    if isinstance(exc, CompactedError):
        return expired(f"too old resource version: {exc}")
    if isinstance(exc, StoreUnavailableError):
        return unavailable(f"storage is unavailable: {exc}")
    return internal(str(exc) or type(exc).__name__)


def status_success(details: dict[str, Any] | None = None) -> Status:
    return Status(status="Success", code=200, details=StatusDetails(**details) if details else None)
