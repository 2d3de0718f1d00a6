"""The API server core: Kubernetes REST paths over an ObjectStore, as a Starlette ASGI app.

``ApiServer(store, registry, token).app`` is all a caller needs: serve it with uvicorn
(``server.py``), wrap it in a Ray actor (``actor.py``), or drive it in tests through
``httpx.ASGITransport``. Nothing here imports Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from kray.actors.store.kv import KeyExistsError, StoreError, StoreUnavailableError
from kray.actors.store.objects import ObjectStore, to_json_bytes
from kray.crds.meta import Resource, utcnow
from kray.crds.registry import REGISTRY, KindInfo, Registry, UnknownKindError

from . import crd, discovery, dryrun, errors, metricsapi, tables
from .admission import SYSTEM_NAMESPACES, AdmissionHook, NamespaceLifecycle
from .auth import BearerAuth
from .binding import Bindings
from .bodies import delete_options, int_param, parse_json, read_body, read_object
from .clusterip import ClusterIPAllocator
from .handlers import Handlers
from .lists import Stored, list_body, query_filter, with_resource_version
from .logs import PodLogs
from .metricsapi import MetricsApi
from .patch import PATCH_TYPES
from .paths import RESOURCE_METHODS, Target, resolve, resource_path, strip_trailing_slash
from .podexec import PodExec
from .priority import BUILTIN_PRIORITY_CLASSES, PriorityAdmission, builtin_class
from .quota import ResourceQuotaAdmission
from .watch import WatchParams, WatchResponse, watch_stream

log = logging.getLogger(__name__)

MAX_OBJECT_BYTES = 3 * 1024 * 1024 // 2  # 1.5 MiB: etcd's default request size limit
DEFAULT_WATCH_TIMEOUT = 1800.0  # kube-apiserver's --min-request-timeout
_ITEM_METHODS = ["GET", "PUT", "PATCH", "DELETE"]


def _object_response(obj: Resource | Stored, code: int = 200) -> Response:
    body = obj.wire() if isinstance(obj, Stored) else to_json_bytes(obj)
    return Response(body, code, media_type=errors.JSON)


def _table_response(info: KindInfo, items: list[dict[str, Any]], resource_version: str = "") -> Response:
    body = json.dumps(tables.table(info, items, resource_version), separators=(",", ":"))
    return Response(body, media_type=errors.JSON)


def _bool(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


class ApiServer:
    """Kubernetes-style REST API over ``store``; ``.app`` is the ASGI application."""

    def __init__(
        self,
        store: ObjectStore,
        registry: Registry = REGISTRY,
        token: str | None = None,
        admission: Sequence[AdmissionHook] = (),
        clock: Callable[[], datetime] = utcnow,
        *,
        builtin_admission: bool = True,
        graceful_pod_deletion: bool = True,
        bootstrap_namespaces: Sequence[str] = SYSTEM_NAMESPACES,
        max_object_bytes: int = MAX_OBJECT_BYTES,
        watch_timeout: float = DEFAULT_WATCH_TIMEOUT,
        bookmark_interval: float = 10.0,
        server_address: str = "",
        service_cidr: str | None = "10.96.0.0/16",
        service_ip_repair_interval: float = 60.0,
    ) -> None:
        self.store = store
        self.registry = registry
        self.token = token
        self.clock = clock
        self.max_object_bytes = max_object_bytes
        self.watch_timeout = watch_timeout
        self.bookmark_interval = bookmark_interval
        self.server_address = server_address
        self.bootstrap_namespaces = tuple(bootstrap_namespaces)
        self.namespace_lifecycle = NamespaceLifecycle(store, lambda: registry.get("v1", "Namespace"))
        self.priority = PriorityAdmission(store, lambda: registry.get("scheduling.k8s.io/v1", "PriorityClass"))
        hooks: list[AdmissionHook] = [self.namespace_lifecycle, self.priority] if builtin_admission else []
        hooks.extend(admission)
        # Services get a ClusterIP from service_cidr (None: no allocation, clusterIP stays as sent).
        self.cluster_ips: ClusterIPAllocator | None = None
        if service_cidr:
            self.cluster_ips = ClusterIPAllocator(store.kv, service_cidr, repair_interval=service_ip_repair_interval)
            hooks.append(self.cluster_ips)
        hooks += [ResourceQuotaAdmission(store, registry, clock)] if builtin_admission else []  # last: it charges
        self.handlers = Handlers(
            store, hooks, self.namespace_lifecycle, clock, graceful_pod_deletion, priority=self.priority
        )
        self.bindings = Bindings(store, clock)  # pods/{name}/binding: the scheduler's write path
        self.logs = PodLogs(self.handlers, registry)  # pods/{name}/log: proxied to the node's kubelet
        self.metrics = MetricsApi(self.handlers, registry)  # metrics.k8s.io: usage from the kubelets
        self.exec = PodExec(self.handlers, registry)  # pods/{name}/exec: a WebSocket, run by the kubelet
        self.stopping = asyncio.Event()
        self._started = False
        routes = [
            Route("/healthz", self._ok),
            Route("/livez", self._ok),
            Route("/readyz", self._readyz),
            Route("/version", self._version),
            Route("/api", self._api_versions),
            Route("/apis", self._api_groups),
            Route("/apis/{group}", self._api_group),
            Route("/api/{version}", self._legacy_resources),
            Route("/apis/{group}/{version}", self._group_resources),
            Route("/api/v1/namespaces/{namespace}/pods/{name}/log", self.logs.handle),
            WebSocketRoute("/api/v1/namespaces/{namespace}/pods/{name}/exec", self.exec.handle),
            WebSocketRoute("/api/v1/namespaces/{namespace}/pods/{name}/portforward", self.exec.handle_portforward),
            *self.metrics.routes(),
            Route("/api/{version}/{rest:path}", self._legacy_endpoint, methods=[*_ITEM_METHODS, "POST"]),
            Route("/apis/{group}/{version}/{rest:path}", self._group_endpoint, methods=[*_ITEM_METHODS, "POST"]),
        ]
        self.starlette = Starlette(routes=routes, lifespan=self._lifespan)
        self.app: ASGIApp = strip_trailing_slash(BearerAuth(self._route, token))

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Resource requests straight to the endpoint; the rest through Starlette's routes."""
        if (
            scope["type"] == "http"
            and scope["method"] in RESOURCE_METHODS
            and not scope.get("root_path")
            and not scope["path"].startswith(metricsapi.PREFIX)
        ):
            parts = resource_path(scope["path"])
            if parts is not None:
                # _endpoint turns every exception into a Status response, so Starlette's
                # error middleware has nothing to add here.
                response = await self._endpoint(Request(scope, receive, send), *parts)
                await response(scope, receive, send)
                return
        await self.starlette(scope, receive, send)

    # ---- lifecycle ----

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        await self.start()
        yield
        self.stop()

    async def start(self) -> None:
        """Create the system namespaces and re-register stored CRDs (idempotent)."""
        if self._started:
            return
        self.stopping = asyncio.Event()  # bound to the serving loop
        ns_info = self.registry.get("v1", "Namespace")
        for name in self.bootstrap_namespaces:
            obj = ns_info.model.model_validate({"metadata": {"name": name}, "status": {"phase": "Active"}})
            obj.metadata.uid = str(uuid.uuid4())
            obj.metadata.creation_timestamp = self.clock()
            obj.metadata.generation = 1
            with contextlib.suppress(KeyExistsError):
                await self.store.create(ns_info, obj)
        await self._bootstrap_priority_classes()
        await self.reload_crds()
        if self.cluster_ips is not None:
            self.cluster_ips.start()
        self._started = True

    async def _bootstrap_priority_classes(self) -> None:
        """kube-apiserver's system-cluster-critical and system-node-critical, stored so that
        `kray get pc` lists them (admission resolves them even if someone deletes them)."""
        try:
            info = self.registry.get("scheduling.k8s.io/v1", "PriorityClass")
        except UnknownKindError:
            return
        for name in BUILTIN_PRIORITY_CLASSES:
            obj = builtin_class(name)
            obj.metadata.uid = str(uuid.uuid4())
            obj.metadata.creation_timestamp = self.clock()
            obj.metadata.generation = 1
            with contextlib.suppress(KeyExistsError):
                await self.store.create(info, obj)

    async def reload_crds(self) -> None:
        try:
            info = self.registry.get(f"{crd.CRD_GROUP}/v1", crd.CRD_KIND)
        except UnknownKindError:
            return
        items, _ = await self.store.list(info)
        for obj in items:
            crd.on_written(info, obj, self.registry)

    def stop(self) -> None:
        """End every open watch (server shutdown); in-flight writes are not interrupted."""
        self.stopping.set()
        self.bindings.stop()
        if self.cluster_ips is not None:
            self.cluster_ips.stop()

    # ---- non-resource endpoints ----

    async def _ok(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def _readyz(self, request: Request) -> Response:
        try:
            await self.store.current_revision()
        except StoreError as exc:
            return PlainTextResponse(f"storage not ready: {exc}", status_code=503)
        return PlainTextResponse("ok")

    async def _version(self, request: Request) -> Response:
        return JSONResponse(discovery.version_info())

    async def _api_versions(self, request: Request) -> Response:
        address = self.server_address or f"{request.url.hostname}:{request.url.port or 80}"
        return JSONResponse(discovery.api_versions(address))

    async def _api_groups(self, request: Request) -> Response:
        groups = discovery.api_group_list(self.registry)
        groups["groups"].append(metricsapi.group_doc())
        return JSONResponse(groups)

    async def _api_group(self, request: Request) -> Response:
        if request.path_params["group"] == metricsapi.GROUP:
            return JSONResponse({"kind": "APIGroup", "apiVersion": "v1", **metricsapi.group_doc()})
        doc = discovery.api_group(self.registry, request.path_params["group"])
        return JSONResponse(doc) if doc else errors.resource_not_found().response()

    async def _legacy_resources(self, request: Request) -> Response:
        doc = discovery.api_resource_list(self.registry, "", request.path_params["version"])
        return JSONResponse(doc) if doc else errors.resource_not_found().response()

    async def _group_resources(self, request: Request) -> Response:
        p = request.path_params
        if (p["group"], p["version"]) == (metricsapi.GROUP, metricsapi.VERSION):
            return JSONResponse(metricsapi.resource_list())
        doc = discovery.api_resource_list(self.registry, p["group"], p["version"])
        return JSONResponse(doc) if doc else errors.resource_not_found().response()

    # ---- resource endpoints ----

    async def _legacy_endpoint(self, request: Request) -> Response | WatchResponse:
        p = request.path_params
        return await self._endpoint(request, "", p["version"], p["rest"])

    async def _group_endpoint(self, request: Request) -> Response | WatchResponse:
        p = request.path_params
        return await self._endpoint(request, p["group"], p["version"], p["rest"])

    async def _endpoint(self, request: Request, group: str, version: str, rest: str) -> Response | WatchResponse:
        try:
            target = resolve(self.registry, group, version, rest)
            return await self._dispatch(request, target)
        except errors.ApiError as exc:
            return exc.response()
        except StoreUnavailableError as exc:
            return errors.unavailable(f"storage is unavailable: {exc}").response()
        except StoreError as exc:
            return errors.internal(str(exc)).response()
        except Exception as exc:
            log.exception("%s %s failed", request.method, request.url.path)
            return errors.internal(f"{type(exc).__name__}: {exc}").response()

    async def _dispatch(self, request: Request, t: Target) -> Response | WatchResponse:
        method = request.method
        h = self.handlers
        # ?dryRun=All on any write (DELETE also takes it in its DeleteOptions body): see dryrun.py.
        dry = method != "GET" and dryrun.from_query(request.query_params)
        if t.name is None:
            if method == "GET":
                if t.watch or _bool(request.query_params.get("watch")):
                    return self._watch(request, t)
                return await self._list(request, t)
            if method == "POST" and (t.namespace is not None or not t.info.namespaced):
                data = await read_object(request, self.max_object_bytes)
                return _object_response(await h.create(t.info, t.namespace, data, dry), 201)
            if method == "DELETE":
                return await self._delete_collection(request, t)
            raise errors.method_not_allowed()
        if t.watch:
            return self._watch(request, t, field_name=t.name)
        if t.subresource in ("exec", "portforward"):  # WebSockets (podexec.py) never reach here
            raise errors.bad_request("Upgrade request required")
        if t.subresource == "binding":
            if method != "POST" or t.namespace is None:
                raise errors.method_not_allowed()
            body = await read_object(request, self.max_object_bytes)
            bind = self.bindings.bind_gang if t.info.kind == "PodGroup" else self.bindings.bind
            status = await bind(t.namespace, t.name, body, dry)
            return errors.status_response(status, 201)
        if t.subresource == "eviction":  # policy/v1 Eviction: a delete that honours PodDisruptionBudgets
            if method != "POST" or t.namespace is None:
                raise errors.method_not_allowed()
            from .eviction import Evictions

            body = await read_object(request, self.max_object_bytes)
            return errors.status_response(await Evictions(h).evict(t.namespace, t.name, body, dry), 201)
        if method == "GET":
            # The stored JSON is the wire form: served as is, like list and watch items.
            value, revision = await h.get_raw(t.info, t.namespace, t.name)
            wire = with_resource_version(value, revision)
            if not t.subresource and tables.wants_table(request.headers.get("accept", "")):
                return _table_response(t.info, [json.loads(wire)])
            return Response(wire, media_type=errors.JSON)
        if method == "PUT":
            data = await read_object(request, self.max_object_bytes)
            return _object_response(await h.update(t.info, t.namespace, t.name, data, t.subresource, dry))
        if method == "PATCH" and t.subresource != "finalize":
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type not in PATCH_TYPES:
                raise errors.unsupported_media_type(content_type, PATCH_TYPES)
            patch = parse_json(await read_body(request, self.max_object_bytes))
            result = await h.patch(t.info, t.namespace, t.name, content_type, patch, t.subresource, dry)
            return _object_response(result)
        if method == "DELETE" and not t.subresource:
            options = await delete_options(request, self.max_object_bytes)
            deleted = await h.delete(t.info, t.namespace, t.name, options, dryrun.from_options(options))
            return _object_response(deleted)
        raise errors.method_not_allowed()

    # ---- list / watch / deletecollection ----

    async def _list(self, request: Request, t: Target) -> Response:
        query = request.query_params
        flt = query_filter(query)
        kvs, revision = await self.store.kv.range(self.store.prefix(t.info, t.namespace))
        if flt is None:
            items = [with_resource_version(kv.value, kv.mod_revision) for kv in kvs]
        else:
            items = [with_resource_version(kv.value, kv.mod_revision) for kv in kvs if flt.matches_json(kv.value)]
        if tables.wants_table(request.headers.get("accept", "")):
            return _table_response(t.info, [json.loads(item) for item in items], str(revision))
        return Response(list_body(t.info, items, revision), media_type=errors.JSON)

    def _watch(self, request: Request, t: Target, field_name: str | None = None) -> WatchResponse:
        query = request.query_params
        flt = query_filter(query, field_name)
        rv = query.get("resourceVersion")
        if rv not in (None, "", "0") and not (rv.isdigit() and int(rv) > 0):
            raise errors.bad_request(f'invalid resource version "{rv}"')
        timeout = float(int_param(query, "timeoutSeconds") or 0) or self.watch_timeout
        send_initial = query.get("sendInitialEvents")
        params = WatchParams(
            resource_version=rv,
            filter=flt,
            timeout=timeout,
            bookmarks=_bool(query.get("allowWatchBookmarks")),
            send_initial_events=None if send_initial is None else _bool(send_initial),
            bookmark_interval=self.bookmark_interval,
        )
        return WatchResponse(watch_stream(self.store, t.info, t.namespace, params, self.stopping))

    async def _delete_collection(self, request: Request, t: Target) -> Response:
        if t.info.namespaced and t.namespace is None:
            raise errors.method_not_allowed()
        flt = query_filter(request.query_params)
        options = await delete_options(request, self.max_object_bytes)
        dry_run = dryrun.from_options(options)
        items, revision = await self.store.list(t.info, t.namespace)
        out: list[bytes] = []
        for obj in items:
            if flt is not None and not flt.matches(obj.to_dict()):
                continue
            with contextlib.suppress(errors.ApiError):  # already gone, or refused: skip it
                done = await self.handlers.delete(t.info, t.namespace, obj.name, options, dry_run)
                out.append(done.model_dump_json(by_alias=True, exclude_none=True).encode())
        return Response(list_body(t.info, out, revision), media_type=errors.JSON)
