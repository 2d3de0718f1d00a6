"""Discovery documents (/api, /apis, /api/v1, /apis/<g>/<v>) and /version, built from the registry.

They are rebuilt on each request: the registry is small and changes at run time (CRDs), and
clients cache discovery themselves.
"""

from __future__ import annotations

import platform
from typing import Any

from kray.crds.registry import KindInfo, Registry

KUBE_VERSION = ("1", "31")
_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def version_info() -> dict[str, str]:
    major, minor = KUBE_VERSION
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{major}.{minor}.0-kray",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2024-01-01T00:00:00Z",
        "goVersion": f"python{platform.python_version()}",
        "compiler": platform.python_implementation().lower(),
        "platform": f"{platform.system().lower()}/{platform.machine()}",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group(registry: Registry, group: str) -> dict[str, Any] | None:
    versions = sorted({i.version for i in registry.all() if i.group == group}, reverse=True)
    if not versions:
        return None
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(registry: Registry) -> dict[str, Any]:
    groups = sorted({i.group for i in registry.all() if i.group})
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [g for g in (_group(registry, name) for name in groups) if g is not None],
    }


def api_group(registry: Registry, group: str) -> dict[str, Any] | None:
    doc = _group(registry, group)
    if doc is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **doc}


def _resources(info: KindInfo) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": info.plural,
        "singularName": info.singular,
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": _VERBS,
    }
    if info.short_names:
        main["shortNames"] = list(info.short_names)
    out = [main]
    if info.has_status_subresource:
        out.append(
            {
                "name": f"{info.plural}/status",
                "singularName": "",
                "namespaced": info.namespaced,
                "kind": info.kind,
                "verbs": ["get", "patch", "update"],
            }
        )
    if info.group == "" and info.kind == "Pod":
        # kubectl drain evicts (rather than deletes) only where discovery lists pods/eviction.
        out.append(
            {
                "name": "pods/eviction",
                "singularName": "",
                "namespaced": True,
                "group": "policy",
                "version": "v1",
                "kind": "Eviction",
                "verbs": ["create"],
            }
        )
    if info.group == "" and info.kind == "Namespace":
        out.append(
            {
                "name": "namespaces/finalize",
                "singularName": "",
                "namespaced": False,
                "kind": "Namespace",
                "verbs": ["update"],
            }
        )
    return out


def api_resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    infos = sorted((i for i in registry.all() if i.group == group and i.version == version), key=lambda i: i.plural)
    if not infos:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": [r for info in infos for r in _resources(info)],
    }
