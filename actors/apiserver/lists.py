"""Fast paths for LIST, WATCH and write answers: stored JSON goes out as is, resourceVersion spliced in.

The object store keeps every object as compact JSON of its wire form without
``metadata.resourceVersion`` (the resource version is the etcd mod revision). Serving that
JSON directly, instead of decoding into pydantic models and encoding again, is what makes a
10k-object list and watch fan-out cheap; ``Stored`` does the same for the answer to a write.
Selectors are evaluated on a plain dict parsed by pydantic-core's JSON parser, which is much
cheaper than building the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic_core import from_json

from kray.actors.store.objects import ObjectStore
from kray.crds.meta import Resource
from kray.crds.registry import KindInfo
from kray.crds.selectors import FieldSelector, Selector, parse_field_selector, parse_label_selector

from . import errors

_META = b'"metadata":{'


def with_resource_version(value: bytes, revision: int) -> bytes:
    """Stored JSON with ``metadata.resourceVersion`` set.

    The first ``"metadata":{`` is the top-level one: the store writes apiVersion and kind (plain
    strings) before metadata, and a quote inside a JSON string is always escaped.
    """
    i = value.find(_META)
    if i < 0:
        return value
    j = i + len(_META)
    rv = b'"resourceVersion":"%d"' % revision
    if value[j : j + 1] == b"}":
        return value[:j] + rv + value[j:]
    return value[:j] + rv + b"," + value[j:]


class Stored:
    """A write's result as the store holds it. The stored JSON (with the resourceVersion spliced
    in) is the response, so the typed object is only decoded when something asks for it (the
    namespace cache, CRD registration), not for every pod write."""

    __slots__ = ("_object", "info", "revision", "value")

    def __init__(self, info: KindInfo, value: bytes, revision: int, obj: Resource | None = None) -> None:
        self.info = info
        self.value = value
        self.revision = revision
        self._object = obj

    @property
    def object(self) -> Resource:
        if self._object is None:
            self._object = ObjectStore.decode(self.info, self.value, self.revision)
        return self._object

    def wire(self) -> bytes:
        return with_resource_version(self.value, self.revision)


@dataclass(frozen=True)
class Filter:
    """A parsed labelSelector + fieldSelector, evaluated on the wire dict."""

    labels: Selector
    fields: FieldSelector

    def matches(self, data: dict[str, Any]) -> bool:
        meta = data.get("metadata") or {}
        return self.labels.matches(meta.get("labels") or {}) and self.fields.matches(data)

    def matches_json(self, value: bytes) -> bool:
        return self.matches(from_json(value))


def parse_filter(label_selector: str | None, field_selector: str | None) -> Filter | None:
    """None when there is nothing to filter. Raises ValueError on a malformed selector (400)."""
    labels = parse_label_selector(label_selector)
    fields = parse_field_selector(field_selector)
    if labels.empty() and fields.empty():
        return None
    return Filter(labels, fields)


def list_body(info: KindInfo, items: list[bytes], revision: int) -> bytes:
    head = b'{"kind":"%s","apiVersion":"%s","metadata":{"resourceVersion":"%d"},"items":[' % (
        info.list_kind.encode(),
        info.api_version.encode(),
        revision,
    )
    return head + b",".join(items) + b"]}"


def event_line(event_type: str, obj: bytes) -> bytes:
    return b'{"type":"%s","object":%s}\n' % (event_type.encode(), obj)


def query_filter(query: Any, field_name: str | None = None) -> Filter | None:
    """The labelSelector/fieldSelector of a request's query; a malformed one is a 400."""
    field_selector = query.get("fieldSelector")
    if field_name is not None:  # /watch/.../<name> watches one object
        term = f"metadata.name={field_name}"
        field_selector = f"{field_selector},{term}" if field_selector else term
    try:
        return parse_filter(query.get("labelSelector"), field_selector)
    except ValueError as exc:
        raise errors.bad_request(str(exc)) from None
