"""Kubernetes' ResourceQuota admission plug-in.

On CREATE of a namespaced object, every ResourceQuota of the namespace whose scopes select it
and whose hard limits name something the object consumes is checked: ``used + requested <= hard``
for each such resource, else 403 Forbidden with kube's message::

    pods "x" is forbidden: exceeded quota: team-a, requested: requests.nvidia.com/gpu=4,
    used: requests.nvidia.com/gpu=6, limited: requests.nvidia.com/gpu=8

A pod that leaves out a cpu or memory amount a quota limits is refused (``failed quota: team-a:
must specify requests.cpu for: main``), and so is any create while a quota it matches has no
status yet (``status unknown for quota``): kube admits those, because it matches quotas on
status.hard, which lets everything through until the controller has run; here the limits of
spec.hard apply from the moment the quota exists.

Concurrency, as kube-apiserver: the charge is written into the quota's status.used with a
compare-and-swap on its resourceVersion BEFORE the object is stored, so of two creates racing for
the last slot exactly one swap wins; the loser re-reads the quota and is decided again. The
decision is the pure function ``evaluate``.

The window that remains, also kube's: a charge whose create then fails after admission (a name
already taken, etcd unavailable, or a later quota refusing after an earlier one was charged)
stays in status.used until the resourcequota controller recomputes usage from the live objects
(on the next event in the namespace or its periodic resync). It errs towards refusing, never
towards overcommitting.

A dry run (``request.dry_run``) is decided the same way (the same 403s) and charges nothing.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from kray.actors.store.kv import KeyNotFoundError, RevisionConflictError
from kray.crds.core import Pod
from kray.crds.core.quota import (
    ResourceQuota,
    add,
    mask,
    matches_scopes,
    matching_resources,
    missing_requests,
    object_usage,
    pretty,
    resource_of,
)
from kray.crds.meta import Resource, utcnow
from kray.crds.quantity import ResourceList
from kray.crds.registry import REGISTRY, KindInfo, Registry, UnknownKindError

from .admission import AdmissionDenied, AdmissionRequest

if TYPE_CHECKING:
    from kray.actors.store.objects import ObjectStore

_RETRIES = 16  # re-reads after a lost swap: one per racing create that took the quota first


class QuotaDenied(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


Charge = tuple[ResourceQuota, ResourceList]  # a quota and its status.used with this object in


def evaluate(
    group: str, plural: str, name: str, obj: Resource, quotas: Sequence[ResourceQuota], now: datetime
) -> list[Charge]:
    """kube's CheckRequest: the quotas to charge (with their new status.used), or QuotaDenied
    with kube's message. Every quota is checked before any is charged."""
    prefix = f'{resource_of(group, plural)} "{name}" is forbidden: '
    interesting: list[ResourceQuota] = []
    for quota in sorted(quotas, key=lambda q: q.name):
        status = quota.status
        known = status is not None and status.hard is not None
        hard = (status.hard if status is not None and known else quota.spec.hard) or {}
        restricted = matching_resources(group, plural, hard)
        if not restricted or not matches_scopes(quota.spec, obj):
            continue
        if isinstance(obj, Pod) and group == "" and plural == "pods":
            missing = missing_requests(obj, restricted)
            if missing:
                raise QuotaDenied(f"{prefix}failed quota: {quota.name}: {missing}")
        used = (status.used if status is not None else None) or {}
        if not known or any(r not in used for r in restricted):
            names = ",".join(sorted(restricted))
            raise QuotaDenied(f"{prefix}status unknown for quota: {quota.name}, resources: {names}")
        interesting.append(quota)
    if not interesting:
        return []
    delta = object_usage(group, plural, obj, now)
    charges: list[Charge] = []
    for quota in interesting:
        assert quota.status is not None and quota.status.hard is not None
        hard, used = quota.status.hard, quota.status.used or {}
        requested = mask(delta, hard)
        if not requested:
            continue
        new_used = add(used, requested)
        exceeded = [r for r in sorted(requested) if new_used[r] > hard[r]]
        if exceeded:
            raise QuotaDenied(
                f"{prefix}exceeded quota: {quota.name}, requested: {pretty(mask(requested, exceeded))}, "
                f"used: {pretty(mask(used, exceeded))}, limited: {pretty(mask(hard, exceeded))}"
            )
        charges.append((quota, new_used))
    return charges


class ResourceQuotaAdmission:
    """The admission hook: ``evaluate`` over the namespace's quotas read live, then the charges.

    Most namespaces have no quota, and a create there should not pay an etcd read for that: the
    namespaces that have quotas are kept in a set, listed afresh every ``ttl`` seconds and
    updated at once when a quota is created through this server (it passes this hook too). A
    namespace in the set has its quotas read live, as the swap needs them current anyway."""

    def __init__(
        self,
        store: ObjectStore,
        registry: Registry = REGISTRY,
        clock: Callable[[], datetime] = utcnow,
        retries: int = _RETRIES,
        ttl: float = 5.0,
    ) -> None:
        self._store = store
        self._registry = registry
        self._clock = clock
        self._retries = retries
        self._ttl = ttl
        self._with_quotas: set[str] = set()
        self._listed_at: float | None = None
        # Namespaces that just got a quota through this server, and when: a listing that was
        # already under way may not show it yet, so the next few listings keep it in.
        self._added: dict[str, float] = {}

    async def _has_quotas(self, quota_info: KindInfo, namespace: str) -> bool:
        started = time.monotonic()
        if self._listed_at is None or started - self._listed_at > self._ttl:
            items, _ = await self._store.list(quota_info)
            self._added = {ns: t for ns, t in self._added.items() if t > started - 2 * self._ttl}
            self._with_quotas = {q.metadata.namespace or "" for q in items} | set(self._added)
            self._listed_at = started
        return namespace in self._with_quotas

    async def admit(self, request: AdmissionRequest) -> None:
        info, obj = request.kind, request.object
        if request.operation != "CREATE" or request.subresource or obj is None:
            return
        if not info.namespaced or not request.namespace:
            return
        try:
            quota_info = self._registry.get("v1", ResourceQuota.KIND)
        except UnknownKindError:
            return
        has_quotas = await self._has_quotas(quota_info, request.namespace)
        if info.group == "" and info.kind == ResourceQuota.KIND and not request.dry_run:
            self._added[request.namespace] = time.monotonic()  # applies to the very next create
            self._with_quotas.add(request.namespace)
        if not has_quotas:
            return
        charged: set[str] = set()  # quotas already holding this object's charge (by uid)
        for attempt in range(self._retries):
            # Read live, not from a cache: the swap needs the current resourceVersion anyway,
            # and a quota created a moment ago must already apply.
            items, _ = await self._store.list(quota_info, request.namespace)
            quotas = [q for q in items if isinstance(q, ResourceQuota) and (q.metadata.uid or q.name) not in charged]
            try:
                charges = evaluate(info.group, info.plural, request.name, obj, quotas, self._clock())
            except QuotaDenied as exc:
                raise AdmissionDenied(exc.message) from None
            if request.dry_run:
                return  # decided as for the real create; the charge is not made
            lost = False
            for quota, used in charges:
                updated = quota.model_copy(deep=True)
                assert updated.status is not None
                updated.status.used = used
                try:
                    await self._store.update(quota_info, updated)  # CAS on the resourceVersion read
                except (RevisionConflictError, KeyNotFoundError):
                    lost = True  # another create (or the controller) wrote it first: decide again
                    continue
                charged.add(quota.metadata.uid or quota.name)
            if not lost:
                return
            # Jitter, so that creates which lost together do not all retry in lockstep.
            await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise AdmissionDenied(
            f'Operation cannot be fulfilled on resourcequotas in namespace "{request.namespace}": the object has '
            "been modified; please apply your changes to the latest version and try again",
            code=409,
        )
