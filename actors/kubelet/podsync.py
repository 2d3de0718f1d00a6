"""One Pod's sync (Kubernetes' SyncPod): make the runtime match the spec, one step per call.

Level-based: every call re-reads the runtime for the pod (by its uid label) and decides from
that: sandbox, volumes, init containers in order, then containers, restarts with back-off,
liveness kills. It returns when nothing more can be done now, with how long until something
is due (a back-off ending). Kills are graceful (StopContainer with the grace period).
The CRI configs it creates sandboxes and containers with are podconfig.py's; the Events it
records go through events.py's queue, never awaited here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from kray.actors.framework.ports import Clock
from kray.crds import Pod
from kray.crds.core.container import Container
from kray.runtime.cri import api_pb2 as pb

from . import podstatus
from .envvars import ContainerConfigError
from .events import PodEvents
from .hooks import pre_stop, run_hook
from .images import ImageNeverPull, ImagePuller, InvalidImageName
from .podconfig import PodConfigs
from .ports import (
    ANN_GRACE,
    CONTAINER_NAME,
    ApiPort,
    CriPort,
    DevicePort,
    KubeletConfig,
    VolumePort,
)
from .probes import ProbeManager
from .runtimepod import RuntimePod, inspect

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


MOUNT_RETRY = 2.0  # seconds until volumes that could not be mounted are tried again


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
        events: PodEvents,
    ) -> None:
        self.node_name = node_name
        self.api, self.cri, self.volumes, self.devices = api, cri, volumes, devices
        self.probes, self.clock, self.config, self.events = probes, clock, config, events
        self.backoff = Backoff(config.backoff_initial, config.backoff_max)
        self.waiting: dict[tuple[str, str], tuple[str, str]] = {}  # (uid, container) -> (reason, msg)
        self._image_failed: dict[tuple[str, str], tuple[float, str]] = {}  # when and why its last pull failed
        self.configs = PodConfigs(api, volumes, devices, config)
        self.puller = ImagePuller(api, cri, events.warning)

    @property
    def host_ip(self) -> str:
        """The node's IP: a host-network pod's IP, and status.hostIP in containers' env."""
        return self.configs.host_ip

    @host_ip.setter
    def host_ip(self, ip: str) -> None:
        self.configs.host_ip = ip

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
        await self.configs.publish_volumes(pod)
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
                    probe = "startup" if self.probes.startup_failed(st.id) else "liveness"
                    self.events.normal(pod, "Killing", f"Container {c.name} failed {probe} probe, will be restarted")
                    grace = await pre_stop(
                        self.cri, c, st.id, pod_ip, self.configs.grace(pod, c), self._pre_stop_failed(pod, c.name)
                    )
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
                md = pod.metadata
                self.events.warning(
                    pod,
                    "BackOff",
                    f"Back-off restarting failed container {c.name} in pod {md.name}_{md.namespace}({uid})",
                )
                due.append(left)
                return False
            self.backoff.next(key)
        elif st is not None and st.state == pb.CONTAINER_CREATED:
            # Created but never started (a kubelet died in between): remove and start afresh.
            await self.cri.remove_container(st.id)
        mount_failed = self.configs.mount_errors.get(uid)
        if mount_failed:
            # As the kubelet: volumes before images and containers. The pod shows ContainerCreating
            # (FailedMount events say why) and the mounts are tried again shortly.
            self.waiting[key] = ("ContainerCreating", next(iter(mount_failed.values())))
            due.append(MOUNT_RETRY)
            return False
        image_key = (uid, f"image:{c.name}")
        if self.waiting.get(key, ("",))[0] in ("ErrImagePull", "ImagePullBackOff"):
            failed_at, why = self._image_failed.get(key, (now, ""))
            left = self.backoff.remaining(image_key, failed_at, now)
            if left > 0:
                # As Kubernetes 1.30+: the back-off says what the last pull failed with.
                self.waiting[key] = ("ImagePullBackOff", f'Back-off pulling image "{c.image}": ErrImagePull: {why}')
                self.events.normal(pod, "BackOff", f'Back-off pulling image "{c.image}"')
                due.append(left)
                return False
        try:
            await self.puller.ensure(pod, c, self.events.normal)
        except (ImageNeverPull, InvalidImageName) as exc:
            reason = "ErrImageNeverPull" if isinstance(exc, ImageNeverPull) else "InvalidImageName"
            self.waiting[key] = (reason, str(exc))
            self.events.warning(pod, reason if reason == "ErrImageNeverPull" else "InspectFailed", str(exc))
            due.append(self.config.backoff_initial)
            return False
        except grpc.aio.AioRpcError as exc:
            self.events.warning(pod, "Failed", f'Failed to pull image "{c.image}": {exc.details() or exc.code()}')
            self.events.warning(pod, "Failed", "Error: ErrImagePull")
            self.backoff.next(image_key)
            self._image_failed[key] = (now, exc.details() or str(exc.code()))
            self.waiting[key] = ("ErrImagePull", exc.details() or str(exc.code()))
            due.append(self.backoff.entries[image_key])
            return False
        try:
            cfg = await self.configs.container_config(pod, c, kind, rp.next_attempt(c.name), pod_ip)
        except ContainerConfigError as exc:
            self.waiting[key] = ("CreateContainerConfigError", str(exc))
            self.events.warning(pod, "Failed", f"Error: {exc}")
            due.append(self.config.backoff_initial)
            return False
        sb_cfg = self.configs.sandbox_config(pod, sb.metadata.attempt)
        cid = ""
        try:
            cid = await self.cri.create_container(sb.id, cfg, sb_cfg)
            self.events.normal(pod, "Created", f"Created container {c.name}")
            await self.cri.start_container(cid)
        except grpc.aio.AioRpcError as exc:
            self.waiting[key] = (
                "CreateContainerError" if "create" in str(exc.details()).lower() else "RunContainerError",
                exc.details() or "",
            )
            self.events.warning(pod, "Failed", f"Error: {exc.details() or exc.code()}")
            due.append(self.config.backoff_initial)
            return True
        self.waiting.pop(key, None)
        self.events.normal(pod, "Started", f"Started container {c.name}")
        hook = c.lifecycle.post_start if c.lifecycle else None
        err = await run_hook(self.cri, hook, c, cid, pod_ip, POST_START_TIMEOUT) if hook else None
        if err is not None:  # as the kubelet does: the container is killed, its restart policy decides
            log.warning("pod %s container %s: postStart hook failed: %s", pod.metadata.name, c.name, err)
            self.events.warning(pod, "FailedPostStartHook", err)
            self.events.normal(pod, "Killing", f"FailedPostStartHook: stopping container {c.name}")
            await self.cri.stop_container(cid, self.configs.grace(pod, c))
        elif kind == "app":  # probes begin once postStart is done
            self.probes.add(uid, pod_ip, c, cid)
        return True

    def _pre_stop_failed(self, pod: Pod, container: str) -> Callable[[str], None]:
        """The FailedPreStopHook event for one container's preStop hook."""

        def report(err: str) -> None:
            self.events.warning(pod, "FailedPreStopHook", f"PreStopHook failed for container {container}: {err}")

        return report

    async def _new_sandbox(self, pod: Pod, rp: RuntimePod) -> None:
        attempt = rp.sandboxes[0].metadata.attempt + 1 if rp.sandboxes else 0
        for sb in rp.sandboxes:  # a sandbox died: its containers die with it, and all restart
            await self.cri.stop_pod_sandbox(sb.id)
        await self.cri.run_pod_sandbox(self.configs.sandbox_config(pod, attempt), self.config.runtime_handler)

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
                name = st.labels.get(CONTAINER_NAME, st.metadata.name)
                spec = specs.get(name)
                on_hook_failure = self._pre_stop_failed(pod, name) if pod is not None else None
                if pod is not None:
                    self.events.normal(pod, "Killing", f"Stopping container {name}")
                g = int(await pre_stop(self.cri, spec, st.id, pod_ip, g, on_hook_failure))
                await self.cri.stop_container(st.id, g)
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
        self.configs.forget(uid)
        for k in [k for k in self.waiting if k[0] == uid]:
            del self.waiting[k]
