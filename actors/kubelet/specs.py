"""Pod spec -> CRI/runtime pieces: volumes, Linux resources, security context, device requests."""

from __future__ import annotations

from typing import Any

from kray.crds.core.container import Container
from kray.runtime.cri import api_pb2 as pb
from kray.runtime.volumes import KeyToPath, Volume

from .envvars import EnvContext
from .localvolumes import pvc_volume

NATIVE = ("cpu", "memory", "pods", "ephemeral-storage")


def extended_resources(c: Container) -> dict[str, int]:
    """Device-plugin resources a container asks for (limits, as Kubernetes requires for them)."""
    res = c.resources
    lims = dict((res.requests or {}) if res else {})
    lims.update((res.limits or {}) if res else {})
    return {
        k: q.value() for k, q in lims.items() if k not in NATIVE and not k.startswith("hugepages-") and q.value() > 0
    }


async def volume_for(v: Any, ctx: EnvContext) -> Volume | None:
    """The runtime's Volume for a Pod volume (configMap/secret content read through the API; a
    claim's bound node-local PV as a hostPath). ContainerConfigError: not mountable yet."""
    if v.empty_dir is not None:
        size = v.empty_dir.size_limit.value() if v.empty_dir.size_limit is not None else None
        return Volume(v.name, "emptyDir", medium=v.empty_dir.medium or "", size_limit=size)
    if v.host_path is not None:
        return Volume(v.name, "hostPath", path=v.host_path.path, type=v.host_path.type or "")
    if v.config_map is not None or v.secret is not None:
        src = v.config_map if v.config_map is not None else v.secret
        is_cm = v.config_map is not None
        name = (src.name if is_cm else src.secret_name) or ""
        optional = bool(src.optional)
        data = await (ctx.config_map_bytes(name, optional) if is_cm else ctx.secret_bytes(name, optional))
        items = [KeyToPath(i.key, i.path, i.mode) for i in src.items] if src.items else None
        mode = src.default_mode if src.default_mode is not None else 0o644
        return Volume(
            v.name,
            "configMap" if is_cm else "secret",
            data=data or {},
            items=items,
            default_mode=mode,
            optional=optional,
        )
    if v.persistent_volume_claim is not None:
        return await pvc_volume(v, ctx)
    return None  # other sources (projected, ...) are not supported on this node yet


def linux_resources(c: Container) -> pb.LinuxContainerResources:
    res = c.resources
    req = dict(res.requests or {}) if res else {}
    lim = dict(res.limits or {}) if res else {}
    out = pb.LinuxContainerResources()
    cpu_req = req.get("cpu") or lim.get("cpu")
    out.cpu_shares = max(2, cpu_req.milli() * 1024 // 1000) if cpu_req is not None else 2
    if "cpu" in lim:
        out.cpu_period = 100_000
        out.cpu_quota = max(1000, lim["cpu"].milli() * 100_000 // 1000)
    if "memory" in lim:
        out.memory_limit_in_bytes = lim["memory"].value()
    return out


def security_context(c: Container) -> pb.LinuxContainerSecurityContext:
    sc = c.security_context
    out = pb.LinuxContainerSecurityContext()
    if sc is None:
        return out
    out.privileged = bool(sc.privileged)
    out.readonly_rootfs = bool(sc.read_only_root_filesystem)
    if sc.run_as_user is not None:
        out.run_as_user.value = sc.run_as_user
    if sc.run_as_group is not None:
        out.run_as_group.value = sc.run_as_group
    if sc.capabilities is not None:
        out.capabilities.add_capabilities.extend(sc.capabilities.add or [])
        out.capabilities.drop_capabilities.extend(sc.capabilities.drop or [])
    if sc.allow_privilege_escalation is False:
        out.no_new_privs = True
    return out
