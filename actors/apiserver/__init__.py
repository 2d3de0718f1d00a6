"""kray's API server: Kubernetes' REST API over the object store (``ApiServer(...).app``)."""

from .admission import AdmissionDenied, AdmissionHook, AdmissionRequest, NamespaceLifecycle
from .app import MAX_OBJECT_BYTES, ApiServer
from .errors import ApiError
from .server import ServerThread, serve, start_in_thread

__all__ = [
    "MAX_OBJECT_BYTES",
    "AdmissionDenied",
    "AdmissionHook",
    "AdmissionRequest",
    "ApiError",
    "ApiServer",
    "NamespaceLifecycle",
    "ServerThread",
    "serve",
    "start_in_thread",
]
