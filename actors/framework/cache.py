"""The informer's local cache: objects by key, plus named indexes (client-go's Indexer).

Single-loop: only the informer's task writes it and readers run on the same event loop, so
no locks are needed. Objects handed out are the cached instances; callers that mutate them
must copy first (``obj.model_copy(deep=True)``), as with client-go's cache.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from typing import Any

from kray.crds.meta import Resource
from kray.crds.selectors import parse_label_selector

IndexFunc = Callable[[Resource], Iterable[str]]

NAMESPACE_INDEX = "namespace"
OWNER_UID_INDEX = "owner-uid"
NODE_NAME_INDEX = "spec.nodeName"


def key_of(obj: Resource) -> str:
    """'namespace/name' for namespaced objects, 'name' for cluster-scoped ones."""
    ns = obj.metadata.namespace
    return f"{ns}/{obj.metadata.name}" if ns else obj.metadata.name or ""


def namespace_index(obj: Resource) -> list[str]:
    return [obj.metadata.namespace or ""]


def owner_uid_index(obj: Resource) -> list[str]:
    return [ref.uid for ref in obj.metadata.owner_references or ()]


def node_name_index(obj: Resource) -> list[str]:
    spec: Any = getattr(obj, "spec", None)
    node = getattr(spec, "node_name", None) if spec is not None else None
    return [node] if node else []


DEFAULT_INDEXERS: dict[str, IndexFunc] = {
    NAMESPACE_INDEX: namespace_index,
    OWNER_UID_INDEX: owner_uid_index,
    NODE_NAME_INDEX: node_name_index,
}


class Indexer:
    def __init__(self, indexers: dict[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, Resource] = {}
        self._funcs: dict[str, IndexFunc] = dict(DEFAULT_INDEXERS)
        self._funcs.update(indexers or {})
        self._indexes: dict[str, dict[str, set[str]]] = {name: {} for name in self._funcs}

    # ---- indexes ----

    def add_index(self, name: str, func: IndexFunc) -> None:
        """Add an index; existing objects are indexed at once (so it may come after start)."""
        if name in self._funcs:
            raise ValueError(f"index {name!r} already exists")
        self._funcs[name] = func
        self._indexes[name] = {}
        for key, obj in self._items.items():
            self._index_one(name, key, obj)

    def _index_one(self, name: str, key: str, obj: Resource) -> None:
        index = self._indexes[name]
        for value in self._funcs[name](obj):
            index.setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: Resource) -> None:
        for name, func in self._funcs.items():
            index = self._indexes[name]
            for value in func(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]

    # ---- writes (informer only) ----

    def upsert(self, obj: Resource) -> Resource | None:
        key = key_of(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name in self._funcs:
            self._index_one(name, key, obj)
        return old

    def remove(self, key: str) -> Resource | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    # ---- reads ----

    def get(self, key: str) -> Resource | None:
        return self._items.get(key)

    def get_by_name(self, namespace: str | None, name: str) -> Resource | None:
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def keys(self) -> builtins.list[str]:
        return list(self._items)

    def list(self, namespace: str | None = None, label_selector: str | None = None) -> builtins.list[Resource]:
        if namespace:
            keys = self._indexes[NAMESPACE_INDEX].get(namespace, set())
            items = [self._items[k] for k in sorted(keys)]
        else:
            items = [self._items[k] for k in sorted(self._items)]
        if label_selector:
            selector = parse_label_selector(label_selector)
            items = [o for o in items if selector.matches(o.metadata.labels or {})]
        return items

    def by_index(self, name: str, value: str) -> builtins.list[Resource]:
        try:
            index = self._indexes[name]
        except KeyError:
            raise KeyError(f"no index named {name!r}") from None
        return [self._items[k] for k in sorted(index.get(value, ()))]

    def index_values(self, name: str) -> builtins.list[str]:
        return sorted(self._indexes[name])

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items
