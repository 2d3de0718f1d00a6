"""Sans-I/O core of the clients: build requests, decode answers, merge for apply.

``Client`` and ``AsyncClient`` differ only in how they send a ``Request``; everything about
what to send and how to read the answer lives here, once.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .errors import KrayClientError, error_from_status
from .paths import PATCH_CONTENT_TYPES, ResourceRef

T = TypeVar("T")

JSON = "application/json"


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    body: Any = None
    content_type: str = JSON
    accept: str = JSON


@dataclass
class ListResult(Generic[T]):
    items: list[T]
    resource_version: str
    continue_: str | None = None


@dataclass
class WatchEvent(Generic[T]):
    """One watch event. ``object`` is a model for typed watches, a dict for raw ones."""

    type: str  # ADDED | MODIFIED | DELETED | BOOKMARK
    object: T
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def resource_version(self) -> str:
        return str((self.raw.get("metadata") or {}).get("resourceVersion") or "")


@dataclass
class ApplyResult(Generic[T]):
    object: T
    action: str  # created | configured | unchanged


def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params


def namespace_for(ref: ResourceRef, namespace: str | None, default: str) -> str | None:
    """Cluster-scoped kinds ignore the namespace; namespaced ones fall back to the default."""
    if not ref.namespaced:
        return None
    return namespace or default


TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def as_table(req: Request) -> Request:
    """The same GET, answered as a server-printed meta.k8s.io/v1 Table (kubectl's way)."""
    req.accept = f"{TABLE}, {JSON}"
    return req


def get_request(ref: ResourceRef, name: str, namespace: str | None) -> Request:
    return Request("GET", ref.path(namespace, name))


def list_request(
    ref: ResourceRef,
    namespace: str | None,
    label_selector: str | None = None,
    field_selector: str | None = None,
    limit: int | None = None,
    continue_: str | None = None,
) -> Request:
    params = _selectors(label_selector, field_selector)
    if limit:
        params["limit"] = str(limit)
    if continue_:
        params["continue"] = continue_
    return Request("GET", ref.path(namespace), params)


def create_request(ref: ResourceRef, obj: dict[str, Any], namespace: str | None, dry_run: bool = False) -> Request:
    return Request("POST", ref.path(namespace), {"dryRun": "All"} if dry_run else {}, body=obj)


def update_request(
    ref: ResourceRef, obj: dict[str, Any], namespace: str | None, subresource: str | None = None, dry_run: bool = False
) -> Request:
    name = (obj.get("metadata") or {}).get("name")
    if not name:
        raise KrayClientError("update needs metadata.name")
    return Request("PUT", ref.path(namespace, name, subresource), {"dryRun": "All"} if dry_run else {}, body=obj)


def patch_request(
    ref: ResourceRef, name: str, patch: Any, namespace: str | None, patch_type: str, subresource: str | None
) -> Request:
    try:
        content_type = PATCH_CONTENT_TYPES[patch_type]
    except KeyError:
        allowed = sorted(PATCH_CONTENT_TYPES)
        raise ValueError(f"patch_type must be one of {allowed}, not {patch_type!r}") from None
    return Request("PATCH", ref.path(namespace, name, subresource), body=patch, content_type=content_type)


def delete_request(
    ref: ResourceRef,
    name: str,
    namespace: str | None,
    propagation_policy: str | None = None,
    preconditions: dict[str, str] | None = None,
    grace_period_seconds: int | None = None,
) -> Request:
    options: dict[str, Any] = {}
    if propagation_policy:
        options["propagationPolicy"] = propagation_policy
    if preconditions:
        options["preconditions"] = preconditions
    if grace_period_seconds is not None:
        options["gracePeriodSeconds"] = grace_period_seconds
    body = {"apiVersion": "v1", "kind": "DeleteOptions", **options} if options else None
    return Request("DELETE", ref.path(namespace, name), body=body)


def watch_request(
    ref: ResourceRef,
    namespace: str | None,
    resource_version: str | None = None,
    label_selector: str | None = None,
    field_selector: str | None = None,
    timeout_seconds: int | None = None,
    allow_bookmarks: bool = False,
) -> Request:
    params = {"watch": "true", **_selectors(label_selector, field_selector)}
    if resource_version:
        params["resourceVersion"] = resource_version
    if timeout_seconds is not None:
        params["timeoutSeconds"] = str(timeout_seconds)
    if allow_bookmarks:
        params["allowWatchBookmarks"] = "true"
    return Request("GET", ref.path(namespace), params)


def encode_body(req: Request) -> bytes | None:
    return None if req.body is None else json.dumps(req.body).encode()


def decode_body(content: bytes) -> dict[str, Any]:
    if not content:
        return {}
    data = json.loads(content)
    if not isinstance(data, dict):
        raise KrayClientError(f"expected a JSON object from the server, got {type(data).__name__}")
    return data


def raw_list_result(data: dict[str, Any]) -> ListResult[dict[str, Any]]:
    meta = data.get("metadata") or {}
    return ListResult(
        items=list(data.get("items") or []),
        resource_version=str(meta.get("resourceVersion") or ""),
        continue_=meta.get("continue") or None,
    )


def parse_watch_line(line: str | bytes) -> WatchEvent[dict[str, Any]] | None:
    """Decode one newline-delimited watch event; an ERROR event raises its ApiError (e.g. Gone)."""
    if not line.strip():
        return None
    data = json.loads(line)
    etype = str(data.get("type", ""))
    obj = data.get("object") or {}
    if etype == "ERROR":
        raise error_from_status(int(obj.get("code") or 500), obj)
    return WatchEvent(etype, obj, obj)


# --- models ---------------------------------------------------------------------------


def to_model(model: Any, data: dict[str, Any]) -> Any:
    return model.model_validate(data)


def to_model_lenient(model: Any, data: dict[str, Any]) -> Any:
    """For BOOKMARK events, whose object carries only metadata.resourceVersion."""
    try:
        return model.model_validate(data)
    except ValueError:  # pydantic's ValidationError is a ValueError
        return model.model_construct(**data)


def typed_list(model: Any, raw: ListResult[dict[str, Any]]) -> ListResult[Any]:
    return ListResult([to_model(model, item) for item in raw.items], raw.resource_version, raw.continue_)


def typed_event(model: Any, event: WatchEvent[dict[str, Any]]) -> WatchEvent[Any]:
    convert = to_model_lenient if event.type == "BOOKMARK" else to_model
    return WatchEvent(event.type, convert(model, event.raw), event.raw)


def deleted_object(model: Any, raw: dict[str, Any]) -> Any:
    """DELETE answers with the object (still finalizing, or as it was) or with a Status."""
    if not raw or raw.get("kind") == "Status":
        return None
    return to_model(model, raw)


def obj_namespace(obj: dict[str, Any]) -> str | None:
    return (obj.get("metadata") or {}).get("namespace")


# --- apply -------------------------------------------------------------------------------

# Fields the server owns: a manifest never carries them, so they must not count as changes.
_SERVER_META = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields")


def _same_items(live: list[Any], desired: list[Any]) -> bool:
    """Whether two lists hold the same elements in order: maps matched by ``name`` when they
    have one (containers, ports, volumes), else by position."""
    if len(live) != len(desired) or not all(isinstance(x, dict) for x in live + desired):
        return False
    return all(d.get("name") == lv.get("name") for lv, d in zip(live, desired, strict=True))


def _merge(live: Any, desired: Any) -> Any:
    """Manifest over live: maps merge key by key, lists of the same maps merge element by
    element (so server defaults inside containers survive), anything else is replaced."""
    if isinstance(live, dict) and isinstance(desired, dict):
        out = dict(live)
        for key, value in desired.items():
            out[key] = _merge(live.get(key), value) if key in live else copy.deepcopy(value)
        return out
    if isinstance(live, list) and isinstance(desired, list) and _same_items(live, desired):
        return [_merge(lv, d) for lv, d in zip(live, desired, strict=True)]
    return copy.deepcopy(desired)


def is_subset(desired: Any, live: Any) -> bool:
    """Whether the live object already says everything the manifest says (defaults aside)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and is_subset(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(is_subset(d, lv) for d, lv in zip(desired, live, strict=True))
        )
    return bool(desired == live)


def merge_for_apply(live: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The object to PUT so the live object matches the manifest, or None when it already does.

    Like ``kubectl apply`` the manifest wins field by field and the live object's server-set
    fields (defaults included) survive; "unchanged" means the live object already contains
    everything the manifest says. Unlike it there is no last-applied annotation, so a field deleted from the
    manifest stays on the live object. ``status`` is never applied: it belongs to controllers.
    """
    desired = {k: v for k, v in manifest.items() if k != "status"}
    meta = dict(desired.get("metadata") or {})
    for key in _SERVER_META:
        meta.pop(key, None)
    desired["metadata"] = meta
    if is_subset(desired, live):
        return None
    merged = _merge(live, desired)
    merged["metadata"]["resourceVersion"] = (live.get("metadata") or {}).get("resourceVersion")
    return merged
