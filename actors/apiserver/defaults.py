"""Defaulting and the checks kube-apiserver makes on metadata, on the wire dict.

Working on the dict (before the typed model is built) keeps defaulting independent of each
kind's model and lets the server compare old and new objects cheaply for ``generation``.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kray.crds.registry import KindInfo

# Kubernetes' alphabet for generateName suffixes: no vowels (no words), no confusable 0/1/3.
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_MAX_GENERATE_NAME = 58  # 63 - 5 random characters


def generate_suffix() -> str:
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))


def _initial_status(info: KindInfo, data: dict[str, Any]) -> None:
    """What status a new object starts with (users cannot create objects with a status)."""
    if not info.has_status_subresource or info.group != "":
        if info.has_status_subresource:
            data.pop("status", None)
        return
    if info.kind == "Pod":
        data["status"] = {"phase": "Pending"}
    elif info.kind == "Namespace":
        data["status"] = {"phase": "Active"}
    elif info.kind != "Node":  # the kubelet registers a Node together with its status
        data.pop("status", None)


def default_create(info: KindInfo, data: dict[str, Any], namespace: str | None, clock: Callable[[], datetime]) -> None:
    """Fill server-owned metadata in ``data`` for a create (name rules are validate_object's).

    Raises ValueError (400 BadRequest) when the body's namespace contradicts the URL's.
    """
    meta = data.setdefault("metadata", {})
    if info.namespaced:
        body_ns = meta.get("namespace")
        if body_ns and namespace and body_ns != namespace:
            raise ValueError("the namespace of the provided object does not match the namespace sent on the request")
        meta["namespace"] = namespace or body_ns
    else:
        meta.pop("namespace", None)
    prefix = meta.get("generateName")
    if not meta.get("name") and prefix and isinstance(prefix, str):
        meta["name"] = prefix[:_MAX_GENERATE_NAME] + generate_suffix()
    for server_owned in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
        meta.pop(server_owned, None)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = clock()
    meta["generation"] = 1
    _initial_status(info, data)


def without(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in keys}


def spec_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether anything but metadata and status changed: the rule for bumping generation."""
    return without(old, "metadata", "status") != without(new, "metadata", "status")
