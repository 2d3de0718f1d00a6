"""The typed object store: Resources in, Resources out, on top of any KV.

Keys follow Kubernetes' layout (``/registry/<group or core>/<plural>/<namespace>/<name>``).
Values are compact JSON of the wire form without ``metadata.resourceVersion``: the resource
version *is* the etcd mod revision and is filled in on every read, so it can never disagree
with the store and a stored value never has to be rewritten to stamp it.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from kray.crds.meta import Resource
from kray.crds.registry import REGISTRY, KindInfo, Registry

from .kv import KV, KeyNotFoundError, KeyValue, RevisionConflictError

# Unconditional updates (no resourceVersion given) retry this often on a concurrent write.
_UNCONDITIONAL_RETRIES = 5
_NO_RESOURCE_VERSION = {"metadata": {"resource_version"}}


def to_json_bytes(obj: Resource, exclude: dict[str, Any] | None = None) -> bytes:
    """The wire JSON of ``obj`` as bytes: ``model_dump_json(by_alias=True, exclude_none=True)``
    without model_dump_json's bytes -> str decode (callers want bytes)."""
    return obj.__pydantic_serializer__.to_json(obj, by_alias=True, exclude_none=True, exclude=exclude)


@dataclass(frozen=True)
class WatchEvent:
    type: Literal["ADDED", "MODIFIED", "DELETED"]
    object: Resource  # for DELETED: the last state, resourceVersion = the delete's revision
    revision: int


class ObjectStore:
    """CRUD, list and watch of typed objects. Errors are the KV's (KeyExistsError, ...)."""

    def __init__(self, kv: KV, registry: Registry = REGISTRY) -> None:
        self.kv = kv
        self.registry = registry

    # ---- keys ----

    @staticmethod
    def key(info: KindInfo, namespace: str | None, name: str) -> str:
        if not name:
            raise ValueError(f"{info.kind} needs a name")
        if info.namespaced:
            if not namespace:
                raise ValueError(f"{info.kind} is namespaced; a namespace is required")
            return f"/registry/{info.group_for_keys}/{info.plural}/{namespace}/{name}"
        return f"/registry/{info.group_for_keys}/{info.plural}/{name}"

    @staticmethod
    def prefix(info: KindInfo, namespace: str | None = None) -> str:
        # The trailing "/" keeps namespace "a" from matching namespace "ab".
        if info.namespaced and namespace:
            return f"/registry/{info.group_for_keys}/{info.plural}/{namespace}/"
        return f"/registry/{info.group_for_keys}/{info.plural}/"

    def _key_of(self, info: KindInfo, obj: Resource) -> str:
        return self.key(info, obj.metadata.namespace, obj.metadata.name or "")

    # ---- encoding ----

    @staticmethod
    def encode(obj: Resource) -> bytes:
        # Straight to JSON bytes (pydantic-core writes compact UTF-8): the same bytes as dumping
        # to_dict() with json.dumps, without building the dict or a str first.
        return to_json_bytes(obj, exclude=_NO_RESOURCE_VERSION)

    @staticmethod
    def decode(info: KindInfo, value: bytes, revision: int) -> Resource:
        obj = info.model.model_validate_json(value)
        obj.metadata.resource_version = str(revision)
        return obj

    def _decode_kv(self, info: KindInfo, kv: KeyValue) -> Resource:
        return self.decode(info, kv.value, kv.mod_revision)

    # ---- CRUD ----

    async def create(self, info: KindInfo, obj: Resource, *, lease: int = 0) -> Resource:
        # Decode what was stored so the result is exactly what a later get() returns.
        return self.decode(info, *await self.create_encoded(info, obj, lease=lease))

    async def create_encoded(self, info: KindInfo, obj: Resource, *, lease: int = 0) -> tuple[bytes, int]:
        """create() without the decode: (stored JSON, revision), for callers that want the bytes."""
        value = self.encode(obj)
        return value, await self.kv.create(self._key_of(info, obj), value, lease=lease)

    async def get(self, info: KindInfo, namespace: str | None, name: str) -> Resource:
        return self._decode_kv(info, await self.get_raw(info, namespace, name))

    async def get_raw(self, info: KindInfo, namespace: str | None, name: str) -> KeyValue:
        """The stored KeyValue (value: the wire JSON without resourceVersion; see the module doc)."""
        kv = await self.kv.get(self.key(info, namespace, name))
        if kv is None:
            raise KeyNotFoundError(f'{info.resource} "{name}" not found')
        return kv

    async def list(self, info: KindInfo, namespace: str | None = None) -> tuple[list[Resource], int]:
        kvs, revision = await self.kv.range(self.prefix(info, namespace))
        validate = info.model.model_validate_json
        items: builtins.list[Resource] = []
        append = items.append
        for kv in kvs:  # a tight loop: this is the API server's list latency
            obj = validate(kv.value)
            obj.metadata.resource_version = str(kv.mod_revision)
            append(obj)
        return items, revision

    async def count(self, info: KindInfo, namespace: str | None = None) -> int:
        return await self.kv.count(self.prefix(info, namespace))

    async def update(self, info: KindInfo, obj: Resource) -> Resource:
        """Compare-and-swap on ``obj.metadata.resource_version``.

        Without a resourceVersion the update is unconditional (as Kubernetes allows for PUT):
        it swaps against whatever revision is current, retrying on a concurrent write.
        """
        return self.decode(info, *await self.update_encoded(info, obj))

    async def update_encoded(self, info: KindInfo, obj: Resource) -> tuple[bytes, int]:
        """update() without the decode: (stored JSON, revision)."""
        key = self._key_of(info, obj)
        value = self.encode(obj)
        rv = obj.metadata.resource_version
        if rv:
            return value, await self.kv.update(key, value, expected_mod_revision=_parse_rv(rv))
        for attempt in range(_UNCONDITIONAL_RETRIES):
            current = await self.get_raw(info, obj.metadata.namespace, obj.metadata.name or "")
            try:
                return value, await self.kv.update(key, value, expected_mod_revision=current.mod_revision)
            except RevisionConflictError:
                if attempt == _UNCONDITIONAL_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def delete(
        self,
        info: KindInfo,
        namespace: str | None,
        name: str,
        *,
        expected_resource_version: str | None = None,
    ) -> Resource:
        """Delete; returns the last state with resourceVersion = the delete's revision."""
        expected = _parse_rv(expected_resource_version) if expected_resource_version else 0
        revision, prev = await self.kv.delete(self.key(info, namespace, name), expected_mod_revision=expected)
        return self.decode(info, prev.value, revision)

    async def current_revision(self) -> int:
        return await self.kv.current_revision()

    # ---- watch ----

    async def watch(
        self, info: KindInfo, namespace: str | None, start_revision: int
    ) -> AsyncIterator[builtins.list[WatchEvent]]:
        """Batches of typed events from ``start_revision`` (inclusive). Raises CompactedError."""
        async for batch in self.kv.watch(self.prefix(info, namespace), start_revision=start_revision):
            out: builtins.list[WatchEvent] = []  # `list` is shadowed by the method
            for ev in batch:
                kv = ev.kv
                if ev.type == "PUT":
                    kind: Literal["ADDED", "MODIFIED"] = (
                        "ADDED" if kv.create_revision == kv.mod_revision else "MODIFIED"
                    )
                    out.append(WatchEvent(kind, self._decode_kv(info, kv), kv.mod_revision))
                elif ev.prev_kv is not None:
                    obj = self.decode(info, ev.prev_kv.value, kv.mod_revision)
                    out.append(WatchEvent("DELETED", obj, kv.mod_revision))
                # A DELETE without prev_kv cannot be typed; both KVs always supply it.
            if out:
                yield out


def _parse_rv(rv: str) -> int:
    try:
        value = int(rv)
    except ValueError:
        raise ValueError(f"invalid resourceVersion {rv!r}") from None
    if value <= 0:
        raise ValueError(f"invalid resourceVersion {rv!r}")
    return value
