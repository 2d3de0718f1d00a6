"""CustomResourceDefinitions written through the API become servable kinds.

Creating a ``CustomResourceDefinition`` registers its kind (so a CRD manifest applied with
kubectl, without any Python, makes the new resource usable at once); deleting it
unregisters the kind; on start the server re-registers every CRD found in the store.
``kray.crds.apiextensions`` is imported lazily so the server runs before that module exists.
"""

from __future__ import annotations

import inspect
import logging
from datetime import datetime
from typing import Any

from kray.crds.meta import Resource
from kray.crds.registry import REGISTRY, KindInfo, Registry

log = logging.getLogger(__name__)

CRD_GROUP = "apiextensions.k8s.io"
CRD_KIND = "CustomResourceDefinition"


def is_crd(info: KindInfo) -> bool:
    return info.group == CRD_GROUP and info.kind == CRD_KIND


def _apiextensions() -> Any:
    try:
        from kray.crds import apiextensions
    except ImportError:  # not available yet: CRD objects are stored but not served
        return None
    return apiextensions


def _call(fn: Any, obj: Resource, registry: Registry) -> Any:
    params = inspect.signature(fn).parameters
    if "registry" in params:
        return fn(obj, registry=registry)
    return fn(obj)


def prepare(info: KindInfo, obj: Resource, now: datetime) -> str | None:
    """Before a CRD is stored: check a model can be built for each version, and mark it served.

    Returns an error message (422) when the CRD cannot be served, so a broken CRD is refused
    instead of stored. The conditions are those ``kubectl wait --for=condition=Established``
    waits for; kray serves a CRD's kind as soon as it is written, so they are true at once.
    """
    if not is_crd(info):
        return None
    mod = _apiextensions()
    if mod is None:
        return None
    try:
        for version in obj.spec.versions:  # type: ignore[attr-defined]
            mod.model_from_crd(obj, version.name)
    except Exception as exc:
        return f"cannot serve this CustomResourceDefinition: {exc}"
    data = obj.to_dict()
    spec = data.get("spec") or {}
    conditions = [
        {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": now}
        for t, r, m in (
            ("NamesAccepted", "NoConflicts", "no conflicts found"),
            ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        )
    ]
    status = {
        "conditions": conditions,
        "acceptedNames": spec.get("names") or {},
        "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
    }
    obj.status = type(obj).model_validate({**data, "status": status}).status  # type: ignore[attr-defined]
    return None


def register(obj: Resource, registry: Registry = REGISTRY) -> None:
    mod = _apiextensions()
    if mod is None or not hasattr(mod, "register_crd"):
        return
    try:
        _call(mod.register_crd, obj, registry)
    except Exception:  # a CRD the model accepted but cannot serve must not fail the write
        log.exception("cannot register CustomResourceDefinition %s", obj.name)


def unregister(obj: Resource, registry: Registry = REGISTRY) -> None:
    mod = _apiextensions()
    if mod is not None and hasattr(mod, "unregister_crd"):
        try:
            _call(mod.unregister_crd, obj, registry)
            return
        except Exception:
            log.exception("cannot unregister CustomResourceDefinition %s", obj.name)
    data = obj.to_dict()
    spec = data.get("spec") or {}
    group, kind = spec.get("group"), (spec.get("names") or {}).get("kind")
    for version in spec.get("versions") or []:
        if group and kind and isinstance(version, dict) and version.get("name"):
            registry.unregister(f"{group}/{version['name']}", kind)


def on_written(info: KindInfo, obj: Resource, registry: Registry = REGISTRY) -> None:
    if is_crd(info) and obj.metadata.deletion_timestamp is None:
        register(obj, registry)


def on_deleted(info: KindInfo, obj: Resource, registry: Registry = REGISTRY) -> None:
    if is_crd(info):
        unregister(obj, registry)
