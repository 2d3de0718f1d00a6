"""CustomResourceDefinition and the models built from it at run time.

A CRD manifest becomes a ``Resource`` subclass per served version (``model_from_crd``) whose
``spec``/``status``/other top-level fields are checked against the version's openAPIV3Schema
with ``jsonschema``. As in Kubernetes, unknown fields are pruned unless the schema says
``x-kubernetes-preserve-unknown-fields`` and schema ``default``s are applied. Schema errors are
raised as ``FieldValueError`` so ``format_validation_error`` reports ``spec.replicas: ...``.
A custom kind written in Python needs none of this: subclass ``Resource`` and use ``@kind``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import jsonschema
from pydantic import Field, model_validator

from .jsonpath import JsonPathError, compile_path
from .meta import Condition, KrayModel, PrinterColumn, Resource
from .registry import REGISTRY, KindInfo, Registry, kind
from .validation import FieldValueError, invalid, is_dns1123_label, join_path, not_supported

_META_KEYS = ("apiVersion", "kind", "metadata", "api_version")


class CustomResourceDefinitionNames(KrayModel):
    plural: str
    singular: str | None = None
    kind: str
    list_kind: str | None = None
    short_names: list[str] | None = None
    categories: list[str] | None = None


class CustomResourceValidation(KrayModel):
    open_apiv3_schema: dict[str, Any] | None = Field(default=None, alias="openAPIV3Schema")


class CustomResourceSubresourceScale(KrayModel):
    spec_replicas_path: str
    status_replicas_path: str
    label_selector_path: str | None = None


class CustomResourceSubresources(KrayModel):
    status: dict[str, Any] | None = None
    scale: CustomResourceSubresourceScale | None = None


class CustomResourceColumnDefinition(PrinterColumn):
    """additionalPrinterColumns[] (the same shape every kind's PRINTER_COLUMNS has)."""


class CustomResourceDefinitionVersion(KrayModel):
    name: str
    served: bool
    storage: bool
    deprecated: bool | None = None
    deprecation_warning: str | None = None
    # "schema" would shadow a BaseModel attribute, hence the trailing underscore.
    schema_: CustomResourceValidation | None = Field(default=None, alias="schema")
    subresources: CustomResourceSubresources | None = None
    additional_printer_columns: list[CustomResourceColumnDefinition] | None = None

    @property
    def openapi_schema(self) -> dict[str, Any] | None:
        return self.schema_.open_apiv3_schema if self.schema_ else None


_COLUMN_TYPES = ("integer", "number", "string", "boolean", "date")


def _printer_column_errors(version: int, columns: list[CustomResourceColumnDefinition]) -> list[tuple[str, str, str]]:
    errors = []
    for j, col in enumerate(columns):
        where = f"versions[{version}].additionalPrinterColumns[{j}]"
        if col.type not in _COLUMN_TYPES:
            errors.append((f"{where}.type", not_supported(col.type, _COLUMN_TYPES), "FieldValueNotSupported"))
        try:
            compile_path(col.json_path)
        except JsonPathError as exc:
            errors.append((f"{where}.jsonPath", invalid(col.json_path, str(exc)), "FieldValueInvalid"))
    return errors


class CustomResourceDefinitionSpec(KrayModel):
    group: str
    names: CustomResourceDefinitionNames
    scope: Literal["Namespaced", "Cluster"]
    versions: list[CustomResourceDefinitionVersion]
    conversion: dict[str, Any] | None = None
    preserve_unknown_fields: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> CustomResourceDefinitionSpec:
        errors: list[tuple[str, str, str]] = []
        if "." not in self.group:
            errors.append(
                (
                    "group",
                    invalid(self.group, "should be a domain with at least one dot"),
                    "FieldValueInvalid",
                )
            )
        errors += [
            ("names.plural", invalid(self.names.plural, m), "FieldValueInvalid")
            for m in is_dns1123_label(self.names.plural)
        ]
        if not self.versions:
            errors.append(
                (
                    "versions",
                    "Required value: must have exactly one version marked as storage version",
                    "FieldValueRequired",
                )
            )
        elif sum(v.storage for v in self.versions) != 1:
            errors.append(
                (
                    "versions",
                    invalid("array", "must have exactly one version marked as storage version"),
                    "FieldValueInvalid",
                )
            )
        seen: set[str] = set()
        for i, v in enumerate(self.versions):
            if v.name in seen:
                errors.append((f"versions[{i}].name", f'Duplicate value: "{v.name}"', "FieldValueDuplicate"))
            seen.add(v.name)
            if v.openapi_schema is not None:
                try:
                    jsonschema.Draft202012Validator.check_schema(to_json_schema(v.openapi_schema))
                except jsonschema.SchemaError as exc:
                    where = join_path(exc.absolute_path, f"versions[{i}].schema.openAPIV3Schema")
                    errors.append((where, invalid("object", exc.message), "FieldValueInvalid"))
            errors += _printer_column_errors(i, v.additional_printer_columns or [])
        if errors:
            raise FieldValueError(errors)
        # Kubernetes' defaulting of the derived names.
        self.names.singular = self.names.singular or self.names.kind.lower()
        self.names.list_kind = self.names.list_kind or f"{self.names.kind}List"
        return self


class CustomResourceDefinitionStatus(KrayModel):
    conditions: list[Condition] | None = None
    accepted_names: CustomResourceDefinitionNames | None = None
    stored_versions: list[str] | None = None


@kind
class CustomResourceDefinition(Resource):
    GROUP: ClassVar[str] = "apiextensions.k8s.io"
    KIND: ClassVar[str] = "CustomResourceDefinition"
    PLURAL: ClassVar[str] = "customresourcedefinitions"
    SINGULAR: ClassVar[str] = "customresourcedefinition"
    NAMESPACED: ClassVar[bool] = False
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("crd", "crds")
    HAS_STATUS_SUBRESOURCE: ClassVar[bool] = True

    spec: CustomResourceDefinitionSpec
    status: CustomResourceDefinitionStatus | None = None

    @model_validator(mode="after")
    def _name_is_plural_dot_group(self) -> CustomResourceDefinition:
        want = f"{self.spec.names.plural}.{self.spec.group}"
        if self.metadata.name != want:
            msg = invalid(self.metadata.name or "", 'must be spec.names.plural+"."+spec.group')
            raise FieldValueError.one(msg, path="metadata.name")
        return self

    def storage_version(self) -> CustomResourceDefinitionVersion:
        versions = self.spec.versions
        return next((v for v in versions if v.storage), next((v for v in versions if v.served), versions[0]))


# --- OpenAPI v3 (Kubernetes flavour) -> JSON Schema 2020-12 -------------------------------------

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


def _schema_errors(validator: jsonschema.protocols.Validator, body: dict[str, Any]) -> list[tuple[str, str, str]]:
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


class CustomResource(Resource):
    """Base of kinds built from a CRD. Fields beyond spec/status are kept as extras."""

    CRD_NAME: ClassVar[str] = ""
    CRD_WIRE: ClassVar[dict[str, Any]] = {}
    OPENAPI_SCHEMA: ClassVar[dict[str, Any] | None] = None
    PRINTER_COLUMNS: ClassVar[tuple[CustomResourceColumnDefinition, ...]] = ()
    SCHEMA_VALIDATOR: ClassVar[Any] = None

    spec: dict[str, Any] | None = None
    status: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _check_schema(cls, data: Any) -> Any:
        schema = cls.OPENAPI_SCHEMA
        if schema is None or not isinstance(data, Mapping):
            return data
        head = {k: v for k, v in data.items() if k in _META_KEYS}
        body = prune_and_default({k: v for k, v in data.items() if k not in _META_KEYS}, cls._body_schema(schema))
        errors = _schema_errors(cls.SCHEMA_VALIDATOR, body)
        if errors:
            raise FieldValueError(errors)
        return {**head, **body}

    def __reduce__(self) -> tuple[Any, ...]:
        # Built classes are not importable by name, so plain pickle (and Ray's pickling across
        # processes) rebuilds the class from the CRD it came from, then restores the state.
        return (_restore, (self.CRD_WIRE, self.VERSION, self.__getstate__()))

    @staticmethod
    def _body_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
        # apiVersion/kind/metadata are checked by the API server itself, not by the CRD schema.
        props = {k: v for k, v in (schema.get("properties") or {}).items() if k not in _META_KEYS}
        required = [r for r in schema.get("required") or [] if r not in _META_KEYS]
        out = {**schema, "properties": props}
        if required:
            out["required"] = required
        else:
            out.pop("required", None)
        return out


_REBUILT: dict[tuple[str, str], type[CustomResource]] = {}


def model_from_crd(
    crd: CustomResourceDefinition | Mapping[str, Any], version: str | None = None
) -> type[CustomResource]:
    """A Resource subclass for one version of a CRD (default: the storage version)."""
    if not isinstance(crd, CustomResourceDefinition):
        crd = CustomResourceDefinition.model_validate(crd)
    spec = crd.spec
    ver = crd.storage_version() if version is None else next(v for v in spec.versions if v.name == version)
    schema = ver.openapi_schema
    body = CustomResource._body_schema(schema) if schema is not None else None
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__doc__": f"{spec.names.kind} ({spec.group}/{ver.name}), built from CRD {crd.name}.",
        "GROUP": spec.group,
        "VERSION": ver.name,
        "KIND": spec.names.kind,
        "PLURAL": spec.names.plural,
        "SINGULAR": spec.names.singular or spec.names.kind.lower(),
        "NAMESPACED": spec.scope == "Namespaced",
        "SHORT_NAMES": tuple(spec.names.short_names or ()),
        "HAS_STATUS_SUBRESOURCE": bool(ver.subresources and ver.subresources.status is not None),
        "__qualname__": spec.names.kind,
        "CRD_NAME": crd.name,
        "CRD_WIRE": crd.to_dict(),
        "OPENAPI_SCHEMA": schema,
        "PRINTER_COLUMNS": tuple(ver.additional_printer_columns or ()),
        "SCHEMA_VALIDATOR": jsonschema.Draft202012Validator(to_json_schema(body)) if body is not None else None,
    }
    model = type(spec.names.kind, (CustomResource,), namespace)
    # Remembered so unpickling in this process gives back this very class.
    _REBUILT[(json.dumps(namespace["CRD_WIRE"], sort_keys=True), ver.name)] = model
    return model


def _restore(crd_wire: dict[str, Any], version: str, state: Any) -> CustomResource:
    """Unpickle a custom resource: reuse the registered class when it came from the same CRD."""
    spec = crd_wire["spec"]
    api_version = f"{spec['group']}/{version}"
    try:
        model: type[Resource] = REGISTRY.get(api_version, spec["names"]["kind"]).model
    except LookupError:
        model = Resource
    if not (issubclass(model, CustomResource) and crd_wire == model.CRD_WIRE):
        key = (json.dumps(crd_wire, sort_keys=True), version)
        if key not in _REBUILT:
            _REBUILT[key] = model_from_crd(crd_wire, version)
        model = _REBUILT[key]
    obj = model.__new__(model)
    obj.__setstate__(state)
    return obj  # type: ignore[return-value]


def unregister_crd(crd: CustomResourceDefinition | Mapping[str, Any] | str, registry: Registry = REGISTRY) -> None:
    """Remove every kind registered from this CRD (all versions)."""
    if isinstance(crd, str):
        name = crd
    elif isinstance(crd, CustomResourceDefinition):
        name = crd.name
    else:
        name = str((crd.get("metadata") or {}).get("name", ""))
    for info in registry.all():
        if issubclass(info.model, CustomResource) and name == info.model.CRD_NAME:
            registry.unregister(info.api_version, info.kind)


def register_crd(crd: CustomResourceDefinition | Mapping[str, Any], registry: Registry = REGISTRY) -> KindInfo:
    """Register a model for each served version (replacing an earlier registration of the same CRD);
    returns the storage version's KindInfo."""
    if not isinstance(crd, CustomResourceDefinition):
        crd = CustomResourceDefinition.model_validate(crd)
    unregister_crd(crd, registry)
    storage = crd.storage_version().name
    infos = {v.name: registry.register(model_from_crd(crd, v.name)) for v in crd.spec.versions if v.served}
    if storage in infos:
        return infos[storage]
    if infos:
        return next(iter(infos.values()))
    return registry.register(model_from_crd(crd))


__all__ = [
    "CustomResource",
    "CustomResourceColumnDefinition",
    "CustomResourceDefinition",
    "CustomResourceDefinitionNames",
    "CustomResourceDefinitionSpec",
    "CustomResourceDefinitionStatus",
    "CustomResourceDefinitionVersion",
    "CustomResourceSubresources",
    "CustomResourceValidation",
    "model_from_crd",
    "prune_and_default",
    "register_crd",
    "to_json_schema",
    "unregister_crd",
]
