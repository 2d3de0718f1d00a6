"""Resource URLs: which kind, namespace, name and subresource a path addresses.

``resource_path`` is the API server's fast route: resource requests (nearly all traffic) are
recognized with a few string splits and handed to the endpoint directly, instead of walking
Starlette's route list and middleware stack, which cost more than a GET itself. Anything it
does not claim (discovery, logs, probes, odd paths) still goes through the Starlette routes.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from kray.crds.registry import KindInfo, Registry, UnknownKindError

from . import errors

RESOURCE_METHODS = frozenset({"GET", "PUT", "PATCH", "DELETE", "POST"})


class Target:
    """What a resource URL addresses."""

    __slots__ = ("info", "name", "namespace", "subresource", "watch")

    def __init__(self, info: KindInfo, namespace: str | None, name: str | None, subresource: str, watch: bool) -> None:
        self.info = info
        self.namespace = namespace
        self.name = name
        self.subresource = subresource
        self.watch = watch


def resource_path(path: str) -> tuple[str, str, str] | None:
    """(group, version, rest) of ``/api/{version}/{rest}`` or ``/apis/{group}/{version}/{rest}``.

    None for everything the Starlette routes must see: discovery documents (no rest), and pod
    logs (``.../log``: their own route, matched before the resource routes there too).
    """
    if path.endswith("/log"):
        return None
    if path.startswith("/api/"):
        version, _, rest = path[5:].partition("/")
        group = ""
    elif path.startswith("/apis/"):
        group, _, tail = path[6:].partition("/")
        version, _, rest = tail.partition("/")
        if not group:
            return None
    else:
        return None
    if not version or not rest:
        return None
    return group, version, rest


def resolve(registry: Registry, group: str, version: str, rest: str) -> Target:
    """The Target of a resource path, or 404 the way kube-apiserver words it."""
    seg = [s for s in rest.split("/") if s]
    watch = bool(seg) and seg[0] == "watch"  # the deprecated /watch/ path prefix
    if watch:
        seg = seg[1:]
    namespace: str | None = None
    name: str | None = None
    sub = ""
    n = len(seg)
    if n == 1:
        plural = seg[0]
    elif n == 2:
        plural, name = seg
    elif n == 3 and seg[0] == "namespaces" and seg[2] not in ("status", "finalize"):
        namespace, plural = seg[1], seg[2]
    elif n == 3:
        plural, name, sub = seg
    elif n in (4, 5) and seg[0] == "namespaces":
        namespace, plural, name = seg[1], seg[2], seg[3]
        sub = seg[4] if n == 5 else ""
    else:
        raise errors.resource_not_found()
    try:
        info = registry.by_resource(group, version, plural)
    except UnknownKindError:
        raise errors.resource_not_found() from None
    if namespace is not None and not info.namespaced:
        raise errors.resource_not_found()
    if name is not None and info.namespaced and namespace is None:
        raise errors.resource_not_found()
    if sub and not (
        (sub == "status" and info.has_status_subresource)
        or (sub == "finalize" and info.group == "" and info.kind == "Namespace")
        or (sub == "binding" and info.kind in ("Pod", "PodGroup") and info.namespaced)
        or (sub in ("exec", "portforward", "eviction") and info.group == "" and info.kind == "Pod")
    ):
        raise errors.resource_not_found()
    return Target(info, namespace, name, sub, watch)


def strip_trailing_slash(app: ASGIApp) -> ASGIApp:
    """``/version/`` is ``/version`` (the Python client asks for it), without a redirect."""

    async def normalized(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            scope = dict(scope, path=path.rstrip("/") or "/")
        await app(scope, receive, send)

    return normalized
