"""CRUD semantics of kube-apiserver's generic registry, independent of HTTP.

Every write follows the same order: default, merge with the stored object, validate, admit,
then exactly one compare-and-swap in the store. Any failure before the CAS leaves the store
untouched; a lost CAS race is retried from a fresh read unless the client asked for a
specific resourceVersion (then it is a 409 Conflict, as in Kubernetes).

The graceful-deletion rules (finalizers, pod grace periods, marking with deletionTimestamp)
live in ``deletion``; ``delete`` here runs them inside its CAS loop.

``dry_run`` (``?dryRun=All``, see ``dryrun``): every step up to the write runs (admission told
it is a dry run), then the object that would have been stored or deleted is returned unwritten.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pydantic_core import from_json

from kray.actors.store.kv import KeyNotFoundError, RevisionConflictError, StoreError
from kray.actors.store.objects import ObjectStore
from kray.crds.meta import Resource
from kray.crds.registry import KindInfo
from kray.crds.scheduling import PriorityClass
from kray.crds.validation import ValidationFailed, validate_object

from . import crd, errors
from .admission import AdmissionDenied, AdmissionHook, AdmissionRequest, NamespaceLifecycle, NamespaceNotFound
from .defaults import default_create, spec_changed
from .deletion import deletion_due, is_core_kind, mark_deleting, pending_finalizers, pod_grace_seconds
from .lists import Stored
from .patch import PatchError, apply_patch
from .priority import PriorityAdmission

_CAS_RETRIES = 8
# Returns the object to write. It must not modify its argument in place (the read object is
# shared with it, not deep-copied): the patch functions are pure and an update ignores it.
Transform = Callable[[dict[str, Any]], dict[str, Any]]


def _is_priority_class(info: KindInfo) -> bool:
    return info.group == PriorityClass.GROUP and info.kind == PriorityClass.KIND


def check_type_meta(info: KindInfo, data: dict[str, Any]) -> None:
    """The body's apiVersion/kind must name the URL's resource; missing ones are defaulted."""
    api_version, kind = data.get("apiVersion"), data.get("kind")
    if api_version and api_version != info.api_version:
        raise errors.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version ({info.api_version})"
        )
    if kind and kind != info.kind:
        raise errors.bad_request(f"the kind in the data ({kind}) does not match the expected kind ({info.kind})")
    data["apiVersion"], data["kind"] = info.api_version, info.kind


class Handlers:
    def __init__(
        self,
        store: ObjectStore,
        admission: Sequence[AdmissionHook],
        namespaces: NamespaceLifecycle,
        clock: Callable[[], datetime],
        graceful_pod_deletion: bool = True,
        priority: PriorityAdmission | None = None,
    ) -> None:
        self.store = store
        self.priority = priority
        self.admission = list(admission)
        self.namespaces = namespaces
        self.clock = clock
        self.graceful_pod_deletion = graceful_pod_deletion

    # ---- helpers ----

    def _validate(self, info: KindInfo, data: dict[str, Any]) -> Resource:
        try:
            return validate_object(info.model, data)
        except ValidationFailed as exc:
            name = str((data.get("metadata") or {}).get("name") or "")
            raise errors.invalid(info, name, [(e.field, e.message, e.reason) for e in exc.errors]) from None

    async def _admit(self, request: AdmissionRequest) -> Resource | None:
        try:
            for hook in self.admission:
                await hook.admit(request)
        except NamespaceNotFound as exc:
            raise errors.namespace_not_found(exc.namespace) from None
        except AdmissionDenied as exc:
            if exc.code == 422:
                raise errors.invalid(request.kind, request.name, [("", exc.message, "FieldValueInvalid")]) from None
            reason = {400: "BadRequest", 404: "NotFound", 409: "Conflict"}.get(exc.code, "Forbidden")
            raise errors.ApiError(exc.code, reason, exc.message) from None
        return request.object

    async def get(self, info: KindInfo, namespace: str | None, name: str) -> Resource:
        return self.store.decode(info, *await self.get_raw(info, namespace, name))

    async def get_raw(self, info: KindInfo, namespace: str | None, name: str) -> tuple[bytes, int]:
        """(stored JSON without resourceVersion, resourceVersion): GET serves it without a decode."""
        try:
            kv = await self.store.get_raw(info, namespace, name)
        except StoreError as exc:
            raise errors.from_store_error(exc, info, name) from None
        return kv.value, kv.mod_revision

    def _observe(self, info: KindInfo, obj: Resource | None, name: str = "") -> None:
        """Keep the namespace cache and the CRD registry in step with what was written."""
        if is_core_kind(info, "Namespace"):
            if obj is None:
                self.namespaces.observe(name, None)
            else:
                terminating = obj.metadata.deletion_timestamp is not None
                self.namespaces.observe(obj.name, "Terminating" if terminating else "Active")
        elif self.priority is not None and _is_priority_class(info):
            self.priority.observe(name or (obj.name if obj else ""), obj if isinstance(obj, PriorityClass) else None)

    def _written(self, info: KindInfo, stored: Stored) -> None:
        # Only namespaces and CRDs need the typed object here; a pod write never decodes it.
        if is_core_kind(info, "Namespace") or _is_priority_class(info) or crd.is_crd(info):
            self._observe(info, stored.object)
            crd.on_written(info, stored.object, self.store.registry)

    # ---- create ----

    async def create(
        self, info: KindInfo, namespace: str | None, data: dict[str, Any], dry_run: bool = False
    ) -> Stored | Resource:
        check_type_meta(info, data)
        try:
            default_create(info, data, namespace, self.clock)
        except ValueError as exc:
            raise errors.bad_request(str(exc)) from None
        obj = self._validate(info, data)
        problem = crd.prepare(info, obj, self.clock())
        if problem:
            raise errors.invalid(info, obj.name, [("spec", problem, "FieldValueInvalid")])
        request = AdmissionRequest("CREATE", info, obj.metadata.namespace, obj.name, obj, dry_run=dry_run)
        obj = await self._admit(request) or obj
        if dry_run:  # the object unstored: no resourceVersion, as Kubernetes answers a dry-run create
            if await self.store.kv.get(self.store.key(info, obj.metadata.namespace, obj.name)) is not None:
                raise errors.already_exists(info, obj.name)
            return obj
        try:
            created = Stored(info, *await self.store.create_encoded(info, obj))
        except StoreError as exc:
            raise errors.from_store_error(exc, info, obj.name) from None
        self._written(info, created)
        return created

    # ---- update / patch ----

    def _merge(
        self, info: KindInfo, old: dict[str, Any], new: dict[str, Any], subresource: str, name: str
    ) -> dict[str, Any]:
        """The object to store: ``new`` limited to what the (sub)resource may change."""
        old_meta = old["metadata"]
        if subresource == "status":
            result = dict(old)
            if new.get("status") is None:
                result.pop("status", None)
            else:
                result["status"] = new["status"]
            return result
        if subresource == "finalize":
            result = copy.deepcopy(old)
            result.setdefault("spec", {})["finalizers"] = (new.get("spec") or {}).get("finalizers") or []
            return result
        result = dict(new)
        if info.has_status_subresource:
            if old.get("status") is None:
                result.pop("status", None)
            else:
                result["status"] = old["status"]
        meta = dict(new.get("metadata") or {})
        if meta.get("uid") and meta["uid"] != old_meta.get("uid"):
            value = meta["uid"]
            raise errors.invalid(
                info,
                name,
                [("metadata.uid", f'Invalid value: "{value}": field is immutable', "FieldValueInvalid")],
            )
        # Server-owned metadata cannot be changed by an update; the client's copy is ignored.
        for key in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "generation"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        if "deletionGracePeriodSeconds" in old_meta:
            meta["deletionGracePeriodSeconds"] = old_meta["deletionGracePeriodSeconds"]
        meta["resourceVersion"] = old_meta.get("resourceVersion")
        result["metadata"] = meta
        if spec_changed(old, result):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                why = "Forbidden: no new finalizers can be added if the object is being deleted"
                raise errors.invalid(
                    info,
                    name,
                    [
                        (
                            "metadata.finalizers",
                            f"{why}, found new finalizers {sorted(added)}",
                            "FieldValueForbidden",
                        )
                    ],
                )
        return result

    async def guaranteed_update(
        self,
        info: KindInfo,
        namespace: str | None,
        name: str,
        transform: Transform,
        subresource: str = "",
        dry_run: bool = False,
    ) -> Stored | Resource:
        """Read, transform, write with CAS; retry on a lost race unless a resourceVersion was given."""
        for _ in range(_CAS_RETRIES):
            value, revision = await self.get_raw(info, namespace, name)
            old = self.store.decode(info, value, revision)
            # The stored JSON is the wire form the store encoded (old.to_dict() without the
            # resourceVersion), so parsing it is the same dict for a fraction of a model dump.
            old_data = from_json(value)
            old_meta = old_data.setdefault("metadata", {})
            # The transform sees the object without its resourceVersion, so one in the result is
            # the caller's precondition, never the one carried over from the read: without one,
            # a lost race is retried here instead of coming back as 409. A shallow copy is
            # enough: transforms never modify their argument (see Transform).
            current = {**old_data, "metadata": dict(old_meta)}
            old_meta["resourceVersion"] = old.metadata.resource_version
            new_data = transform(current)
            wanted_rv = (new_data.get("metadata") or {}).pop("resourceVersion", None)
            if wanted_rv and wanted_rv != old.metadata.resource_version:
                raise errors.conflict(info, name)
            merged = self._merge(info, old_data, new_data, subresource, name)
            merged.setdefault("metadata", {})["resourceVersion"] = old.metadata.resource_version
            if merged == old_data:  # nothing changed: no write, no new resourceVersion (as Kubernetes)
                return Stored(info, value, revision, old)
            obj = self._validate(info, merged)
            request = AdmissionRequest("UPDATE", info, namespace, name, obj, old, subresource, dry_run=dry_run)
            obj = await self._admit(request) or obj
            obj.metadata.resource_version = old.metadata.resource_version
            if dry_run:  # what would be stored, at the current resourceVersion (no new revision)
                return obj
            try:
                updated = Stored(info, *await self.store.update_encoded(info, obj))
            except RevisionConflictError:
                if wanted_rv:
                    raise errors.conflict(info, name) from None
                continue
            except StoreError as exc:
                raise errors.from_store_error(exc, info, name) from None
            if deletion_due(info, obj, merged):  # obj's metadata is what was stored
                return await self._delete_now(info, namespace, name, str(updated.revision))
            self._written(info, updated)
            return updated
        raise errors.conflict(info, name)

    async def update(
        self,
        info: KindInfo,
        namespace: str | None,
        name: str,
        data: dict[str, Any],
        subresource: str = "",
        dry_run: bool = False,
    ) -> Stored | Resource:
        check_type_meta(info, data)
        meta = data.get("metadata") or {}
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        if info.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        return await self.guaranteed_update(info, namespace, name, lambda _old: data, subresource, dry_run)

    async def patch(
        self,
        info: KindInfo,
        namespace: str | None,
        name: str,
        content_type: str,
        patch: Any,
        subresource: str = "",
        dry_run: bool = False,
    ) -> Stored | Resource:
        def transform(old: dict[str, Any]) -> dict[str, Any]:
            try:
                result = apply_patch(content_type, old, patch)
            except PatchError as exc:
                if exc.malformed:
                    raise errors.bad_request(str(exc)) from None
                raise errors.ApiError(422, "Invalid", str(exc)) from None
            if not isinstance(result, dict):
                raise errors.bad_request("the patched object is not a JSON object")
            check_type_meta(info, result)
            meta = result.get("metadata")
            if not isinstance(meta, dict) or meta.get("name") != name:
                raise errors.bad_request("a patch may not change metadata.name")
            return result

        return await self.guaranteed_update(info, namespace, name, transform, subresource, dry_run)

    # ---- delete ----

    async def _delete_now(self, info: KindInfo, namespace: str | None, name: str, expected_rv: str | None) -> Resource:
        try:
            deleted = await self.store.delete(info, namespace, name, expected_resource_version=expected_rv)
        except StoreError as exc:
            raise errors.from_store_error(exc, info, name) from None
        self._observe(info, None, name)
        crd.on_deleted(info, deleted, self.store.registry)
        return deleted

    def _grace_seconds(self, info: KindInfo, data: dict[str, Any], requested: int | None) -> int:
        """The grace period a DELETE gets (eviction uses it too); see ``deletion.pod_grace_seconds``."""
        return pod_grace_seconds(info, data, requested, self.graceful_pod_deletion)

    async def delete(
        self, info: KindInfo, namespace: str | None, name: str, options: dict[str, Any], dry_run: bool = False
    ) -> Resource:
        """Delete, or mark for deletion (finalizers, graceful pods, namespaces); returns the object
        (a dry run: as it would be after the call, left in the store unchanged)."""
        pre = options.get("preconditions") or {}
        grace_opt = options.get("gracePeriodSeconds")
        policy = options.get("propagationPolicy")
        for _ in range(_CAS_RETRIES):
            current = await self.get(info, namespace, name)
            meta = current.metadata
            if pre.get("uid") and pre["uid"] != meta.uid:
                why = f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta.uid}"
                raise errors.conflict(info, name, why)
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta.resource_version:
                why = (
                    f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                    f"ResourceVersion in object meta: {meta.resource_version}"
                )
                raise errors.conflict(info, name, why)
            request = AdmissionRequest("DELETE", info, namespace, name, None, current, options=options, dry_run=dry_run)
            await self._admit(request)
            data = current.to_dict()
            finalizers = list(meta.finalizers or [])
            # Like Kubernetes, non-background propagation is carried out by the garbage
            # collector, which the object waits for through these finalizers.
            extra = {"Foreground": "foregroundDeletion", "Orphan": "orphan"}.get(str(policy))
            if extra and extra not in finalizers and meta.deletion_timestamp is None:
                finalizers.append(extra)
            grace = self._grace_seconds(info, data, grace_opt)
            data.setdefault("metadata", {})["finalizers"] = finalizers or None
            if not pending_finalizers(info, data) and grace == 0:
                if dry_run:
                    return current
                try:
                    return await self._delete_now(info, namespace, name, meta.resource_version)
                except errors.ApiError as exc:
                    if exc.reason == "Conflict" and not pre.get("resourceVersion"):
                        continue
                    raise
            marked = self._mark_deleting(info, data, current, grace)
            if marked is None:
                return current  # already being deleted: nothing more to do until finalizers go
            if dry_run:
                return marked
            try:
                updated = await self.store.update(info, marked)
            except RevisionConflictError:
                continue
            except StoreError as exc:
                raise errors.from_store_error(exc, info, name) from None
            self._observe(info, updated)
            return updated
        raise errors.conflict(info, name)

    def _mark_deleting(self, info: KindInfo, data: dict[str, Any], current: Resource, grace: int) -> Resource | None:
        """Mark ``current`` for deletion now (eviction uses it too); see ``deletion.mark_deleting``."""
        return mark_deleting(info, data, current, grace, self.clock())


__all__ = ["Handlers", "KeyNotFoundError", "check_type_meta"]
