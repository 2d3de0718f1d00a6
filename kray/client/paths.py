"""Resource identity and URL paths, shared by the sync and async clients.

``ResourceRef`` is what the wire needs to address a kind (group, version, plural, scope). It
comes from a ``crds`` model's ClassVars, a registry ``KindInfo``, or server discovery (for
kinds the client has no model for). Nothing here imports pydantic or the ``crds`` package,
so the CLI can address resources without paying for model imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

PatchType = Literal["merge", "json", "strategic"]

PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


@dataclass(frozen=True)
class ResourceRef:
    """One REST resource: ``/api/v1/...`` for the core group, ``/apis/<group>/<version>/...`` otherwise."""

    group: str
    version: str
    plural: str
    namespaced: bool
    kind: str = ""
    singular: str = ""
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = field(default=(), compare=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """'plural.group' as kubectl prints it (plain plural for the core group)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def kind_name(self) -> str:
        """'pod' / 'deployment.apps': the prefix of ``kubectl -o name`` and of delete messages."""
        base = (self.kind or self.singular or self.plural).lower()
        return f"{base}.{self.group}" if self.group else base

    def names(self) -> set[str]:
        """Every lower-case name a user may type for this resource."""
        names = {self.plural.lower(), *(s.lower() for s in self.short_names)}
        if self.singular:
            names.add(self.singular.lower())
        if self.kind:
            names.add(self.kind.lower())
        return names

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """The URL path; ``namespace=None`` on a namespaced resource addresses all namespaces."""
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        parts = [root]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=""))
            if subresource:
                parts.append(subresource)
        return "/".join(parts)


def ref_of(target: Any) -> ResourceRef:
    """The ResourceRef of a ``crds`` model class, a ``KindInfo``, or a ResourceRef (returned as is).

    Duck-typed on purpose: importing ``crds`` here would make every client import pay for
    building all pydantic models.
    """
    if isinstance(target, ResourceRef):
        return target
    if isinstance(target, type) and hasattr(target, "PLURAL"):  # a Resource subclass
        model: Any = target
        return ResourceRef(
            group=model.GROUP,
            version=model.VERSION,
            plural=model.PLURAL,
            namespaced=model.NAMESPACED,
            kind=model.KIND,
            singular=model.SINGULAR or model.KIND.lower(),
            short_names=tuple(model.SHORT_NAMES),
        )
    if hasattr(target, "plural") and hasattr(target, "model"):  # a registry KindInfo
        return ResourceRef(
            group=target.group,
            version=target.version,
            plural=target.plural,
            namespaced=target.namespaced,
            kind=target.kind,
            singular=target.singular,
            short_names=tuple(target.short_names),
        )
    raise TypeError(f"expected a Resource subclass, KindInfo or ResourceRef, got {target!r}")


def model_of(target: Any) -> Any:
    """The model class behind a Resource subclass or a KindInfo."""
    if isinstance(target, type) and hasattr(target, "PLURAL"):
        return target
    model = getattr(target, "model", None)
    if model is None:
        raise TypeError(f"{target!r} has no model; use the *_raw methods with a ResourceRef")
    return model


def split_api_version(api_version: str) -> tuple[str, str]:
    """'apps/v1' -> ('apps', 'v1'); 'v1' -> ('', 'v1')."""
    group, _, version = api_version.rpartition("/")
    return group, version


def group_version_path(group: str, version: str) -> str:
    return f"/apis/{group}/{version}" if group else f"/api/{version}"
