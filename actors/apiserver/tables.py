"""Server-side printing: answer ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``.

kubectl (and ``kray get``) ask the API server for a ``meta.k8s.io/v1`` Table so that kinds the
client knows nothing about, custom resources above all, print with the columns their
definition declares (a CRD's ``additionalPrinterColumns``, evaluated here with the JSONPath
subset Kubernetes documents for them). A kind without declared columns gets NAME and AGE, as
Kubernetes gives every CRD by default.
"""

from __future__ import annotations

import json
from typing import Any

from kray.crds.jsonpath import JsonPathError, evaluate
from kray.crds.registry import KindInfo

TABLE_MEDIA = "application/json;as=Table;v=v1;g=meta.k8s.io"
Obj = dict[str, Any]

_NAME_COLUMN: Obj = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace.",
    "priority": 0,
}
_AGE_COLUMN: Obj = {"name": "Age", "type": "date", "format": "", "description": "", "priority": 0}
_AGE_PATH = ".metadata.creationTimestamp"


def wants_table(accept: str) -> bool:
    """True when one of the Accept header's media types asks for a meta.k8s.io/v1 Table."""
    for media in accept.split(","):
        params = dict(p.strip().partition("=")[::2] for p in media.split(";")[1:])
        if params.get("as") == "Table" and params.get("g", "meta.k8s.io") == "meta.k8s.io":
            return params.get("v", "v1") in ("v1", "v1beta1")
    return False


def _cell(values: list[Any], column_type: str) -> Any:
    """A cell as Kubernetes renders it: a scalar of the column's type, several values joined."""
    if not values:
        return None
    if len(values) > 1:
        return ",".join(v if isinstance(v, str) else json.dumps(v) for v in values)
    value = values[0]
    if column_type in ("integer", "number", "boolean") and isinstance(value, (int, float, bool)):
        return value
    return value if isinstance(value, str) else json.dumps(value)


def _columns(info: KindInfo) -> list[tuple[Obj, str]]:
    declared = getattr(info.model, "PRINTER_COLUMNS", ())
    if not declared:
        return [(_AGE_COLUMN, _AGE_PATH)]
    out = []
    for col in declared:
        definition = {
            "name": col.name,
            "type": col.type,
            "format": col.format or "",
            "description": col.description or "",
            "priority": col.priority or 0,
        }
        out.append((definition, col.json_path))
    return out


def table(info: KindInfo, items: list[Obj], resource_version: str = "") -> Obj:
    """The Table for ``items`` (wire-form objects of one kind), with partial metadata per row."""
    columns = _columns(info)
    rows = []
    for obj in items:
        meta = obj.get("metadata") or {}
        cells: list[Any] = [meta.get("name", "")]
        for definition, path in columns:
            try:
                cells.append(_cell(evaluate(path, obj), definition["type"]))
            except JsonPathError:
                cells.append(None)  # a bad column path prints empty, as kubectl does; the rest still print
        partial = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
        rows.append({"cells": cells, "object": partial})
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version} if resource_version else {},
        "columnDefinitions": [_NAME_COLUMN, *(definition for definition, _ in columns)],
        "rows": rows,
    }
