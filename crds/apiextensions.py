"""CustomResourceDefinition and the models built from it at run time.

A CRD manifest becomes a ``Resource`` subclass per served version (``model_from_crd``) whose
``spec``/``status``/other top-level fields are checked against the version's openAPIV3Schema
with ``jsonschema``. As in Kubernetes, unknown fields are pruned unless the schema says
``x-kubernetes-preserve-unknown-fields`` and schema ``default``s are applied. Schema errors are
raised as ``FieldValueError`` so ``format_validation_error`` reports ``spec.replicas: ...``.
A custom kind written in Python needs none of this: subclass ``Resource`` and use ``@kind``.

The schema machinery itself (OpenAPI -> JSON Schema, pruning/defaulting, error wording) lives in
``openapi_schema``; ``to_json_schema`` and ``prune_and_default`` are re-exported here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import jsonschema
from pydantic import Field, model_validator

from .jsonpath import JsonPathError, compile_path
from .meta import Condition, KrayModel, PrinterColumn, Resource
from .openapi_schema import prune_and_default, schema_errors, to_json_schema
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
        errors = schema_errors(cls.SCHEMA_VALIDATOR, body)
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
