"""The kind registry: one way to define a kind, shared by built-in and custom kinds.

A kind is a ``Resource`` subclass with its API identity in ClassVars. ``@kind`` registers it;
custom resources register the same way at run time (``REGISTRY.register(Model)``), and
``crds.apiextensions`` registers kinds from CustomResourceDefinition manifests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

from .meta import Resource

R = TypeVar("R", bound=type[Resource])


class UnknownKindError(LookupError):
    """No kind is registered under the given apiVersion/kind, plural or short name."""


@dataclass(frozen=True)
class KindInfo:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...]
    model: type[Resource]
    has_status_subresource: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_for_keys(self) -> str:
        """The group segment of etcd keys: 'core' for the legacy (empty) group."""
        return self.group or "core"

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def resource(self) -> str:
        """'plural.group' as kubectl prints it (plain plural for the core group)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


class Registry:
    """Kinds keyed by (apiVersion, kind), by (group, version, plural), and by any name."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._by_gvk: dict[tuple[str, str], KindInfo] = {}
        self._by_gvr: dict[tuple[str, str, str], KindInfo] = {}

    def register(self, model: type[Resource]) -> KindInfo:
        if not model.KIND or not model.PLURAL:
            raise ValueError(f"{model.__name__} must set KIND and PLURAL")
        info = KindInfo(
            group=model.GROUP,
            version=model.VERSION,
            kind=model.KIND,
            plural=model.PLURAL,
            singular=model.SINGULAR or model.KIND.lower(),
            namespaced=model.NAMESPACED,
            short_names=tuple(model.SHORT_NAMES),
            model=model,
            has_status_subresource=model.HAS_STATUS_SUBRESOURCE,
        )
        with self._lock:
            self._by_gvk[(info.api_version, info.kind)] = info
            self._by_gvr[(info.group, info.version, info.plural)] = info
        return info

    def unregister(self, api_version: str, kind: str) -> None:
        with self._lock:
            info = self._by_gvk.pop((api_version, kind), None)
            if info is not None:
                self._by_gvr.pop((info.group, info.version, info.plural), None)

    def get(self, api_version: str, kind: str) -> KindInfo:
        try:
            return self._by_gvk[(api_version, kind)]
        except KeyError:
            raise UnknownKindError(f'no kind "{kind}" is registered for version "{api_version}"') from None

    def for_model(self, model: type[Resource]) -> KindInfo:
        return self.get(model.api_version_str(), model.KIND)

    def by_resource(self, group: str, version: str, plural: str) -> KindInfo:
        try:
            return self._by_gvr[(group, version, plural)]
        except KeyError:
            gv = f"{group}/{version}" if group else version
            raise UnknownKindError(f'the server could not find the requested resource "{plural}" in {gv}') from None

    def resolve(self, name: str) -> KindInfo:
        """Find a kind by what a user types: plural, singular, kind, short name, or 'plural.group'."""
        wanted = name.lower()
        plain, _, group = wanted.partition(".")
        for info in self.all():
            if group and info.group.lower() != group:
                continue
            names = {info.plural, info.singular, info.kind.lower(), *info.short_names}
            if plain in names:
                return info
        raise UnknownKindError(f'the server doesn\'t have a resource type "{name}"')

    def all(self) -> list[KindInfo]:
        with self._lock:
            return list(self._by_gvk.values())

    def __iter__(self) -> Iterator[KindInfo]:
        return iter(self.all())

    def group_versions(self) -> list[tuple[str, str]]:
        return sorted({(i.group, i.version) for i in self.all()})


REGISTRY = Registry()


def kind(model: R) -> R:
    """Class decorator: register a kind with the default registry and return it unchanged."""
    REGISTRY.register(model)
    return model
