"""The CRI configs a Pod's sandbox and containers are created with (Kubernetes' kuberuntime
generatePodSandboxConfig / generateContainerConfig): labels the kubelet finds them by again,
namespaces, DNS, env, command, mounts of the pod's published volumes, devices, resources,
security context, log path, and the grace period each container is stopped with.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from kray.crds import Pod
from kray.crds.core.container import Container
from kray.deviceplugins.hints import GPU_RESOURCE, requested_devices
from kray.runtime.cri import api_pb2 as pb
from kray.runtime.volumes import VolumeError

from .dns import pod_dns_config
from .envvars import ContainerConfigError, EnvContext, build_env, command_line
from .ports import (
    ANN_GRACE,
    CONTAINER_KIND,
    CONTAINER_NAME,
    POD_NAME,
    POD_NAMESPACE,
    POD_UID,
    ApiPort,
    DevicePort,
    KubeletConfig,
    VolumePort,
)
from .specs import extended_resources, linux_resources, security_context, volume_for


class PodConfigs:
    def __init__(self, api: ApiPort, volumes: VolumePort, devices: DevicePort | None, config: KubeletConfig) -> None:
        self.api, self.volumes, self.devices, self.config = api, volumes, devices, config
        self.published: dict[str, dict[str, str]] = {}  # uid -> volume name -> host path
        self.read_only: dict[str, set[str]] = {}  # uid -> volumes every mount of is read-only
        self.mount_errors: dict[str, dict[str, str]] = {}  # uid -> volume name -> why not published
        # Kubernetes' FailedMount event (the kubelet wires it to its event queue).
        self.on_mount_failed: Callable[[Pod, str], None] = lambda pod, message: None
        self.host_ip = ""
        self.allocatable: dict[str, Any] = {}
        # The resource kray.io/gpu-devices names devices of: the node's NodeDevices spec.driver,
        # which the device status loop (deviceplugins.nodesync.attach) knows.
        self.hint_resource: Callable[[], str] = lambda: GPU_RESOURCE

    def sandbox_config(self, pod: Pod, attempt: int) -> pb.PodSandboxConfig:
        md, spec = pod.metadata, pod.spec
        labels = {
            **(md.labels or {}),
            POD_UID: md.uid or "",
            POD_NAME: md.name or "",
            POD_NAMESPACE: md.namespace or "",
        }
        nso = pb.NamespaceOption(
            network=pb.NODE if spec.host_network else pb.POD,
            pid=pb.NODE if spec.host_pid else (pb.POD if spec.share_process_namespace else pb.CONTAINER),
            ipc=pb.NODE if spec.host_ipc else pb.POD,
        )
        hostname = spec.hostname or md.name or ""
        if spec.host_network:
            hostname = ""  # the node's own
        config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=md.name, namespace=md.namespace, uid=md.uid, attempt=attempt),
            hostname=hostname,
            labels=labels,
            annotations=dict(md.annotations or {}),
            linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(namespace_options=nso)),
        )
        dns = pod_dns_config(pod, self.config)
        if dns is not None:
            config.dns_config.CopyFrom(dns)
        return config

    async def container_config(
        self, pod: Pod, c: Container, kind: str, attempt: int, pod_ip: str
    ) -> pb.ContainerConfig:
        md = pod.metadata
        uid = md.uid or ""
        failed = self.mount_errors.get(uid)
        if failed:  # as the kubelet: no container starts before all the pod's volumes are mounted
            raise ContainerConfigError(next(iter(failed.values())))
        ctx = EnvContext(pod, self.api, pod_ip=pod_ip, host_ip=self.host_ip, allocatable=self.allocatable)
        env = await build_env(ctx, c)
        command, args = command_line(c, env)
        mounts = []
        paths = self.published.get(uid, {})
        read_only = self.read_only.get(uid, set())
        for m in c.volume_mounts or []:
            host = paths.get(m.name)
            if host is None:
                raise ContainerConfigError(f"volume {m.name!r} is not ready")
            if m.sub_path:
                host = os.path.join(host, m.sub_path)
                os.makedirs(host, exist_ok=True)
            ro = bool(m.read_only) or m.name in read_only
            mounts.append(pb.Mount(container_path=m.mount_path, host_path=host, readonly=ro))
        devices: list[pb.Device] = []
        extra = extended_resources(c)
        inits = [i.name for i in pod.spec.init_containers or []]
        if extra and self.devices is not None:
            for resource, count in extra.items():
                try:
                    chosen = requested_devices(pod, c.name, resource, self.hint_resource())
                    got = await asyncio.to_thread(self.devices.allocate, uid, c.name, resource, count, chosen, inits)
                except Exception as exc:
                    raise ContainerConfigError(f"allocating {resource}: {exc}") from exc
                env.update(got.envs)
                for d in got.devices:
                    devices.append(
                        pb.Device(
                            container_path=d["containerPath"],
                            host_path=d["hostPath"],
                            permissions=d.get("permissions", "rwm"),
                        )
                    )
                for m2 in got.mounts:
                    mounts.append(
                        pb.Mount(
                            container_path=m2["containerPath"],
                            host_path=m2["hostPath"],
                            readonly=bool(m2.get("readOnly")),
                        )
                    )
        labels = {
            POD_UID: uid,
            POD_NAME: md.name or "",
            POD_NAMESPACE: md.namespace or "",
            CONTAINER_NAME: c.name,
            CONTAINER_KIND: kind,
        }
        return pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=c.name, attempt=attempt),
            image=pb.ImageSpec(image=c.image),
            command=command,
            args=args,
            working_dir=c.working_dir or "",
            envs=[pb.KeyValue(key=k, value=v) for k, v in env.items()],
            mounts=mounts,
            devices=devices,
            labels=labels,
            annotations={ANN_GRACE: str(self.grace(pod, c))},
            log_path=f"{c.name}/{attempt}.log",
            linux=pb.LinuxContainerConfig(resources=linux_resources(c), security_context=security_context(c)),
        )

    async def publish_volumes(self, pod: Pod) -> None:
        uid = pod.metadata.uid or ""
        have = self.published.setdefault(uid, {})
        ctx = EnvContext(pod, self.api)
        failed: dict[str, str] = {}
        for v in pod.spec.volumes or []:
            if v.name in have:
                continue
            try:
                vol = await volume_for(v, ctx)
                if vol is None:
                    continue
                have[v.name] = str(await asyncio.to_thread(self.volumes.node_publish, vol, uid))
            except (ContainerConfigError, VolumeError, OSError) as exc:
                failed[v.name] = f'MountVolume.SetUp failed for volume "{v.name}" : {exc}'
                self.on_mount_failed(pod, failed[v.name])
        if ctx.read_only:
            self.read_only.setdefault(uid, set()).update(ctx.read_only)
        if failed:
            self.mount_errors[uid] = failed
        else:
            self.mount_errors.pop(uid, None)

    def grace(self, pod: Pod, c: Container | None = None) -> int:
        if pod.metadata.deletion_grace_period_seconds is not None:
            return int(pod.metadata.deletion_grace_period_seconds)
        g = pod.spec.termination_grace_period_seconds
        return self.config.default_grace if g is None else int(g)

    def forget(self, uid: str) -> None:
        self.published.pop(uid, None)
        self.read_only.pop(uid, None)
        self.mount_errors.pop(uid, None)
