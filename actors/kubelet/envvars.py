"""A container's environment, the way the kubelet builds it.

Order (later wins): Service variables of the pod's namespace, then ``envFrom`` sources, then
``env`` entries, each ``value`` expanded with ``$(VAR)`` against what came before. Command and
args are expanded against the final environment. A missing ConfigMap/Secret (or key) that is
not optional is a ``CreateContainerConfigError``, as in Kubernetes.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kray.crds import ConfigMap, Node, Pod, Secret, Service
from kray.crds.core.container import Container
from kray.crds.core.storage import PersistentVolume, PersistentVolumeClaim
from kray.crds.quantity import Quantity

from .ports import ApiPort


class ContainerConfigError(Exception):
    """The container cannot be configured yet (waiting reason CreateContainerConfigError)."""


_REF = re.compile(r"\$\$|\$\(([^)]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined names are replaced, unknown ones stay verbatim,
    ``$$`` escapes a dollar."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _REF.sub(sub, text)


def _svc_prefix(name: str) -> str:
    return name.upper().replace("-", "_")


def service_env(services: list[Service]) -> dict[str, str]:
    """Docker-links-style variables for every Service with a cluster IP."""
    out: dict[str, str] = {}
    for svc in sorted(services, key=lambda s: s.metadata.name or ""):
        ip = svc.spec.cluster_ip
        ports = svc.spec.ports or []
        if not ip or ip == "None" or not ports:
            continue
        p = _svc_prefix(svc.metadata.name or "")
        first = ports[0]
        out[f"{p}_SERVICE_HOST"] = ip
        out[f"{p}_SERVICE_PORT"] = str(first.port)
        for sp in ports:
            if sp.name:
                out[f"{p}_SERVICE_PORT_{_svc_prefix(sp.name)}"] = str(sp.port)
        out[f"{p}_PORT"] = f"{first.protocol.lower()}://{ip}:{first.port}"
        for sp in ports:
            proto = sp.protocol
            base = f"{p}_PORT_{sp.port}_{proto}"
            out[base] = f"{proto.lower()}://{ip}:{sp.port}"
            out[f"{base}_PROTO"] = proto.lower()
            out[f"{base}_PORT"] = str(sp.port)
            out[f"{base}_ADDR"] = ip
    return out


@dataclass
class EnvContext:
    """What env building reads: the pod, its addresses, the node's allocatable (limits that are
    not set default to it), and the API for ConfigMaps, Secrets and Services (cached per sync)."""

    pod: Pod
    api: ApiPort
    pod_ip: str = ""
    host_ip: str = ""
    allocatable: dict[str, Quantity] = field(default_factory=dict)
    # Pod volumes that must be mounted read-only whatever the volumeMount says (a claim's
    # readOnly, a ReadOnlyMany PV); volume_for fills it in.
    read_only: set[str] = field(default_factory=set)
    _objects: dict[tuple[str, str], Any] = field(default_factory=dict)

    async def _get(self, kind: Any, name: str) -> Any:
        from kray.client.errors import NotFound

        key = (kind.KIND, name)
        if key not in self._objects:
            try:
                ns = self.pod.metadata.namespace if kind.NAMESPACED else None
                self._objects[key] = await self.api.get(kind, name, ns)
            except NotFound:
                self._objects[key] = None
        return self._objects[key]

    async def claim(self, name: str) -> PersistentVolumeClaim | None:
        """The pod's PersistentVolumeClaim `name` (its namespace), None when there is none."""
        return await self._get(PersistentVolumeClaim, name)  # type: ignore[no-any-return]

    async def persistent_volume(self, name: str) -> PersistentVolume | None:
        return await self._get(PersistentVolume, name)  # type: ignore[no-any-return]

    async def node(self) -> Node | None:
        """The pod's node (its labels decide a PV's node affinity)."""
        return await self._get(Node, self.pod.spec.node_name or "")  # type: ignore[no-any-return]

    async def config_map(self, name: str, optional: bool) -> dict[str, str] | None:
        cm = await self._get(ConfigMap, name)
        if cm is None:
            if optional:
                return None
            raise ContainerConfigError(f'configmap "{name}" not found')
        data = dict(cm.data or {})
        for k, v in (cm.binary_data or {}).items():
            data[k] = base64.b64decode(v).decode(errors="replace")
        return data

    async def secret(self, name: str, optional: bool) -> dict[str, str] | None:
        sec = await self._get(Secret, name)
        if sec is None:
            if optional:
                return None
            raise ContainerConfigError(f'secret "{name}" not found')
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in (sec.data or {}).items()}

    async def config_map_bytes(self, name: str, optional: bool) -> dict[str, bytes | str] | None:
        cm = await self._get(ConfigMap, name)
        if cm is None:
            if optional:
                return None
            raise ContainerConfigError(f'configmap "{name}" not found')
        out: dict[str, bytes | str] = dict(cm.data or {})
        out.update({k: base64.b64decode(v) for k, v in (cm.binary_data or {}).items()})
        return out

    async def secret_bytes(self, name: str, optional: bool) -> dict[str, bytes | str] | None:
        sec = await self._get(Secret, name)
        if sec is None:
            if optional:
                return None
            raise ContainerConfigError(f'secret "{name}" not found')
        return {k: base64.b64decode(v) for k, v in (sec.data or {}).items()}

    async def services(self) -> list[Service]:
        if ("Service", "*") not in self._objects:
            result = await self.api.list(Service, self.pod.metadata.namespace)
            self._objects[("Service", "*")] = list(result.items)
        return self._objects[("Service", "*")]  # type: ignore[no-any-return]


def field_ref(ctx: EnvContext, path: str) -> str:
    pod, md = ctx.pod, ctx.pod.metadata
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path)
    if m:
        src = (md.labels if m.group(1) == "labels" else md.annotations) or {}
        return src.get(m.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        src = (md.labels if path == "metadata.labels" else md.annotations) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(src.items()))
    values = {
        "metadata.name": md.name or "",
        "metadata.namespace": md.namespace or "",
        "metadata.uid": md.uid or "",
        "spec.nodeName": pod.spec.node_name or "",
        "spec.serviceAccountName": pod.spec.service_account_name or "",
        "status.podIP": ctx.pod_ip,
        "status.podIPs": ctx.pod_ip,
        "status.hostIP": ctx.host_ip,
        "status.hostIPs": ctx.host_ip,
    }
    if path not in values:
        raise ContainerConfigError(f"unsupported fieldRef {path!r}")
    return values[path]


def resource_ref(ctx: EnvContext, container: Container, resource: str, divisor: str | None) -> str:
    """requests.cpu, limits.memory, ... divided by `divisor` and rounded up (Kubernetes'
    rule); an unset limit is the node's allocatable."""
    kind, _, name = resource.partition(".")
    res = container.resources
    src = (res.limits if kind == "limits" else res.requests) if res else None
    q = (src or {}).get(name)
    if q is None and kind == "limits":
        q = ctx.allocatable.get(name)
    if q is None and kind == "requests" and res and res.limits and name in res.limits:
        q = res.limits[name]
    amount = q.amount if q is not None else Decimal(0)
    div = Quantity(divisor).amount if divisor else Decimal(1)
    if div <= 0:
        div = Decimal(1)
    return str(math.ceil(amount / div))


async def build_env(ctx: EnvContext, container: Container) -> dict[str, str]:
    env: dict[str, str] = {}
    if ctx.pod.spec.enable_service_links is not False:
        env.update(service_env(await ctx.services()))
    for src in container.env_from or []:
        prefix = src.prefix or ""
        data: dict[str, str] | None = None
        if src.config_map_ref is not None:
            data = await ctx.config_map(src.config_map_ref.name or "", bool(src.config_map_ref.optional))
        elif src.secret_ref is not None:
            data = await ctx.secret(src.secret_ref.name or "", bool(src.secret_ref.optional))
        for k, v in (data or {}).items():
            env[prefix + k] = v
    for e in container.env or []:
        if e.value_from is None:
            env[e.name] = expand(e.value or "", env)
            continue
        vf = e.value_from
        value: str | None
        if vf.field_ref is not None:
            value = field_ref(ctx, vf.field_ref.field_path)
        elif vf.resource_field_ref is not None:
            r = vf.resource_field_ref
            target = container
            if r.container_name:
                target = next((c for c in ctx.pod.spec.all_containers() if c.name == r.container_name), container)
            value = resource_ref(ctx, target, r.resource, r.divisor)
        elif vf.config_map_key_ref is not None:
            ref = vf.config_map_key_ref
            cm = await ctx.config_map(ref.name or "", bool(ref.optional))
            value = None if cm is None else cm.get(ref.key)
            if value is None and cm is not None and not ref.optional:
                raise ContainerConfigError(
                    f"couldn't find key {ref.key} in ConfigMap {ctx.pod.metadata.namespace}/{ref.name}"
                )
        elif vf.secret_key_ref is not None:
            ref = vf.secret_key_ref
            sec = await ctx.secret(ref.name or "", bool(ref.optional))
            value = None if sec is None else sec.get(ref.key)
            if value is None and sec is not None and not ref.optional:
                raise ContainerConfigError(
                    f"couldn't find key {ref.key} in Secret {ctx.pod.metadata.namespace}/{ref.name}"
                )
        else:
            value = ""
        if value is not None:
            env[e.name] = value
    return env


def command_line(container: Container, env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    return [expand(a, env) for a in container.command or []], [expand(a, env) for a in container.args or []]
