"""Namespace: a cluster-scoped scope for names, deleted via the 'kubernetes' finalizer."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..meta import Condition, KrayModel, Resource
from ..registry import kind


class NamespaceSpec(KrayModel):
    finalizers: list[str] | None = None


class NamespaceStatus(KrayModel):
    phase: Literal["Active", "Terminating"] | None = None
    conditions: list[Condition] | None = None


@kind
class Namespace(Resource):
    KIND: ClassVar[str] = "Namespace"
    PLURAL: ClassVar[str] = "namespaces"
    SINGULAR: ClassVar[str] = "namespace"
    NAMESPACED: ClassVar[bool] = False
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("ns",)
    HAS_STATUS_SUBRESOURCE: ClassVar[bool] = True
    # Namespace names become DNS labels (service.<ns>.svc), so they are RFC 1123 labels.
    NAME_FORMAT: ClassVar[str] = "label"

    spec: NamespaceSpec = Field(default_factory=NamespaceSpec)
    status: NamespaceStatus | None = None
