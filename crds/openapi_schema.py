"""CRD openAPIV3Schema handling: translation to JSON Schema, pruning and defaulting, error wording.

Split out of ``apiextensions`` (which re-exports ``to_json_schema`` and ``prune_and_default``) so
the schema machinery that turns a Kubernetes-flavoured OpenAPI v3 schema into jsonschema checks,
and jsonschema's errors back into Kubernetes field errors, lives apart from the CRD kinds.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonschema

from .validation import invalid, join_path, not_supported

_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_ONE = ("additionalProperties", "items", "not", "contains")


def to_json_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Translate the OpenAPI bits jsonschema does not know (``nullable``, boolean exclusive bounds,
    ``x-kubernetes-int-or-string``) and drop other ``x-kubernetes-*`` extensions."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key in _SCHEMA_MAPS and isinstance(value, Mapping):
            out[key] = {k: to_json_schema(v) if isinstance(v, Mapping) else v for k, v in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [to_json_schema(v) if isinstance(v, Mapping) else v for v in value]
        elif key in _SCHEMA_ONE and isinstance(value, Mapping):
            out[key] = to_json_schema(value)
        elif key == "items" and isinstance(value, list):  # OpenAPI tuple form
            out["prefixItems"] = [to_json_schema(v) for v in value]
        else:
            out[key] = value
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        # OpenAPI 3.0: a boolean flag on minimum/maximum; 2020-12 wants the bound itself.
        if isinstance(out.get(bound), bool) and out.pop(bound) and plain in out:
            out[bound] = out.pop(plain)
    if schema.get("x-kubernetes-int-or-string") and "type" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        if "anyOf" in out:
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    return out


def prune_and_default(value: Any, schema: Mapping[str, Any] | None) -> Any:
    """Kubernetes' structural pruning and defaulting: drop fields the schema does not declare
    (unless preserved), drop nulls that are not nullable, fill in ``default``s."""
    if not isinstance(schema, Mapping):
        return value
    if isinstance(value, list):
        items = schema.get("items")
        return [prune_and_default(v, items) for v in value] if isinstance(items, Mapping) else value
    if not isinstance(value, dict):
        return value
    props: Mapping[str, Any] = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True or extra is True
    out: dict[str, Any] = {}
    for key, child in value.items():
        sub = props.get(key) if key in props else (extra if isinstance(extra, Mapping) else None)
        if sub is None and not preserve:
            continue
        if child is None and isinstance(sub, Mapping) and not sub.get("nullable"):
            continue  # a null for a non-nullable field reads as "unset" so its default applies
        out[key] = prune_and_default(child, sub) if sub is not None else child
    for key, sub in props.items():
        if key not in out and isinstance(sub, Mapping) and "default" in sub:
            out[key] = prune_and_default(copy.deepcopy(sub["default"]), sub)
    return out


_TYPE_NAMES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}


def schema_errors(validator: jsonschema.protocols.Validator, body: dict[str, Any]) -> list[tuple[str, str, str]]:
    errors: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    for err in sorted(validator.iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path]):
        path = join_path(err.absolute_path)
        where = path or "<root>"
        kind_, inst = err.validator, err.instance
        if kind_ == "required" and isinstance(inst, Mapping):
            for name in err.validator_value:
                if name not in inst:
                    errors.append((f"{path}.{name}" if path else name, "Required value", "FieldValueRequired"))
            continue
        if kind_ == "type":
            actual = _TYPE_NAMES.get(type(inst), "null")
            want = err.validator_value if isinstance(err.validator_value, str) else "/".join(err.validator_value)
            entry = (
                path,
                invalid(actual, f'{where} in body must be of type {want}: "{actual}"'),
                "FieldValueTypeInvalid",
            )
        elif kind_ == "enum":
            entry = (
                path,
                not_supported(inst, [str(v) for v in err.validator_value]),
                "FieldValueNotSupported",
            )
        else:
            bound = err.validator_value
            # Kubernetes phrases these as "<path> in body should ..."; others use jsonschema's text.
            detail = {
                "minimum": f"{where} in body should be greater than or equal to {bound}",
                "maximum": f"{where} in body should be less than or equal to {bound}",
                "exclusiveMinimum": f"{where} in body should be greater than {bound}",
                "exclusiveMaximum": f"{where} in body should be less than {bound}",
                "minLength": f"{where} in body should be at least {bound} chars long",
                "maxLength": f"{where} in body may not be longer than {bound}",
                "pattern": f"{where} in body should match '{bound}'",
                "minItems": f"{where} in body should have at least {bound} items",
                "maxItems": f"{where} in body should have at most {bound} items",
            }.get(str(kind_), err.message)
            entry = (path, invalid(inst, detail), "FieldValueInvalid")
        if (entry[0], entry[1]) not in seen:
            seen.add((entry[0], entry[1]))
            errors.append(entry)
    return errors
