"""API discovery: which resources the server serves, cached per client.

The lookups are written as generators that yield the paths they need fetched and receive
the decoded documents (or None for a 404). The sync client drives them with blocking calls,
the async client with awaits, so the lookup logic exists once. Documents are fetched lazily:
resolving ``pods`` costs one request (``/api/v1``); only names not in the core group make
the client read ``/apis`` and the group versions.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from .errors import UnknownResource
from .paths import ResourceRef, group_version_path, split_api_version

# A lookup: yields paths to GET, is sent the JSON document (None when the server says 404).
Flow = Generator[str, "dict[str, Any] | None", Any]


def parse_resource_list(group: str, version: str, doc: dict[str, Any]) -> list[ResourceRef]:
    """An APIResourceList's top-level resources (subresources such as ``pods/status`` skipped)."""
    refs = []
    for res in doc.get("resources") or []:
        name = str(res.get("name") or "")
        if not name or "/" in name:
            continue
        refs.append(
            ResourceRef(
                group=group,
                version=version,
                plural=name,
                namespaced=bool(res.get("namespaced", True)),
                kind=str(res.get("kind") or ""),
                singular=str(res.get("singularName") or ""),
                short_names=tuple(res.get("shortNames") or ()),
                verbs=tuple(res.get("verbs") or ()),
            )
        )
    return refs


class DiscoveryCache:
    """What this client has learned about the server's resources. Not thread-safe by design:
    a racing double fetch only costs a request, the result is the same."""

    def __init__(self) -> None:
        # "v1" / "apps/v1" -> resources; None when the server does not serve that group version.
        self.group_versions: dict[str, list[ResourceRef] | None] = {}
        # (group, preferred version) in server order; None until /apis is read.
        self.groups: list[tuple[str, str]] | None = None

    def invalidate(self) -> None:
        self.group_versions.clear()
        self.groups = None

    # --- flows ------------------------------------------------------------------------

    def load_group_version(self, group: str, version: str) -> Flow:
        gv = f"{group}/{version}" if group else version
        if gv not in self.group_versions:
            doc = yield group_version_path(group, version)
            self.group_versions[gv] = None if doc is None else parse_resource_list(group, version, doc)
        return self.group_versions[gv] or []

    def load_groups(self) -> Flow:
        if self.groups is None:
            doc = yield "/apis"
            groups = []
            for g in (doc or {}).get("groups") or []:
                preferred = (g.get("preferredVersion") or {}).get("version")
                versions = [v.get("version") for v in g.get("versions") or [] if v.get("version")]
                version = preferred or (versions[0] if versions else None)
                if g.get("name") and version:
                    groups.append((str(g["name"]), str(version)))
            self.groups = groups
        return self.groups

    def all_resources(self) -> Flow:
        """Every resource of the core group and of each group's preferred version."""
        refs: list[ResourceRef] = list((yield from self.load_group_version("", "v1")))
        for group, version in (yield from self.load_groups()):
            refs.extend((yield from self.load_group_version(group, version)))
        return refs

    def resolve(self, name: str) -> Flow:
        """A resource by what a user types: plural, singular, kind, short name or 'plural.group'."""
        wanted = name.lower()
        plain, _, group = wanted.partition(".")
        if not group:
            found = _match(plain, (yield from self.load_group_version("", "v1")))
            if found is not None:
                return found
        candidates: list[ResourceRef] = []
        for g, version in (yield from self.load_groups()):
            if not group or g.lower() == group:
                candidates.extend((yield from self.load_group_version(g, version)))
        found = _match(plain, candidates)
        if found is None:
            raise UnknownResource(f'the server doesn\'t have a resource type "{name}"')
        return found

    def for_kind(self, api_version: str, kind: str) -> Flow:
        """The resource serving ``kind`` in ``api_version`` (how manifests are mapped to URLs)."""
        group, version = split_api_version(api_version)
        for ref in (yield from self.load_group_version(group, version)):
            if ref.kind == kind:
                return ref
        raise UnknownResource(f'no matches for kind "{kind}" in version "{api_version}"')


def _match(name: str, refs: list[ResourceRef]) -> ResourceRef | None:
    # Plural first, then singular/kind, then short names, so a short name never shadows a
    # resource's real name (kubectl's precedence).
    for pick in (
        lambda r: r.plural.lower() == name,
        lambda r: name in (r.singular.lower(), r.kind.lower()),
        lambda r: name in (s.lower() for s in r.short_names),
    ):
        for ref in refs:
            if pick(ref):
                return ref
    return None
