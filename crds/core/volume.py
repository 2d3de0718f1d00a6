"""Pod volumes: a name plus exactly one source (emptyDir, hostPath, configMap, secret, ...)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..meta import KrayModel
from ..quantity import Quantity
from ..validation import FieldValueError, invalid, is_dns1123_label


class KeyToPath(KrayModel):
    key: str
    path: str
    mode: int | None = None


class EmptyDirVolumeSource(KrayModel):
    medium: Literal["", "Memory", "HugePages"] | None = None
    size_limit: Quantity | None = None


class HostPathVolumeSource(KrayModel):
    path: str
    type: (
        Literal[
            "",
            "DirectoryOrCreate",
            "Directory",
            "FileOrCreate",
            "File",
            "Socket",
            "CharDevice",
            "BlockDevice",
        ]
        | None
    ) = None


class ConfigMapVolumeSource(KrayModel):
    name: str | None = None
    items: list[KeyToPath] | None = None
    default_mode: int | None = 0o644
    optional: bool | None = None


class SecretVolumeSource(KrayModel):
    secret_name: str | None = None
    items: list[KeyToPath] | None = None
    default_mode: int | None = 0o644
    optional: bool | None = None


class PersistentVolumeClaimVolumeSource(KrayModel):
    claim_name: str
    read_only: bool | None = None


class DownwardAPIVolumeFile(KrayModel):
    path: str
    field_ref: dict[str, Any] | None = None
    resource_field_ref: dict[str, Any] | None = None
    mode: int | None = None


class DownwardAPIVolumeSource(KrayModel):
    items: list[DownwardAPIVolumeFile] | None = None
    default_mode: int | None = None


class ProjectedVolumeSource(KrayModel):
    # Sources are kept as dicts: configMap/secret/downwardAPI/serviceAccountToken projections
    # are passed through to the kubelet, which interprets them.
    sources: list[dict[str, Any]] | None = None
    default_mode: int | None = None


_SOURCES = (
    "empty_dir",
    "host_path",
    "config_map",
    "secret",
    "persistent_volume_claim",
    "projected",
    "downward_api",
)


class Volume(KrayModel):
    name: str
    empty_dir: EmptyDirVolumeSource | None = None
    host_path: HostPathVolumeSource | None = None
    config_map: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = None
    projected: ProjectedVolumeSource | None = None
    downward_api: DownwardAPIVolumeSource | None = Field(default=None, alias="downwardAPI")

    @field_validator("name")
    @classmethod
    def _name_is_label(cls, v: str) -> str:
        errs = is_dns1123_label(v)
        if errs:
            raise FieldValueError([("", invalid(v, e), "FieldValueInvalid") for e in errs])
        return v

    @model_validator(mode="after")
    def _one_source(self) -> Volume:
        # Other Kubernetes sources (nfs, csi, ...) arrive as extra fields; they count too.
        count = sum(getattr(self, s) is not None for s in _SOURCES) + len(self.model_extra or {})
        if count == 0:
            raise FieldValueError.one("Required value: must specify a volume type", "FieldValueRequired")
        if count > 1:
            raise FieldValueError.one("Forbidden: may not specify more than 1 volume type", "FieldValueForbidden")
        return self

    @property
    def source_type(self) -> str:
        """The wire name of the source, e.g. ``"emptyDir"`` (or an extra one like ``"nfs"``)."""
        for s in _SOURCES:
            if getattr(self, s) is not None:
                return type(self).model_fields[s].alias or s
        return next(iter(self.model_extra or {}), "")
