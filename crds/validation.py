"""Validation with Kubernetes' field paths and message wording.

``validate_object`` is the single entry point the API server calls on every create/update:
pydantic checks shape and types (models raise ``FieldValueError`` for Kubernetes-specific rules),
then names, labels and annotations are checked here. Errors come back as ``FieldError``s whose
``field`` is the camelCase JSON path (``spec.containers[0].image``), as kubectl users expect.

The name format checkers (``is_dns1123_label``, ``is_qualified_name``, ...) live in
``name_formats`` and are re-exported here, where models and callers have always imported them.
"""

from __future__ import annotations

import functools
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

import pydantic
from pydantic import BaseModel

from .meta import KrayModel, Resource, Status, StatusCause, StatusDetails
from .name_formats import (  # noqa: F401  (re-exported: callers import these from here)
    CONFIG_KEY_ERR,
    DNS1035_LABEL_ERR,
    DNS1123_LABEL_ERR,
    DNS1123_LABEL_MAX,
    DNS1123_SUBDOMAIN_ERR,
    DNS1123_SUBDOMAIN_MAX,
    LABEL_VALUE_ERR,
    QUALIFIED_NAME_ERR,
    TOTAL_ANNOTATION_SIZE_LIMIT,
    is_config_map_key,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
)
from .registry import KindInfo

# --- field errors -------------------------------------------------------------------------------

Reason = Literal[
    "FieldValueRequired",
    "FieldValueInvalid",
    "FieldValueNotSupported",
    "FieldValueDuplicate",
    "FieldValueForbidden",
    "FieldValueNotFound",
    "FieldValueTooLong",
    "FieldValueTypeInvalid",
]


@dataclass(frozen=True)
class FieldError:
    """One problem at one field: ``str(err) == "spec.containers[0].image: Required value"``."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def _show(value: Any) -> str:
    """A value the way Kubernetes prints it in 'Invalid value: ...' (strings quoted)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    return '"' + type(value).__name__.replace("dict", "object").replace("list", "array") + '"'


def invalid(value: Any, detail: str) -> str:
    return f"Invalid value: {_show(value)}: {detail}"


def not_supported(value: Any, allowed: Iterable[str]) -> str:
    return f"Unsupported value: {_show(value)}: supported values: " + ", ".join(f'"{a}"' for a in allowed)


class FieldValueError(ValueError):
    """A ValueError that models raise to report Kubernetes-style errors from inside pydantic.

    ``errors`` holds ``(sub_path, message, reason)``; ``sub_path`` is relative to where pydantic
    reports the error (the field for field validators, the model for model validators), in wire
    form (``"containers[1].name"``), and may be empty. One exception can carry several errors so a
    model validator (or a CRD schema check) reports everything at once.
    """

    def __init__(self, errors: Sequence[tuple[str, str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m, _ in self.errors))

    @classmethod
    def one(cls, message: str, reason: str = "FieldValueInvalid", path: str = "") -> FieldValueError:
        return cls([(path, message, reason)])


# --- pydantic error -> Kubernetes path ------------------------------------------------------------


@functools.cache
def _fields_of(model: type[BaseModel]) -> dict[str, tuple[str, Any]]:
    """Field lookup by Python name and by alias -> (wire name, annotation)."""
    table: dict[str, tuple[str, Any]] = {}
    for name, info in model.model_fields.items():
        wire = info.alias or name
        table[name] = table[wire] = (wire, info.annotation)
    return table


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional so the walk sees the real container/model type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _tag_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def loc_to_path(model: type[BaseModel] | None, loc: Sequence[str | int]) -> str:
    """Turn a pydantic ``loc`` into a Kubernetes field path, using JSON names and ``[i]``/``[key]``."""
    out: list[str] = []
    tp: Any = model
    for seg in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if origin in (Union, types.UnionType):
            # pydantic names the union member it tried (``int``, ``str``, a class name): skip it.
            tp = next((a for a in typing.get_args(tp) if _tag_name(a) == seg), Any)
            continue
        if isinstance(seg, int):
            out.append(f"[{seg}]")
            args = typing.get_args(tp)
            tp = args[0] if origin in (list, tuple, Sequence, set, frozenset) and args else Any
        elif origin in (dict, Mapping):
            out.append(f"[{seg}]")
            args = typing.get_args(tp)
            tp = args[1] if len(args) == 2 else Any
        elif isinstance(tp, type) and issubclass(tp, BaseModel):
            wire, tp = _fields_of(tp).get(seg, (seg, Any))
            out.append(f".{wire}" if out else wire)
        elif isinstance(seg, str) and ("[" in seg or seg in ("int", "str", "float", "bool")):
            continue  # a union/validator tag below an untyped node
        else:
            out.append(f".{seg}" if out else str(seg))
    return "".join(out)


def _join(base: str, sub: str) -> str:
    if not sub:
        return base
    if not base or sub.startswith("["):
        return base + sub
    return f"{base}.{sub}"


def join_path(parts: Iterable[str | int], base: str = "") -> str:
    """``["spec", "ports", 0, "port"]`` -> ``spec.ports[0].port`` (appended to ``base``)."""
    out = base
    for part in parts:
        out = _join(out, f"[{part}]" if isinstance(part, int) else str(part))
    return out


_TYPE_ERRORS = ("_type", "_parsing", "_from_float", "is_instance_of", "dict_type", "list_type", "model_type")


def format_validation_error(exc: pydantic.ValidationError, model: type[BaseModel] | None = None) -> list[FieldError]:
    """pydantic errors as Kubernetes field errors (``spec.containers[0].image: Required value``).

    ``model`` defaults to the class that raised; it is needed to map Python names to JSON names.
    """
    if model is None:
        model = _model_by_title(exc.title)
    errors: list[FieldError] = []
    for err in exc.errors(include_url=False):
        path = loc_to_path(model, err["loc"])
        etype, value = err["type"], err.get("input")
        ctx = err.get("ctx") or {}
        cause = ctx.get("error")
        if isinstance(cause, FieldValueError):
            errors.extend(FieldError(_join(path, sub), msg, reason) for sub, msg, reason in cause.errors)
        elif etype == "missing":
            errors.append(FieldError(path, "Required value", "FieldValueRequired"))
        elif etype in ("literal_error", "enum"):
            allowed = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
            errors.append(FieldError(path, not_supported(value, allowed), "FieldValueNotSupported"))
        elif etype.endswith(_TYPE_ERRORS):
            detail = err["msg"][:1].lower() + err["msg"][1:]
            prev = errors[-1] if errors else None
            if prev is not None and prev.field == path and prev.reason == "FieldValueTypeInvalid":
                # One union field (int-or-string) fails once per member: report it once.
                errors[-1] = FieldError(path, f"{prev.message} or {detail}", prev.reason)
            else:
                errors.append(FieldError(path, invalid(value, detail), "FieldValueTypeInvalid"))
        else:
            msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
            errors.append(FieldError(path, invalid(value, msg), "FieldValueInvalid"))
    return errors


def _model_by_title(title: str) -> type[BaseModel] | None:
    """The model class a ValidationError came from (its title is the class name)."""
    stack: list[type[BaseModel]] = [KrayModel]
    while stack:
        cls = stack.pop()
        if cls.__name__ == title:
            return cls
        stack.extend(cls.__subclasses__())
    return None


# --- names, labels, whole objects ---------------------------------------------------------------


def _name_checker(model: type[Resource]) -> typing.Callable[[str], list[str]]:
    # Kinds pick their name rule with a NAME_FORMAT ClassVar; most use DNS subdomains as in Kubernetes.
    fmt = getattr(model, "NAME_FORMAT", "subdomain")
    return {"label": is_dns1123_label, "dns1035": is_dns1035_label}.get(fmt, is_dns1123_subdomain)


def validate_name(info_or_model: KindInfo | type[Resource], name: str, prefix: bool = False) -> list[FieldError]:
    """Check ``metadata.name`` for a kind (or ``metadata.generateName`` when ``prefix``)."""
    model = info_or_model.model if isinstance(info_or_model, KindInfo) else info_or_model
    field = "metadata.generateName" if prefix else "metadata.name"
    if prefix and name.endswith("-"):
        name = name[:-1] + "a"  # a generateName may end in '-': a random suffix follows
    return [FieldError(field, invalid(name, m)) for m in _name_checker(model)(name)]


def validate_labels(labels: Mapping[str, Any] | None, field: str = "metadata.labels") -> list[FieldError]:
    errors: list[FieldError] = []
    for key, value in (labels or {}).items():
        errors += [FieldError(field, invalid(key, m)) for m in is_qualified_name(str(key))]
        if not isinstance(value, str):
            continue  # pydantic reports the type error
        errors += [FieldError(f"{field}[{key}]", invalid(value, m)) for m in is_valid_label_value(value)]
    return errors


def validate_annotations(
    annotations: Mapping[str, Any] | None, field: str = "metadata.annotations"
) -> list[FieldError]:
    errors: list[FieldError] = []
    total = 0
    for key, value in (annotations or {}).items():
        errors += [FieldError(field, invalid(key, m)) for m in is_qualified_name(str(key).lower())]
        total += len(key) + len(value if isinstance(value, str) else "")
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errors.append(
            FieldError(field, f"Too long: must have at most {TOTAL_ANNOTATION_SIZE_LIMIT} bytes", "FieldValueTooLong")
        )
    return errors


def validate_metadata(model: type[Resource], meta: Mapping[str, Any]) -> list[FieldError]:
    """Name/generateName, namespace (for namespaced kinds), label and annotation checks."""
    errors: list[FieldError] = []
    name = meta.get("name")
    generate_name = meta.get("generateName", meta.get("generate_name"))
    if name:
        if isinstance(name, str):
            errors += validate_name(model, name)
    elif generate_name and isinstance(generate_name, str):
        errors += validate_name(model, generate_name, prefix=True)
    else:
        errors.append(
            FieldError("metadata.name", "Required value: name or generateName is required", "FieldValueRequired")
        )
    namespace = meta.get("namespace")
    if model.NAMESPACED and isinstance(namespace, str) and namespace:
        errors += [FieldError("metadata.namespace", invalid(namespace, m)) for m in is_dns1123_label(namespace)]
    labels, annotations = meta.get("labels"), meta.get("annotations")
    if isinstance(labels, Mapping):
        errors += validate_labels(labels)
    if isinstance(annotations, Mapping):
        errors += validate_annotations(annotations)
    return errors


class ValidationFailed(ValueError):
    """An object failed validation; ``errors`` lists every problem (HTTP 422 ``Invalid``)."""

    def __init__(self, errors: list[FieldError], kind: str = "", name: str = "") -> None:
        self.errors = errors
        self.kind = kind
        self.name = name
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """Kubernetes' wording: ``Pod "x" is invalid: spec.containers: Required value``."""
        body = str(self.errors[0]) if len(self.errors) == 1 else "[" + ", ".join(map(str, self.errors)) + "]"
        if self.kind:
            return f'{self.kind} "{self.name}" is invalid: {body}'
        return body

    def to_status(self, group: str = "") -> Status:
        """The ``Status`` body the API server returns (422, reason Invalid, one cause per error)."""
        causes = [StatusCause(reason=e.reason, message=e.message, field=e.field) for e in self.errors]
        details = StatusDetails(name=self.name or None, group=group or None, kind=self.kind or None, causes=causes)
        return Status(message=self.message, reason="Invalid", details=details, code=422)


def validate_object(
    model_cls: type[Resource] | KindInfo, data: Mapping[str, Any] | Resource, *, check_metadata: bool = True
) -> Resource:
    """Validate a wire dict as ``model_cls``; raise ``ValidationFailed`` listing every problem.

    Combines pydantic (types, required fields, per-kind rules) with name/label/annotation checks,
    so one request gets all its errors at once, as from a real API server.
    """
    model = model_cls.model if isinstance(model_cls, KindInfo) else model_cls
    if isinstance(data, Resource):
        data = data.to_dict()
    meta = data.get("metadata") if isinstance(data, Mapping) else None
    # Metadata errors first, as Kubernetes lists them.
    errors = validate_metadata(model, meta if isinstance(meta, Mapping) else {}) if check_metadata else []
    obj: Resource | None = None
    try:
        obj = model.model_validate(data)
    except pydantic.ValidationError as exc:
        errors += format_validation_error(exc, model)
    if errors or obj is None:
        name = (meta.get("name") or meta.get("generateName") or "") if isinstance(meta, Mapping) else ""
        raise ValidationFailed(errors, model.KIND, str(name))
    return obj
