"""Admission: the Python plug-in point between validation and the store, plus built-ins.

A hook sees every create, update and delete after defaulting and validation and before the
write. It may mutate ``request.object`` (mutating admission) or raise ``AdmissionDenied``
(validating admission). Hooks run in order; the first denial wins and nothing is written.
A hook with side effects (a charge, an allocation) must make none when ``request.dry_run``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from kray.actors.store.kv import KeyNotFoundError
from kray.crds.meta import Resource
from kray.crds.registry import KindInfo

if TYPE_CHECKING:
    from kray.actors.store.objects import ObjectStore

Operation = Literal["CREATE", "UPDATE", "DELETE"]

# Namespaces kube-apiserver refuses to delete; it also creates them on start.
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass
class AdmissionRequest:
    operation: Operation
    kind: KindInfo
    namespace: str | None
    name: str
    object: Resource | None  # the new object (None for DELETE); hooks may mutate or replace it
    old_object: Resource | None = None  # the stored object (UPDATE, DELETE)
    subresource: str = ""  # "status" for /status writes
    user: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    # ?dryRun=All: decide exactly as for the real request, but commit nothing (no charge, no
    # allocation, no cache update): the write that follows admission will not happen.
    dry_run: bool = False


class AdmissionDenied(Exception):
    """Raised by a hook to refuse a request: 403 Forbidden, or 422 Invalid when ``invalid``."""

    def __init__(self, message: str, *, invalid: bool = False, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or (422 if invalid else 403)


@runtime_checkable
class AdmissionHook(Protocol):
    async def admit(self, request: AdmissionRequest) -> None: ...


class NamespaceNotFound(Exception):
    """A namespaced create named a namespace that does not exist (404, not 403)."""

    def __init__(self, namespace: str) -> None:
        super().__init__(namespace)
        self.namespace = namespace


class NamespaceLifecycle:
    """Kubernetes' NamespaceLifecycle plug-in.

    Creates in a namespace need the namespace to exist and not be Terminating; the system
    namespaces cannot be deleted. Namespace phases are cached (like the informer the real
    plug-in uses) so a create costs no extra store read; the cache is written through by the
    server's own namespace writes and falls back to a live read on a miss or when stale.
    """

    def __init__(self, store: ObjectStore, namespace_info: Callable[[], KindInfo], ttl: float = 5.0) -> None:
        self._store = store
        self._namespace_info = namespace_info
        self._ttl = ttl
        self._phases: dict[str, tuple[str, float]] = {}

    def observe(self, name: str, phase: str | None) -> None:
        """Record a namespace's phase (None: deleted) after the server wrote it."""
        if phase is None:
            self._phases.pop(name, None)
        else:
            self._phases[name] = (phase, time.monotonic())

    async def _phase(self, name: str) -> str | None:
        cached = self._phases.get(name)
        if cached is not None and time.monotonic() - cached[1] < self._ttl:
            return cached[0]
        try:
            ns = await self._store.get(self._namespace_info(), None, name)
        except KeyNotFoundError:
            self._phases.pop(name, None)
            return None
        status = getattr(ns, "status", None)
        phase = getattr(status, "phase", None) or "Active"
        if ns.metadata.deletion_timestamp is not None:
            phase = "Terminating"
        self.observe(name, phase)
        return phase

    async def admit(self, request: AdmissionRequest) -> None:
        info = request.kind
        if request.operation == "DELETE" and info.group == "" and info.kind == "Namespace":
            if request.name in PROTECTED_NAMESPACES:
                raise AdmissionDenied(f'namespaces "{request.name}" is forbidden: this namespace may not be deleted')
            return
        if request.operation != "CREATE" or not info.namespaced or not request.namespace:
            return
        phase = await self._phase(request.namespace)
        if phase is None:
            raise NamespaceNotFound(request.namespace)
        if phase == "Terminating":
            raise AdmissionDenied(
                f'{info.resource} "{request.name}" is forbidden: unable to create new content in namespace '
                f"{request.namespace} because it is being terminated"
            )
