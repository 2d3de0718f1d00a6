"""One Pod's sync (Kubernetes' SyncPod): make the runtime match the spec, one step per call.

Level-based: every call re-reads the runtime for the pod (by its uid label) and decides from
that: sandbox, volumes, init containers in order, then containers, restarts with back-off,
liveness kills. It returns when nothing more can be done now, with how long until something
is due (a back-off ending). Kills are graceful (StopContainer with the grace period).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import grpc

from kray.actors.framework.ports import Clock
from kray.crds import Pod
from kray.crds.core.container import Container
from kray.deviceplugins.hints import requested_devices
from kray.runtime.cri import api_pb2 as pb

from . import podstatus
from .dns import pod_dns_config
from .envvars import ContainerConfigError, EnvContext, build_env, command_line
from .hooks import pre_stop, run_hook
from .ports import (
    ANN_GRACE,
    CONTAINER_KIND,
    CONTAINER_NAME,
    POD_NAME,
    POD_NAMESPACE,
    POD_UID,
    ApiPort,
    CriPort,
    DevicePort,
    KubeletConfig,
    VolumePort,
)
from .probes import ProbeManager
from .runtimepod import RuntimePod, inspect
from .specs import extended_resources, linux_resources, security_context, volume_for

log = logging.getLogger(__name__)
POST_START_TIMEOUT = 30.0  # Kubernetes has none; a hook that hangs must not hold the pod forever


@dataclass
class Backoff:
    """Kubernetes' per-container crash back-off: none before the first restart, then 10 s
    doubling up to 5 min, measured from when the container last finished."""

    initial: float
    maximum: float
    entries: dict[tuple[str, str], float] = field(default_factory=dict)

    def remaining(self, key: tuple[str, str], finished_at: float, now: float) -> float:
        delay = self.entries.get(key)
        return 0.0 if delay is None else max(0.0, finished_at + delay - now)

    def next(self, key: tuple[str, str]) -> None:
        cur = self.entries.get(key)
        self.entries[key] = self.initial if cur is None else min(cur * 2, self.maximum)

    def forget_pod(self, uid: str) -> None:
        for k in [k for k in self.entries if k[0] == uid]:
            del self.entries[k]


class PodSyncer:
    def __init__(
        self,
        node_name: str,
        api: ApiPort,
        cri: CriPort,
        volumes: VolumePort,
        devices: DevicePort | None,
        probes: ProbeManager,
        clock: Clock,
        config: KubeletConfig,
    ) -> None:
        self.node_name = node_name
        self.api, self.cri, self.volumes, self.devices = api, cri, volumes, devices
        self.probes, self.clock, self.config = probes, clock, config
        self.backoff = Backoff(config.backoff_initial, config.backoff_max)
        self.waiting: dict[tuple[str, str], tuple[str, str]] = {}  # (uid, container) -> (reason, msg)
        self.published: dict[str, dict[str, str]] = {}  # uid -> volume name -> host path
        self._image_failed: dict[tuple[str, str], float] = {}  # when its last pull failed
        self.host_ip = ""
        self.allocatable: dict[str, Any] = {}

    # --- sync -------------------------------------------------------------------------------
    async def sync(self, pod: Pod) -> tuple[RuntimePod, float | None]:
        """One pass; returns the runtime view after it and seconds until a retry is due."""
        uid = pod.metadata.uid or ""
        rp = await inspect(self.cri, uid)
        terminal = (pod.status.phase if pod.status else None) in podstatus.TERMINAL
        if terminal:
            await self._stop_terminal(rp)
            return await inspect(self.cri, uid), None
        sb = rp.ready_sandbox()
        if sb is None:
            if rp.sandboxes and self._finished(pod, rp):
                return rp, None  # the pod ran to completion; its sandbox was stopped on purpose
            await self._new_sandbox(pod, rp)
            rp = await inspect(self.cri, uid)
            sb = rp.ready_sandbox()
            if sb is None:
                return rp, 1.0
        for old in rp.sandboxes:
            if old.id != sb.id:  # a dead sandbox replaced by a new one: its containers go with it
                await self.cri.remove_pod_sandbox(old.id)
        sb_status = (await self.cri.pod_sandbox_status(sb.id)).status
        pod_ip = sb_status.network.ip or self.host_ip
        await self._publish_volumes(pod)
        due: list[float] = []
        changed = await self._sync_containers(pod, rp, sb, pod_ip, due)
        if changed:
            rp = await inspect(self.cri, uid)
        if self._finished(pod, rp):
            await self._stop_terminal(rp)
            rp = await inspect(self.cri, uid)
        return rp, (min(due) if due else None)

    def _finished(self, pod: Pod, rp: RuntimePod) -> bool:
        if podstatus.init_failed(pod, rp):
            return True
        if pod.spec.restart_policy == "Always" or not podstatus.init_done(pod, rp):
            return False
        for c in pod.spec.containers:
            st = rp.latest(c.name)
            if st is None or st.state != pb.CONTAINER_EXITED:
                return False
            if pod.spec.restart_policy == "OnFailure" and st.exit_code != 0:
                return False
        return True

    async def _stop_terminal(self, rp: RuntimePod) -> None:
        """A finished pod keeps its (stopped) sandbox, so its logs stay readable until deletion."""
        for sb in rp.sandboxes:
            if sb.state == pb.SANDBOX_READY:
                await self.cri.stop_pod_sandbox(sb.id)
        self.probes.forget_pod(rp.uid)
        if self.devices is not None:
            await asyncio.to_thread(self.devices.free_pod, rp.uid)

    async def _sync_containers(
        self, pod: Pod, rp: RuntimePod, sb: pb.PodSandbox, pod_ip: str, due: list[float]
    ) -> bool:
        uid = pod.metadata.uid or ""
        for c in pod.spec.init_containers or []:
            st = rp.latest(c.name)
            if st is not None and st.state == pb.CONTAINER_EXITED and st.exit_code == 0:
                continue
            if st is not None and st.state == pb.CONTAINER_RUNNING:
                return False  # one init container at a time, in order
            if st is not None and st.state == pb.CONTAINER_EXITED and pod.spec.restart_policy == "Never":
                return False  # the pod failed
            return await self._start_or_backoff(pod, rp, c, "init", sb, pod_ip, due)
        changed = False
        live: set[str] = set()
        for c in pod.spec.containers:
            st = rp.latest(c.name)
            if st is not None and st.state == pb.CONTAINER_RUNNING:
                live.add(st.id)
                self.probes.add(uid, pod_ip, c, st.id)
                if self.probes.liveness_failed(st.id):
                    log.info("pod %s container %s failed its liveness probe: restarting", pod.metadata.name, c.name)
                    grace = await pre_stop(self.cri, c, st.id, pod_ip, self._grace(pod, c))
                    await self.cri.stop_container(st.id, int(grace))
                    changed = True
                continue
            if st is not None and st.state == pb.CONTAINER_EXITED:
                policy = pod.spec.restart_policy
                if policy == "Never" or (policy == "OnFailure" and st.exit_code == 0):
                    continue
            changed = await self._start_or_backoff(pod, rp, c, "app", sb, pod_ip, due) or changed
        self.probes.retain(uid, {cs.id for cs in rp.running()} | live)
        return changed

    async def _start_or_backoff(
        self, pod: Pod, rp: RuntimePod, c: Container, kind: str, sb: pb.PodSandbox, pod_ip: str, due: list[float]
    ) -> bool:
        uid = pod.metadata.uid or ""
        key = (uid, c.name)
        st = rp.latest(c.name)
        now = self.clock.monotonic()
        if st is not None and st.state == pb.CONTAINER_EXITED:
            # finished_at is wall-clock ns; turn it into this clock's monotonic time.
            ran_for = (st.finished_at - st.started_at) / 1e9 if st.started_at else 0.0
            if ran_for > self.config.backoff_reset:
                self.backoff.entries.pop(key, None)
            finished = now - max(0.0, (self.clock.now().timestamp() * 1e9 - st.finished_at) / 1e9)
            left = self.backoff.remaining(key, finished, now)
            if left > 0:
                delay = self.backoff.entries[key]
                msg = f"back-off {delay:.0f}s restarting failed container={c.name} pod={pod.metadata.name}"
                self.waiting[key] = ("CrashLoopBackOff", msg)
                due.append(left)
                return False
            self.backoff.next(key)
        elif st is not None and st.state == pb.CONTAINER_CREATED:
            # Created but never started (a kubelet died in between): remove and start afresh.
            await self.cri.remove_container(st.id)
        image_key = (uid, f"image:{c.name}")
        if self.waiting.get(key, ("",))[0] in ("ErrImagePull", "ImagePullBackOff"):
            left = self.backoff.remaining(image_key, self._image_failed.get(key, now), now)
            if left > 0:
                self.waiting[key] = ("ImagePullBackOff", f'Back-off pulling image "{c.image}"')
                due.append(left)
                return False
        try:
            await self._ensure_image(c)
        except grpc.aio.AioRpcError as exc:
            self.backoff.next(image_key)
            self._image_failed[key] = now
            self.waiting[key] = ("ErrImagePull", exc.details() or str(exc.code()))
            due.append(self.backoff.entries[image_key])
            return False
        try:
            cfg = await self._container_config(pod, c, kind, rp.next_attempt(c.name), pod_ip)
        except ContainerConfigError as exc:
            self.waiting[key] = ("CreateContainerConfigError", str(exc))
            due.append(self.config.backoff_initial)
            return False
        sb_cfg = self.sandbox_config(pod, sb.metadata.attempt)
        try:
            cid = await self.cri.create_container(sb.id, cfg, sb_cfg)
            await self.cri.start_container(cid)
        except grpc.aio.AioRpcError as exc:
            self.waiting[key] = (
                "CreateContainerError" if "create" in str(exc.details()).lower() else "RunContainerError",
                exc.details() or "",
            )
            due.append(self.config.backoff_initial)
            return True
        self.waiting.pop(key, None)
        hook = c.lifecycle.post_start if c.lifecycle else None
        err = await run_hook(self.cri, hook, c, cid, pod_ip, POST_START_TIMEOUT) if hook else None
        if err is not None:  # as the kubelet does: the container is killed, its restart policy decides
            log.warning("pod %s container %s: postStart hook failed: %s", pod.metadata.name, c.name, err)
            await self.cri.stop_container(cid, self._grace(pod, c))
        elif kind == "app":  # probes begin once postStart is done
            self.probes.add(uid, pod_ip, c, cid)
        return True

    async def _ensure_image(self, c: Container) -> None:
        # The node's store is local: an image that is there needs no pull, whatever the policy.
        if (await self.cri.image_status(c.image)).HasField("image"):
            return
        await self.cri.pull_image(c.image)

    # --- configs ----------------------------------------------------------------------------
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

    async def _new_sandbox(self, pod: Pod, rp: RuntimePod) -> None:
        attempt = rp.sandboxes[0].metadata.attempt + 1 if rp.sandboxes else 0
        for sb in rp.sandboxes:  # a sandbox died: its containers die with it, and all restart
            await self.cri.stop_pod_sandbox(sb.id)
        await self.cri.run_pod_sandbox(self.sandbox_config(pod, attempt), self.config.runtime_handler)

    async def _container_config(
        self, pod: Pod, c: Container, kind: str, attempt: int, pod_ip: str
    ) -> pb.ContainerConfig:
        md = pod.metadata
        uid = md.uid or ""
        ctx = EnvContext(pod, self.api, pod_ip=pod_ip, host_ip=self.host_ip, allocatable=self.allocatable)
        env = await build_env(ctx, c)
        command, args = command_line(c, env)
        mounts = []
        paths = self.published.get(uid, {})
        for m in c.volume_mounts or []:
            host = paths.get(m.name)
            if host is None:
                raise ContainerConfigError(f"volume {m.name!r} is not ready")
            if m.sub_path:
                host = os.path.join(host, m.sub_path)
                os.makedirs(host, exist_ok=True)
            mounts.append(pb.Mount(container_path=m.mount_path, host_path=host, readonly=bool(m.read_only)))
        devices: list[pb.Device] = []
        extra = extended_resources(c)
        if extra and self.devices is not None:
            for resource, count in extra.items():
                try:
                    chosen = requested_devices(pod, c.name, resource) if kind == "app" else None
                    got = await asyncio.to_thread(self.devices.allocate, uid, c.name, resource, count, chosen)
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
            annotations={ANN_GRACE: str(self._grace(pod, c))},
            log_path=f"{c.name}/{attempt}.log",
            linux=pb.LinuxContainerConfig(resources=linux_resources(c), security_context=security_context(c)),
        )

    async def _publish_volumes(self, pod: Pod) -> None:
        uid = pod.metadata.uid or ""
        have = self.published.setdefault(uid, {})
        ctx = EnvContext(pod, self.api)
        for v in pod.spec.volumes or []:
            if v.name in have:
                continue
            vol = await volume_for(v, ctx)
            if vol is None:
                continue
            have[v.name] = str(await asyncio.to_thread(self.volumes.node_publish, vol, uid))

    def _grace(self, pod: Pod, c: Container | None = None) -> int:
        if pod.metadata.deletion_grace_period_seconds is not None:
            return int(pod.metadata.deletion_grace_period_seconds)
        g = pod.spec.termination_grace_period_seconds
        return self.config.default_grace if g is None else int(g)

    # --- kill -------------------------------------------------------------------------------
    async def kill(self, uid: str, grace: int | None, pod: Pod | None = None) -> None:
        """Stop every container (preStop hook when `pod` gives one, SIGTERM, SIGKILL after the
        grace), then remove the sandboxes, volumes and devices. Grace None: each container's
        remembered grace."""
        rp = await inspect(self.cri, uid)
        specs = {c.name: c for c in pod.spec.containers} if pod is not None else {}
        pod_ip = (pod.status.pod_ip if pod is not None and pod.status else None) or self.host_ip

        async def stop(st: pb.ContainerStatus) -> None:
            g = grace if grace is not None else int(st.annotations.get(ANN_GRACE, self.config.default_grace))
            try:
                spec = specs.get(st.labels.get(CONTAINER_NAME, st.metadata.name))
                await self.cri.stop_container(st.id, int(await pre_stop(self.cri, spec, st.id, pod_ip, g)))
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise

        await asyncio.gather(*(stop(st) for st in rp.running()))
        for sb in rp.sandboxes:
            await self.cri.stop_pod_sandbox(sb.id)
            await self.cri.remove_pod_sandbox(sb.id)
        for st in rp.all():  # containers whose sandbox is already gone
            await self.cri.remove_container(st.id)
        await asyncio.to_thread(self.volumes.cleanup_pod, uid)
        if self.devices is not None:
            await asyncio.to_thread(self.devices.free_pod, uid)
        self.forget(uid)

    def forget(self, uid: str) -> None:
        self.probes.forget_pod(uid)
        self.backoff.forget_pod(uid)
        self.published.pop(uid, None)
        for k in [k for k in self.waiting if k[0] == uid]:
            del self.waiting[k]
