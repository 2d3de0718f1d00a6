"""The kubelet core: a plain class handed its ports (API, CRI runtime, volumes, devices, clock).

It keeps the Pods bound to its node (list + watch with ``spec.nodeName=<node>``), runs one
worker per Pod (never two syncs of the same Pod at once), and wakes a Pod's worker when its
object changes, when the runtime's view of it changes (PLEG relist), when a probe result
changes, or when a back-off ends. ``step()`` does one round and waits for the workers (tests);
``run()`` loops forever, each subsystem in its own try/except so one failure never stops the rest.

Restart-safe: everything it started carries the pod uid as a CRI label, so a new kubelet
adopts running sandboxes and containers (no duplicates, nothing restarted) and removes those
of pods deleted while it was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from kray.actors.framework.ports import Clock, SystemClock
from kray.client.errors import Conflict, NotFound
from kray.crds import Node, Pod
from kray.crds.quantity import Quantity, add_resources

from . import podstatus
from .events import PodEvents
from .imagegc import GCPolicy, ImageGC
from .localvolumes import RECLAIM_PERIOD, LocalVolumeReclaimer
from .nodestatus import NodeStatusManager
from .podsync import PodSyncer
from .ports import ApiPort, CriPort, DevicePort, KubeletConfig, VolumePort
from .probes import ProbeManager, Prober
from .runtimepod import RuntimePod, runtime_pod_uids, snapshot

log = logging.getLogger(__name__)


class Kubelet:
    def __init__(
        self,
        node_name: str,
        api: ApiPort,
        cri: CriPort,
        volumes: VolumePort,
        devices: DevicePort | None = None,
        clock: Clock | None = None,
        config: KubeletConfig | None = None,
    ) -> None:
        self.node_name = node_name
        self.api, self.cri, self.volumes, self.devices = api, cri, volumes, devices
        self.clock = clock or SystemClock()
        self.config = config or KubeletConfig()
        self.events = PodEvents(api, node_name, self.clock, self.config.event_queue_size)
        self.probes = ProbeManager(Prober(cri), self.clock, on_failure=self._probe_failed)
        self.node = NodeStatusManager(node_name, api, cri, devices, self.clock, self.config)
        self.syncer = PodSyncer(
            node_name, api, cri, volumes, devices, self.probes, self.clock, self.config, self.events
        )
        self.syncer.host_ip = self.node.node_ip
        policy = GCPolicy(
            self.config.image_gc_high_threshold_percent,
            self.config.image_gc_low_threshold_percent,
            self.config.image_minimum_gc_age,
        )
        self.image_gc = ImageGC(cri, self.clock, policy, self._node_warning)
        configs = self.syncer.configs
        configs.on_mount_failed = lambda pod, msg: self.events.warning(pod, "FailedMount", msg)
        published = lambda: [p for vols in configs.published.values() for p in vols.values()]  # noqa: E731
        self.local_volumes = LocalVolumeReclaimer(
            node_name, api, cri, lambda: list(self.pods.values()), published, self.events.recorder
        )
        self.pods: dict[str, Pod] = {}  # uid -> newest object seen
        self.admitted: set[str] = set()
        self.listed = False  # orphan cleanup only after a complete list
        self.dirty: set[str] = set()
        self.due: dict[str, float] = {}
        self.workers: dict[str, asyncio.Task[None]] = {}
        self.pleg: dict[str, tuple[tuple[str, int], ...]] = {}
        self.pod_ips: dict[str, str] = {}
        self.errors: dict[str, str] = {}  # subsystem -> last error (for status())
        # Extra Pod conditions from node subsystems (GPU health: deviceplugins.nodesync).
        self.condition_sources: list[Callable[[Pod], list[dict[str, Any]]]] = []
        self._stopped = asyncio.Event()

    # --- pod cache --------------------------------------------------------------------------
    def on_pod(self, pod: Pod) -> None:
        uid = pod.metadata.uid or ""
        self.pods[uid] = pod
        self.dispatch(uid)

    def on_pod_gone(self, uid: str) -> None:
        self.pods.pop(uid, None)
        self.dispatch(uid)

    def replace_pods(self, pods: list[Pod]) -> None:
        seen = {p.metadata.uid or "" for p in pods}
        for uid in [u for u in self.pods if u not in seen]:
            self.on_pod_gone(uid)
        for p in pods:
            old = self.pods.get(p.metadata.uid or "")
            if old is None or old.metadata.resource_version != p.metadata.resource_version:
                self.on_pod(p)
        self.listed = True

    def find_pod(self, namespace: str, name: str) -> Pod | None:
        return next(
            (p for p in self.pods.values() if p.metadata.namespace == namespace and p.metadata.name == name), None
        )

    def _probe_failed(self, uid: str, container: str, kind: str, why: str) -> None:
        """Kubernetes' Unhealthy event, once per failed probe run (repeats aggregate)."""
        pod = self.pods.get(uid)
        if pod is not None:
            self.events.warning(pod, "Unhealthy", f"{kind.capitalize()} probe failed: {why}")

    # --- workers ----------------------------------------------------------------------------
    def dispatch(self, uid: str) -> None:
        self.dirty.add(uid)
        task = self.workers.get(uid)
        if task is None or task.done():
            self.workers[uid] = asyncio.get_running_loop().create_task(self._worker(uid))

    async def _worker(self, uid: str) -> None:
        while uid in self.dirty:
            self.dirty.discard(uid)
            try:
                await self.sync_pod(uid)
            except Exception as exc:
                log.exception("sync of pod %s failed", uid)
                self.errors[f"pod/{uid}"] = repr(exc)
                self.due[uid] = self.clock.monotonic() + 1.0
        self.workers.pop(uid, None)

    async def drain(self) -> None:
        while self.workers:
            await asyncio.gather(*list(self.workers.values()), return_exceptions=True)

    # --- one pod ----------------------------------------------------------------------------
    async def sync_pod(self, uid: str) -> None:
        pod = self.pods.get(uid)
        if pod is None:
            if self.listed:  # gone from the API (or never there): nothing of it may stay
                await self.syncer.kill(uid, None)
                self.admitted.discard(uid)
                self.pleg.pop(uid, None)
                self.pod_ips.pop(uid, None)
            return
        if pod.metadata.deletion_timestamp is not None:
            await self._terminate(pod)
            return
        if uid not in self.admitted:
            reason = self.admit(pod)
            if reason is not None:
                await self._write_status(pod, {"phase": "Failed", "reason": reason[0], "message": reason[1]})
                return
            self.admitted.add(uid)
        rp, due = await self.syncer.sync(pod)
        if due is not None:
            self.due[uid] = self.clock.monotonic() + due
        sb = rp.ready_sandbox() or (rp.sandboxes[0] if rp.sandboxes else None)
        if sb is not None and uid not in self.pod_ips:
            with contextlib.suppress(Exception):
                self.pod_ips[uid] = (await self.cri.pod_sandbox_status(sb.id)).status.network.ip or self.node.node_ip
        await self._write_status(pod, self.status_for(pod, rp))

    async def _terminate(self, pod: Pod) -> None:
        uid = pod.metadata.uid or ""
        grace = pod.metadata.deletion_grace_period_seconds
        await self.syncer.kill(uid, int(grace) if grace is not None else None, pod)
        self.admitted.discard(uid)
        try:
            await self.api.delete(
                Pod, pod.metadata.name or "", pod.metadata.namespace, grace_period_seconds=0, preconditions={"uid": uid}
            )
        except (NotFound, Conflict):
            pass  # already gone, or a new pod of the same name (not ours to delete)

    def admit(self, pod: Pod) -> tuple[str, str] | None:
        """Kubernetes' node admission: (reason, message) when the pod does not fit what is left."""
        alloc = {k: Quantity(v) for k, v in self.node.allocatable().items()}
        active = [
            p
            for u, p in self.pods.items()
            if u in self.admitted and (p.status.phase if p.status else None) not in podstatus.TERMINAL
        ]
        if len(active) + 1 > int(alloc.get("pods", Quantity(110)).value()):
            return "OutOfpods", "Pod was rejected: Node didn't have enough resource: pods"
        used = add_resources(*(p.spec.resource_requests() for p in active))
        for name, q in pod.spec.resource_requests().items():
            if q.is_zero():
                continue
            have = alloc.get(name)
            if have is None or used.get(name, Quantity(0)) + q > have:
                cap = have if have is not None else Quantity(0)
                return (
                    f"OutOf{name}",
                    f"Pod was rejected: Node didn't have enough resource: {name}, requested: {q}, "
                    f"used: {used.get(name, Quantity(0))}, capacity: {cap}",
                )
        return None

    def status_for(self, pod: Pod, rp: RuntimePod) -> dict[str, Any]:
        uid = pod.metadata.uid or ""
        init_done = podstatus.init_done(pod, rp)

        def one(c: Any, default: str) -> dict[str, Any]:
            st = rp.latest(c.name)
            cid = st.id if st is not None else ""
            return podstatus.container_status(
                c, rp, self.syncer.waiting.get((uid, c.name)), self.probes.ready(cid), self.probes.started(cid), default
            )

        inits = [one(c, "PodInitializing") for c in pod.spec.init_containers or []]
        apps = [one(c, "ContainerCreating" if init_done else "PodInitializing") for c in pod.spec.containers]
        phase = podstatus.phase(pod, rp, apps)
        old = pod.status.to_dict() if pod.status else {}
        now = old.get("startTime") or self.clock.now().isoformat().replace("+00:00", "Z")
        conds = podstatus.conditions(pod, rp, apps, phase)
        for source in self.condition_sources:
            try:
                conds += source(pod)
            except Exception as exc:  # a failing source must not stop status updates
                log.warning("pod %s: condition source failed: %r", uid, exc)
        podstatus.merge_transition_times(
            old.get("conditions"), conds, self.clock.now().isoformat().replace("+00:00", "Z")
        )
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": conds,
            "hostIP": self.node.node_ip,
            "hostIPs": [{"ip": self.node.node_ip}],
            "startTime": now,
            "containerStatuses": apps,
            "qosClass": pod.qos_class(),
        }
        if inits:
            status["initContainerStatuses"] = inits
        ip = self.pod_ips.get(uid)
        if ip:
            status["podIP"], status["podIPs"] = ip, [{"ip": ip}]
        return status

    async def _write_status(self, pod: Pod, status: dict[str, Any]) -> None:
        """update_status only when something changed; on Conflict re-read and retry."""
        conds = status.get("conditions") or []
        for _ in range(5):
            old = pod.status.to_dict() if pod.status else {}
            raw = pod.to_dict()
            # Against the status just read (also after a Conflict): other components' conditions stay.
            merged = podstatus.merge_conditions(old.get("conditions"), conds)
            raw["status"] = {**status, "conditions": merged} if merged or "conditions" in status else status
            new = Pod.model_validate(raw)
            if (new.status.to_dict() if new.status else {}) == old:
                return
            if old.get("phase") in podstatus.TERMINAL and status.get("phase") != old.get("phase"):
                return  # a finished pod never comes back
            try:
                written = await self.api.update_status(new)
                self.pods[pod.metadata.uid or ""] = written
                return
            except Conflict:
                pod = await self.api.get(Pod, pod.metadata.name or "", pod.metadata.namespace)
            except NotFound:
                return

    # --- housekeeping -----------------------------------------------------------------------
    async def relist(self) -> None:
        """PLEG: wake the pods whose sandboxes/containers changed state since the last relist;
        once the pod list is complete, wake runtime pods the API does not know (orphans)."""
        snap = await snapshot(self.cri)
        for uid, state in snap.items():
            if self.pleg.get(uid) != state:
                self.dispatch(uid)
        for uid in set(self.pleg) - set(snap):
            self.dispatch(uid)
        self.pleg = snap
        if self.listed:
            for uid in set(snap) - set(self.pods):
                self.dispatch(uid)

    async def housekeeping(self) -> None:
        await self._guard("pleg", self.relist)
        changed: set[str] = set()

        async def probes() -> None:
            changed.update(await self.probes.tick())

        await self._guard("probes", probes)
        now = self.clock.monotonic()
        for uid in changed | {u for u, t in self.due.items() if t <= now}:
            self.due.pop(uid, None)
            self.dispatch(uid)
        if self.devices is not None and self.listed:
            active = set(self.pods) | set(self.pleg)
            await self._guard("devices", lambda: asyncio.to_thread(self.devices.retain_pods, active))  # type: ignore[union-attr]

    async def adopt(self, known: set[str]) -> None:
        """After the first list: what the runtime already runs for a known pod was admitted
        by a previous kubelet; it is kept as is."""
        self.admitted |= known & await runtime_pod_uids(self.cri)

    async def list_pods(self) -> str:
        result = await self.api.list(Pod, None, all_namespaces=True, field_selector=f"spec.nodeName={self.node_name}")
        first = not self.listed
        items = list(result.items)
        if first:
            await self.adopt({p.metadata.uid or "" for p in items})
        self.replace_pods(items)
        return str(result.resource_version)

    async def _node_warning(self, reason: str, message: str) -> None:
        node = Node.model_validate({"metadata": {"name": self.node_name, "uid": self.node_name}})
        await self.events.recorder.event(node, "Warning", reason, message)

    async def _guard(self, name: str, fn: Callable[[], Awaitable[Any]]) -> None:
        try:
            await fn()
            self.errors.pop(name, None)
        except Exception as exc:
            log.exception("kubelet %s: %s failed", self.node_name, name)
            self.errors[name] = repr(exc)

    # --- driving ----------------------------------------------------------------------------
    async def step(self) -> None:
        """One round (tests): node status, pod list, housekeeping, then wait for the workers."""
        await self._guard("node", self.node.tick)
        await self._guard("pods", self.list_pods)
        await self.housekeeping()
        await self.drain()
        await self.events.flush()

    async def run(self) -> None:
        """Forever (until stop()): watch pods, heartbeat the node, relist the runtime."""
        self._stopped.clear()
        tasks = [
            asyncio.create_task(self._every("node", 1.0, self.node.tick)),
            asyncio.create_task(self._watch_pods()),
            asyncio.create_task(self._every("housekeeping", self.config.tick, self.housekeeping)),
            asyncio.create_task(self._every("imagegc", self.config.image_gc_period, self.image_gc.step)),
            asyncio.create_task(self._every("localvolumes", RECLAIM_PERIOD, self.local_volumes.step)),
            asyncio.create_task(self.events.run()),
        ]
        try:
            await self._stopped.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in list(self.workers.values()):
                w.cancel()
            await asyncio.gather(*self.workers.values(), return_exceptions=True)
            self.workers.clear()

    def stop(self) -> None:
        self._stopped.set()

    async def _every(self, name: str, period: float, fn: Callable[[], Awaitable[Any]]) -> None:
        while True:
            await self._guard(name, fn)
            await self.clock.sleep(period)

    async def _watch_pods(self) -> None:
        selector = f"spec.nodeName={self.node_name}"
        while True:
            try:
                rv = await self.list_pods()
                self.errors.pop("watch", None)
                async for ev in self.api.watch(
                    Pod,
                    None,
                    all_namespaces=True,
                    field_selector=selector,
                    resource_version=rv,
                    timeout_seconds=300,
                    allow_bookmarks=True,
                ):
                    if ev.type == "BOOKMARK":
                        continue
                    if ev.type == "DELETED":
                        self.on_pod_gone(ev.object.metadata.uid or "")
                    else:
                        self.on_pod(ev.object)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("kubelet %s: pod watch failed (%s); listing again", self.node_name, exc)
                self.errors["watch"] = repr(exc)
                await self.clock.sleep(1.0)
