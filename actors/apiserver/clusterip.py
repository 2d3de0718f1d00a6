"""ClusterIP allocation: an admission hook that gives every Service a virtual IP, kept in etcd.

Each allocated IP is one key, ``/registry/kray.io/serviceips/<ip>``, created with etcd's
create-if-absent; the key's value names the owning Service. Uniqueness therefore holds across
concurrent creates and across several API server replicas sharing one etcd: two creates racing
for one address both try to create the same key and exactly one wins (the other picks again,
or fails with 422 when it asked for that address).

Release happens only after a Service is really gone: a watch on Service keys frees the IP of
every deleted Service (deletes guarded by the key's owner, so a late release can never free an
address that was meanwhile handed to another Service). A periodic repair pass (kube's
``ipallocator/controller/repair``) closes the remaining gaps: it re-marks Services whose key is
missing (lost writes, restored backups) and frees keys that no Service owns, but only after the
key was seen leaked, unchanged, on several passes (an admitted create whose object write is
still in flight must not lose its address).

A dry run (``request.dry_run``) reserves nothing: a requested address is still checked (in the
range, not held by another Service: the same 422s), and one that was not asked for is left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import random
from typing import Any

from kray.actors.store.kv import KV, KeyExistsError, KeyNotFoundError, RevisionConflictError, StoreError

from .admission import AdmissionDenied, AdmissionRequest

log = logging.getLogger(__name__)

IP_PREFIX = "/registry/kray.io/serviceips/"
SERVICE_PREFIX = "/registry/core/services/"
_RANDOM_TRIES = 16


def _needs_ip(spec: Any) -> bool:
    return spec is not None and spec.type != "ExternalName" and spec.cluster_ip != "None"


class ClusterIPAllocator:
    """Admission hook (CREATE/UPDATE of v1 Services) plus the release/repair loop (``start``)."""

    def __init__(
        self,
        kv: KV,
        cidr: str,
        *,
        repair_interval: float = 60.0,
        leak_passes: int = 3,
        rng: random.Random | None = None,
    ) -> None:
        self.kv = kv
        self.net = ipaddress.ip_network(cidr)
        if self.net.num_addresses < 4:
            raise ValueError(f"service CIDR {cidr} is too small")
        self.repair_interval = repair_interval
        self.leak_passes = leak_passes
        self._rng = rng or random.Random()
        self._leaks: dict[str, tuple[int, int]] = {}  # key -> (mod revision, passes seen leaked)
        self._tasks: list[asyncio.Task[None]] = []

    # ---- the address space ----

    @property
    def size(self) -> int:
        """Allocatable addresses: the network and broadcast addresses are never handed out."""
        return self.net.num_addresses - 2

    def _ip_at(self, offset: int) -> str:
        return str(self.net.network_address + 1 + offset)

    def key(self, ip: str) -> str:
        return IP_PREFIX + ip

    def in_range(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return addr in self.net and addr not in (self.net.network_address, self.net.broadcast_address)

    # ---- allocate / release ----

    async def reserve(self, ip: str, owner: dict[str, str]) -> bool:
        """Create the IP's key for ``owner``; False when another Service holds it."""
        try:
            await self.kv.create(self.key(ip), json.dumps(owner, sort_keys=True).encode())
        except KeyExistsError:
            return False
        return True

    async def allocate(self, owner: dict[str, str]) -> str:
        """A free address for ``owner``: random probes first, then a scan of what is taken."""
        for _ in range(_RANDOM_TRIES):
            ip = self._ip_at(self._rng.randrange(self.size))
            if await self.reserve(ip, owner):
                return ip
        # Dense range: read what is taken once, then walk the free ones from a random start.
        kvs, _ = await self.kv.range(IP_PREFIX)
        taken = {kv.key[len(IP_PREFIX) :] for kv in kvs}
        start = self._rng.randrange(self.size)
        for i in range(self.size):
            ip = self._ip_at((start + i) % self.size)
            if ip not in taken and await self.reserve(ip, owner):
                return ip
        raise AdmissionDenied(f"failed to allocate a serviceIP: range {self.net} is full", code=500)

    async def release(self, ip: str, owner: dict[str, str] | None = None) -> bool:
        """Delete the IP's key, only if ``owner`` (when given) still holds it."""
        key = self.key(ip)
        kv = await self.kv.get(key)
        if kv is None:
            return False
        if owner is not None and _owner(kv.value) != owner:
            return False
        try:
            await self.kv.delete(key, expected_mod_revision=kv.mod_revision)
        except (KeyNotFoundError, RevisionConflictError):
            return False  # changed hands meanwhile: not ours to free
        return True

    # ---- admission ----

    async def admit(self, request: AdmissionRequest) -> None:
        info = request.kind
        if info.group != "" or info.kind != "Service" or request.subresource or request.object is None:
            return
        spec = getattr(request.object, "spec", None)
        if spec is None:
            return
        meta = request.object.metadata
        owner = {"namespace": meta.namespace or "", "name": meta.name or "", "uid": meta.uid or ""}
        if request.operation == "CREATE":
            await self._admit_create(spec, owner, request.dry_run)
        elif request.operation == "UPDATE":
            await self._admit_update(spec, getattr(request.old_object, "spec", None), owner, request.dry_run)

    async def _admit_create(self, spec: Any, owner: dict[str, str], dry_run: bool = False) -> None:
        if spec.type == "ExternalName":
            spec.cluster_ip, spec.cluster_ips = None, None
            return
        if spec.cluster_ip == "None":  # headless: DNS lists the pods, no virtual IP
            spec.cluster_ips = ["None"]
            return
        requested = spec.cluster_ip or (spec.cluster_ips[0] if spec.cluster_ips else None)
        if requested:
            self._check_requested(requested)
            if dry_run:  # only look: is it held by some Service?
                free = await self.kv.get(self.key(requested)) is None
            else:
                free = await self.reserve(requested, owner)
            if not free:
                raise AdmissionDenied(
                    f'spec.clusterIP: Invalid value: "{requested}": provided IP is already allocated', invalid=True
                )
            ip = requested
        elif dry_run:
            return  # nothing is allocated for a dry run: clusterIP stays as sent (empty)
        else:
            ip = await self.allocate(owner)
        spec.cluster_ip, spec.cluster_ips = ip, [ip]

    def _check_requested(self, ip: str) -> None:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise AdmissionDenied(
                f'spec.clusterIP: Invalid value: "{ip}": must be a valid IP address or "None"', invalid=True
            ) from None
        if not self.in_range(ip):
            raise AdmissionDenied(
                f'spec.clusterIP: Invalid value: "{ip}": provided IP is not in the valid range. '
                f"The range of valid IPs is {self.net}",
                invalid=True,
            )

    async def _admit_update(self, spec: Any, old: Any, owner: dict[str, str], dry_run: bool = False) -> None:
        old_ip = old.cluster_ip if old is not None else None
        if old_ip and _needs_ip(spec) == _needs_ip(old):
            # Like kube's patchAllocatedValues: an update that leaves the field out keeps it.
            if not spec.cluster_ip:
                spec.cluster_ip = old_ip
                spec.cluster_ips = list(old.cluster_ips or [old_ip])
            if spec.cluster_ip != old_ip:
                raise AdmissionDenied(
                    f'spec.clusterIP: Invalid value: "{spec.cluster_ip}": field is immutable', invalid=True
                )
            if not spec.cluster_ips:
                spec.cluster_ips = [old_ip]
            return
        if old_ip and old_ip != "None" and not _needs_ip(spec):
            # ClusterIP -> ExternalName: the address is dropped; repair frees its key.
            spec.cluster_ip, spec.cluster_ips = None, None
            return
        if _needs_ip(spec) and not (old is not None and _needs_ip(old)):
            await self._admit_create(spec, owner, dry_run)  # ExternalName -> ClusterIP: a new address

    # ---- release on delete, repair ----

    def start(self) -> None:
        """Start the release watch and the repair loop on the running event loop (idempotent)."""
        if not self._tasks:
            self._tasks = [asyncio.ensure_future(self._release_loop()), asyncio.ensure_future(self._repair_loop())]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    async def _release_loop(self) -> None:
        delay = 0.5
        while True:
            try:
                revision = await self.kv.current_revision()
                await self.repair()  # covers deletes missed while not watching
                async for batch in self.kv.watch(SERVICE_PREFIX, start_revision=revision + 1):
                    delay = 0.5
                    for event in batch:
                        if event.type == "DELETE" and event.prev_kv is not None:
                            await self._release_deleted(event.prev_kv.value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a compacted or broken watch: start over from now
                log.log(logging.WARNING if delay < 1 else logging.DEBUG, "clusterIP release watch: %s", exc)
            # Backing off also keeps a loop over a closed store (an unstopped test server) cheap.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _release_deleted(self, value: bytes) -> None:
        try:
            data = json.loads(value)
        except ValueError:
            return
        meta, spec = data.get("metadata") or {}, data.get("spec") or {}
        ip = spec.get("clusterIP")
        if ip and ip != "None":
            await self.release(ip, _owner_of(meta))

    async def _repair_loop(self) -> None:
        while True:
            await asyncio.sleep(self.repair_interval)
            try:
                await self.repair()
            except asyncio.CancelledError:
                raise
            except StoreError as exc:
                log.warning("clusterIP repair failed: %s", exc)

    async def repair(self) -> tuple[int, int]:
        """One pass: re-mark Services without a key, free keys leaked ``leak_passes`` times.

        Returns (re-marked, freed).
        """
        services, _ = await self.kv.range(SERVICE_PREFIX)
        owners: dict[str, dict[str, str]] = {}
        for kv in services:
            with contextlib.suppress(ValueError):
                data = json.loads(kv.value)
                meta, spec = data.get("metadata") or {}, data.get("spec") or {}
                ip = spec.get("clusterIP")
                if ip and ip != "None" and self.in_range(ip):
                    owners[ip] = _owner_of(meta)
        keys, _ = await self.kv.range(IP_PREFIX)
        held = {kv.key[len(IP_PREFIX) :]: kv for kv in keys}
        remarked = 0
        for ip, owner in owners.items():
            if ip not in held and await self.reserve(ip, owner):
                remarked += 1
                log.warning("clusterIP repair: re-marked %s for %s/%s", ip, owner["namespace"], owner["name"])
            elif ip in held and _owner(held[ip].value) != owner:
                log.error("clusterIP repair: %s is held by %s, not by Service %s", ip, held[ip].value, owner)
        freed = 0
        seen: dict[str, tuple[int, int]] = {}
        for ip, kv in held.items():
            if ip in owners and _owner(kv.value) == owners[ip]:
                continue
            rev, passes = self._leaks.get(kv.key, (kv.mod_revision, 0))
            passes = passes + 1 if rev == kv.mod_revision else 1
            if passes >= self.leak_passes:
                with contextlib.suppress(KeyNotFoundError, RevisionConflictError):
                    await self.kv.delete(kv.key, expected_mod_revision=kv.mod_revision)
                    freed += 1
            else:
                seen[kv.key] = (kv.mod_revision, passes)
        self._leaks = seen
        return remarked, freed


def _owner_of(meta: dict[str, Any]) -> dict[str, str]:
    return {"namespace": meta.get("namespace", ""), "name": meta.get("name", ""), "uid": meta.get("uid", "")}


def _owner(value: bytes) -> dict[str, str] | None:
    try:
        data = json.loads(value)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
