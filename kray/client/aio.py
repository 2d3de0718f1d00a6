"""The asyncio client (httpx.AsyncClient), method for method the same as ``sync.Client``.

Only the sending differs; request building, decoding, discovery and apply merging come from
the shared ``ops``/``discovery`` modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from . import ops
from .base import ClientBase, R, RefArg, TransportError, watch_timeout
from .discovery import Flow
from .errors import AlreadyExists, Conflict, NotFound, error_from_response
from .ops import ApplyResult, ListResult, Request, WatchEvent
from .paths import PatchType, ResourceRef, model_of, ref_of

if TYPE_CHECKING:
    from kray.config import KrayConfig
    from kray.crds.registry import KindInfo

Raw = dict[str, Any]


class AsyncClient(ClientBase):
    """Async typed access to the kray API server. Use ``async with``, or ``await aclose()``."""

    def __init__(
        self,
        config: KrayConfig | None = None,
        *,
        server: str | None = None,
        token: str | None = None,
        namespace: str = "default",
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(config, server=server, token=token, namespace=namespace, timeout=timeout)
        self._http = httpx.AsyncClient(transport=transport, **self._http_options())

    @classmethod
    def from_config(cls, path: Path | None = None, **kwargs: Any) -> AsyncClient:
        """A client for ``~/.kray/config`` (or ``KRAY_CONFIG``; ``KRAY_SERVER``/``KRAY_TOKEN`` override)."""
        from kray.config import load_config

        return cls(load_config(path), **kwargs)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- transport -----------------------------------------------------------------------

    async def request(self, req: Request) -> Raw:
        """Send one request; the decoded JSON answer, or the matching ApiError raised."""
        try:
            resp = await self._http.request(
                req.method,
                req.path,
                params=req.params,
                content=ops.encode_body(req),
                headers={"Content-Type": req.content_type, "Accept": req.accept},
            )
        except TransportError as exc:
            raise self._connection_failed(exc) from None
        if resp.status_code >= 400:
            raise error_from_response(resp.status_code, resp.content)
        return ops.decode_body(resp.content)

    async def _stream(self, req: Request, timeout_seconds: int | None) -> AsyncIterator[WatchEvent[Raw]]:
        try:
            async with self._http.stream(
                req.method, req.path, params=req.params, timeout=watch_timeout(timeout_seconds)
            ) as resp:
                if resp.status_code >= 400:
                    raise error_from_response(resp.status_code, await resp.aread())
                async for line in resp.aiter_lines():
                    event = ops.parse_watch_line(line)
                    if event is not None:
                        yield event
        except TransportError as exc:
            raise self._connection_failed(exc) from None

    async def _run(self, flow: Flow) -> Any:
        """Drive a discovery flow: fetch each path it asks for, 404 answered as None."""
        try:
            path = next(flow)
            while True:
                try:
                    doc: Raw | None = await self.request(Request("GET", path))
                except NotFound:
                    doc = None
                path = flow.send(doc)
        except StopIteration as stop:
            return stop.value

    # --- discovery -----------------------------------------------------------------------

    async def resolve(self, name: str) -> ResourceRef:
        """The resource for a user-typed name (``po``, ``pods``, ``deployments.apps``, a CRD plural)."""
        return await self._run(self.discovery.resolve(name))  # type: ignore[no-any-return]

    async def resource_for(self, api_version: str, kind: str) -> ResourceRef:
        return await self._run(self.discovery.for_kind(api_version, kind))  # type: ignore[no-any-return]

    async def api_resources(self) -> list[ResourceRef]:
        return await self._run(self.discovery.all_resources())  # type: ignore[no-any-return]

    async def _ref_for_obj(self, obj: Raw, ref: RefArg | None) -> ResourceRef:
        if ref is not None:
            return ref_of(ref)
        return await self.resource_for(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))

    # --- raw (dict) API --------------------------------------------------------------------

    async def get_raw(self, ref: RefArg, name: str, namespace: str | None = None) -> Raw:
        r = ref_of(ref)
        return await self.request(ops.get_request(r, name, ops.namespace_for(r, namespace, self.namespace)))

    async def list_raw(
        self,
        ref: RefArg,
        namespace: str | None = None,
        *,
        all_namespaces: bool = False,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
    ) -> ListResult[Raw]:
        r = ref_of(ref)
        ns = None if all_namespaces else ops.namespace_for(r, namespace, self.namespace)
        req = ops.list_request(r, ns, label_selector, field_selector, limit, continue_)
        return ops.raw_list_result(await self.request(req))

    async def table(
        self,
        ref: RefArg,
        namespace: str | None = None,
        *,
        name: str | None = None,
        all_namespaces: bool = False,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Raw:
        """One object or a list as the server prints it: a meta.k8s.io/v1 Table."""
        r = ref_of(ref)
        if name is not None:
            req = ops.get_request(r, name, ops.namespace_for(r, namespace, self.namespace))
            return await self.request(ops.as_table(req))
        ns = None if all_namespaces else ops.namespace_for(r, namespace, self.namespace)
        return await self.request(ops.as_table(ops.list_request(r, ns, label_selector, field_selector)))

    async def create_raw(
        self, obj: Raw, ref: RefArg | None = None, namespace: str | None = None, *, dry_run: bool = False
    ) -> Raw:
        """POST ``obj``; ``dry_run``: the server admits it and answers what it would store, storing nothing."""
        r = await self._ref_for_obj(obj, ref)
        ns = ops.namespace_for(r, namespace or ops.obj_namespace(obj), self.namespace)
        return await self.request(ops.create_request(r, obj, ns, dry_run))

    async def update_raw(
        self, obj: Raw, ref: RefArg | None = None, subresource: str | None = None, *, dry_run: bool = False
    ) -> Raw:
        r = await self._ref_for_obj(obj, ref)
        ns = ops.namespace_for(r, ops.obj_namespace(obj), self.namespace)
        return await self.request(ops.update_request(r, obj, ns, subresource, dry_run))

    async def patch_raw(
        self,
        ref: RefArg,
        name: str,
        patch: Any,
        namespace: str | None = None,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
    ) -> Raw:
        r = ref_of(ref)
        ns = ops.namespace_for(r, namespace, self.namespace)
        return await self.request(ops.patch_request(r, name, patch, ns, patch_type, subresource))

    async def delete_raw(
        self,
        ref: RefArg,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: str | None = None,
        preconditions: dict[str, str] | None = None,
        grace_period_seconds: int | None = None,
    ) -> Raw:
        r = ref_of(ref)
        ns = ops.namespace_for(r, namespace, self.namespace)
        req = ops.delete_request(r, name, ns, propagation_policy, preconditions, grace_period_seconds)
        return await self.request(req)

    async def evict(
        self,
        name: str,
        namespace: str | None = None,
        *,
        grace_period_seconds: int | None = None,
        preconditions: dict[str, str] | None = None,
        dry_run: bool = False,
    ) -> Raw:
        """POST a policy/v1 Eviction for pod ``name``: the pod is deleted if its PodDisruptionBudget
        allows it (the Success Status is returned), else ``TooManyRequests`` (429) says to retry."""
        ns = namespace or self.namespace
        options: dict[str, Any] = {}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            options["preconditions"] = preconditions
        if dry_run:
            options["dryRun"] = ["All"]
        body: Raw = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": ns}}
        if options:
            body["deleteOptions"] = options
        pods = ResourceRef(group="", version="v1", plural="pods", namespaced=True, kind="Pod")
        return await self.request(Request("POST", pods.path(ns, name, "eviction"), body=body))

    def watch_raw(
        self,
        ref: RefArg,
        namespace: str | None = None,
        *,
        all_namespaces: bool = False,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
        allow_bookmarks: bool = False,
    ) -> AsyncIterator[WatchEvent[Raw]]:
        """Events as they happen; an ERROR event raises its ApiError (``Gone`` when too old)."""
        r = ref_of(ref)
        ns = None if all_namespaces else ops.namespace_for(r, namespace, self.namespace)
        req = ops.watch_request(
            r, ns, resource_version, label_selector, field_selector, timeout_seconds, allow_bookmarks
        )
        return self._stream(req, timeout_seconds)

    async def apply_raw(
        self, obj: Raw, ref: RefArg | None = None, retries: int = 3, *, dry_run: bool = False
    ) -> ApplyResult[Raw]:
        """Create, or merge the manifest over the live object (see ``ops.merge_for_apply``);
        ``dry_run``: the server answers what it would store, storing nothing."""
        r = await self._ref_for_obj(obj, ref)
        name = (obj.get("metadata") or {}).get("name", "")
        ns = ops.namespace_for(r, ops.obj_namespace(obj), self.namespace)
        for attempt in range(retries + 1):
            try:
                return ApplyResult(await self.request(ops.create_request(r, obj, ns, dry_run)), "created")
            except AlreadyExists:
                pass
            live = await self.request(ops.get_request(r, name, ns))
            merged = ops.merge_for_apply(live, obj)
            if merged is None:
                return ApplyResult(live, "unchanged")
            try:
                return ApplyResult(await self.request(ops.update_request(r, merged, ns, dry_run=dry_run)), "configured")
            except (Conflict, NotFound):
                # Someone changed (or deleted) it between our GET and PUT: start over.
                if attempt == retries:
                    raise
        raise AssertionError("unreachable")

    # --- typed (model) API -----------------------------------------------------------------

    async def get(self, kind: type[R] | KindInfo, name: str, namespace: str | None = None) -> R:
        return ops.to_model(model_of(kind), await self.get_raw(kind, name, namespace))  # type: ignore[no-any-return]

    async def list(
        self,
        kind: type[R] | KindInfo,
        namespace: str | None = None,
        *,
        all_namespaces: bool = False,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
    ) -> ListResult[R]:
        raw = await self.list_raw(
            kind,
            namespace,
            all_namespaces=all_namespaces,
            label_selector=label_selector,
            field_selector=field_selector,
            limit=limit,
            continue_=continue_,
        )
        return ops.typed_list(model_of(kind), raw)

    async def create(self, obj: R) -> R:
        return ops.to_model(type(obj), await self.create_raw(obj.to_dict(), type(obj)))  # type: ignore[no-any-return]

    async def update(self, obj: R) -> R:
        """PUT the object; the server rejects it with Conflict if its resourceVersion is stale."""
        return ops.to_model(type(obj), await self.update_raw(obj.to_dict(), type(obj)))  # type: ignore[no-any-return]

    async def update_status(self, obj: R) -> R:
        raw = await self.update_raw(obj.to_dict(), type(obj), subresource="status")
        return ops.to_model(type(obj), raw)  # type: ignore[no-any-return]

    async def apply(self, obj: R) -> ApplyResult[R]:
        result = await self.apply_raw(obj.to_dict(), type(obj))
        return ApplyResult(ops.to_model(type(obj), result.object), result.action)

    async def patch(
        self,
        kind: type[R] | KindInfo,
        name: str,
        patch: Any,
        namespace: str | None = None,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
    ) -> R:
        raw = await self.patch_raw(kind, name, patch, namespace, patch_type, subresource)
        return ops.to_model(model_of(kind), raw)  # type: ignore[no-any-return]

    async def delete(
        self,
        kind: type[R] | KindInfo,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: str | None = None,
        preconditions: dict[str, str] | None = None,
        grace_period_seconds: int | None = None,
    ) -> R | None:
        """Delete; the object when the server returns it (e.g. still finalizing), else None."""
        raw = await self.delete_raw(
            kind,
            name,
            namespace,
            propagation_policy=propagation_policy,
            preconditions=preconditions,
            grace_period_seconds=grace_period_seconds,
        )
        return ops.deleted_object(model_of(kind), raw)

    async def watch(
        self,
        kind: type[R] | KindInfo,
        namespace: str | None = None,
        *,
        all_namespaces: bool = False,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
        allow_bookmarks: bool = False,
    ) -> AsyncIterator[WatchEvent[R]]:
        model = model_of(kind)
        events = self.watch_raw(
            kind,
            namespace,
            all_namespaces=all_namespaces,
            resource_version=resource_version,
            label_selector=label_selector,
            field_selector=field_selector,
            timeout_seconds=timeout_seconds,
            allow_bookmarks=allow_bookmarks,
        )
        async for event in events:
            yield ops.typed_event(model, event)
