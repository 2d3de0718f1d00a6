"""Typed Python client for the kray API server (sync ``Client`` and asyncio ``AsyncClient``).

Importing this package does not import the ``crds`` models or Ray: typed methods read the
API identity from the model class they are given, and the raw (dict) methods work from a
``ResourceRef`` found through discovery.
"""

from .aio import AsyncClient
from .errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    Gone,
    Invalid,
    KrayClientError,
    MethodNotAllowed,
    NotFound,
    ServerError,
    TooManyRequests,
    Unauthorized,
    UnknownResource,
)
from .ops import ApplyResult, ListResult, Request, WatchEvent
from .paths import ResourceRef
from .sync import Client

__all__ = [
    "AlreadyExists",
    "ApiError",
    "ApplyResult",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "Gone",
    "Invalid",
    "KrayClientError",
    "ListResult",
    "MethodNotAllowed",
    "NotFound",
    "Request",
    "ResourceRef",
    "ServerError",
    "TooManyRequests",
    "Unauthorized",
    "UnknownResource",
    "WatchEvent",
]
