"""ConfigMap and Secret: key/value data mounted into pods or exposed as env vars."""

from __future__ import annotations

import base64
import binascii
from typing import ClassVar

from pydantic import model_validator

from ..meta import Resource
from ..registry import kind
from ..validation import FieldValueError, invalid, is_config_map_key

# ConfigMaps and Secrets are stored whole in one etcd value; Kubernetes caps them at 1 MiB.
MAX_DATA_SIZE = 1024 * 1024


def _key_errors(field: str, data: dict[str, str] | None) -> list[tuple[str, str, str]]:
    return [(field, invalid(k, m), "FieldValueInvalid") for k in data or {} for m in is_config_map_key(k)]


def _too_big(*sizes: int) -> list[tuple[str, str, str]]:
    total = sum(sizes)
    if total > MAX_DATA_SIZE:
        return [("data", f"Too long: must have at most {MAX_DATA_SIZE} bytes", "FieldValueTooLong")]
    return []


def _decode(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


@kind
class ConfigMap(Resource):
    KIND: ClassVar[str] = "ConfigMap"
    PLURAL: ClassVar[str] = "configmaps"
    SINGULAR: ClassVar[str] = "configmap"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("cm",)

    data: dict[str, str] | None = None
    binary_data: dict[str, str] | None = None  # base64 on the wire
    immutable: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> ConfigMap:
        errors = _key_errors("data", self.data) + _key_errors("binaryData", self.binary_data)
        for key, value in (self.binary_data or {}).items():
            if self.data and key in self.data:
                errors.append(("binaryData", invalid(key, "duplicate of key present in data"), "FieldValueInvalid"))
            try:
                _decode(value)
            except (binascii.Error, ValueError):
                errors.append(
                    (
                        f"binaryData[{key}]",
                        invalid("<value omitted>", "illegal base64 data"),
                        "FieldValueInvalid",
                    )
                )
        errors += _too_big(
            *(len(k) + len(v) for k, v in (self.data or {}).items()),
            *(len(v) * 3 // 4 for v in (self.binary_data or {}).values()),
        )
        if errors:
            raise FieldValueError(errors)
        return self


@kind
class Secret(Resource):
    KIND: ClassVar[str] = "Secret"
    PLURAL: ClassVar[str] = "secrets"
    SINGULAR: ClassVar[str] = "secret"

    data: dict[str, str] | None = None  # values are base64 on the wire
    string_data: dict[str, str] | None = None  # write-only convenience, merged into data
    type: str = "Opaque"
    immutable: bool | None = None

    @model_validator(mode="after")
    def _merge_and_check(self) -> Secret:
        errors = _key_errors("data", self.data) + _key_errors("stringData", self.string_data)
        for key, value in (self.data or {}).items():
            try:
                _decode(value)
            except (binascii.Error, ValueError):
                # The value is secret: never echo it back in an error.
                errors.append(
                    (
                        f"data[{key}]",
                        invalid("<secret contents redacted>", "illegal base64 data"),
                        "FieldValueInvalid",
                    )
                )
        if errors:
            raise FieldValueError(errors)
        # Like the API server: stringData wins over data for the same key and is not stored.
        if self.string_data:
            merged = dict(self.data or {})
            merged.update({k: base64.b64encode(v.encode()).decode() for k, v in self.string_data.items()})
            self.data, self.string_data = merged, None
        size_errors = _too_big(*(len(v) * 3 // 4 for v in (self.data or {}).values()))
        if size_errors:
            raise FieldValueError(size_errors)
        return self

    def decoded(self) -> dict[str, bytes]:
        """The secret's values as bytes."""
        return {k: _decode(v) for k, v in (self.data or {}).items()}
