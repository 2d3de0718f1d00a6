"""The kubelet's device status loop: NodeDevices, GPU node labels, and GPU health on Pods.

Runs beside the kubelet core on its event loop. Whenever the device manager's view changes
(a registration, a ListAndWatch update) or a resync period passes, it reads the plugin's
inventory and

- writes the node's ``NodeDevices`` object (cluster-scoped, named after the node, owned by the
  Node so it goes when the Node goes) with optimistic concurrency: an update carries the
  resourceVersion it read, a Conflict re-reads and retries;
- labels the Node GPU-feature-discovery style (``nvidia.com/gpu.product`` and friends), so a
  plain ``nodeSelector`` can ask for a GPU model;
- works out, for each Pod holding GPUs, whether one of them is unhealthy: the kubelet adds the
  ``kray.io/GPUHealthy`` condition from ``pod_conditions``, and transitions are recorded as
  Events on the Pod and on the Node. A Pod that gives its GPUs back (it finished) keeps its
  last condition: the kubelet preserves condition types it does not compute itself.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from kray.actors.framework import EventRecorder
from kray.actors.framework.ports import Clock, SystemClock
from kray.client.errors import Conflict, NotFound
from kray.crds import Node, Pod
from kray.crds.devices import NodeDevices
from kray.crds.meta import OwnerReference

from .allocation import base_uuid

log = logging.getLogger(__name__)

CONDITION = "kray.io/GPUHealthy"
UNHEALTHY_REASON = "GPUUnhealthy"
HEALTHY_REASON = "GPUHealthy"
LABEL_PRODUCT = "nvidia.com/gpu.product"
LABEL_MEMORY = "nvidia.com/gpu.memory"
LABEL_COUNT = "nvidia.com/gpu.count"
COMPONENT = "kubelet"
RETRY_S = 2.0  # after a failed inventory read (the plugin actor restarting)


class DevicesView(Protocol):
    """What the loop reads of ``manager.DeviceManager``."""

    generation: int

    def allocated_pods(self) -> set[str]: ...

    def allocated_ids(self, pod_uid: str, resource: str) -> list[str]: ...


def label_value(text: str) -> str:
    """A label value from free text: spaces to '-', other odd characters dropped, 63 chars."""
    value = re.sub(r"[^A-Za-z0-9._-]", "", text.strip().replace(" ", "-"))
    return value[:63].strip("-_.")


def gpu_labels(inv: NodeDevices) -> dict[str, str]:
    devices = inv.spec.devices
    if not devices:
        return {}
    # A node with mixed GPUs is labelled with its most common model (GFD labels device 0's).
    model, _ = Counter(d.model or "" for d in devices).most_common(1)[0]
    first = next(d for d in devices if (d.model or "") == model)
    labels = {LABEL_COUNT: str(len({d.uuid or d.name for d in devices}))}
    if model:
        labels[LABEL_PRODUCT] = label_value(model)
    if first.memory_bytes:
        labels[LABEL_MEMORY] = str(first.memory_bytes // (1024 * 1024))
    return labels


class DeviceStatusSync:
    def __init__(
        self,
        node_name: str,
        api: Any,
        devices: DevicesView,
        inventory: Callable[[], NodeDevices | None],
        find_pod: Callable[[str], Pod | None],
        dispatch: Callable[[str], None],
        clock: Clock | None = None,
        resync_s: float = 30.0,
    ) -> None:
        self.node_name, self.api, self.devices = node_name, api, devices
        self._inventory, self._find_pod, self._dispatch = inventory, find_pod, dispatch
        self.clock = clock or SystemClock()
        self.resync_s = resync_s
        self.recorder = EventRecorder(api, COMPONENT, clock=self.clock, host=node_name)
        self.resource = "nvidia.com/gpu"
        self.unhealthy: dict[str, str] = {}  # GPU uuid -> why (from the last inventory)
        self.published: NodeDevices | None = None  # as last written (its resourceVersion)
        self._seen_generation: int | None = None
        self._next_resync = 0.0
        self._pod_bad: dict[str, dict[str, str]] = {}  # pod uid -> its unhealthy GPUs -> why
        self._labelled: dict[str, str] = {}
        self.errors: dict[str, str] = {}

    # -- the loop -------------------------------------------------------------------------------

    async def run(self, period_s: float = 0.5) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # never let the loop die; the next round starts afresh
                self._fail("tick", exc)
                self._next_resync = 0.0
            await self.clock.sleep(period_s)

    async def tick(self) -> bool:
        """One round: refresh when the devices changed or the resync is due. True if it did."""
        gen = self.devices.generation
        if gen == self._seen_generation and self.clock.monotonic() < self._next_resync:
            return False
        try:
            inv = await asyncio.to_thread(self._inventory)
        except Exception as exc:  # the plugin is restarting: try again shortly
            self._fail("inventory", exc)
            self._seen_generation, self._next_resync = gen, self.clock.monotonic() + RETRY_S
            return False
        self.errors.pop("inventory", None)
        self._seen_generation, self._next_resync = gen, self.clock.monotonic() + self.resync_s
        if inv is None:
            return True
        self.resource = inv.spec.driver
        # Each part on its own: a failed label write must not keep Pods from hearing about a GPU.
        await self._guard("pods", self._update_health(inv))
        await self._guard("nodedevices", self.publish(inv))
        await self._guard("labels", self.label_node(inv))
        return True

    async def _guard(self, name: str, coro: Any) -> None:
        try:
            await coro
            self.errors.pop(name, None)
        except Exception as exc:
            self._fail(name, exc)
            self._next_resync = 0.0  # retry next round

    def _fail(self, name: str, exc: Exception) -> None:
        log.warning("node %s: device status %s failed: %r", self.node_name, name, exc)
        self.errors[name] = repr(exc)

    # -- NodeDevices ----------------------------------------------------------------------------

    async def publish(self, inv: NodeDevices) -> NodeDevices:
        """Create or update the node's NodeDevices; writes only when the spec changed."""
        for _ in range(5):
            cur = self.published
            if cur is None:
                try:
                    cur = await self.api.get(NodeDevices, self.node_name)
                except NotFound:
                    obj = NodeDevices(metadata=inv.metadata.model_copy(deep=True), spec=inv.spec)
                    obj.metadata.owner_references = await self._owner()
                    try:
                        self.published = await self.api.create(obj)
                        return self.published
                    except Conflict:  # created meanwhile (AlreadyExists): read it and update
                        continue
            if cur.spec == inv.spec and cur.metadata.owner_references:
                self.published = cur
                return cur
            new = cur.model_copy(deep=True)
            new.spec = inv.spec
            if not new.metadata.owner_references:
                new.metadata.owner_references = await self._owner()
            try:
                self.published = await self.api.update(new)  # carries cur's resourceVersion
                return self.published
            except Conflict:
                self.published = None  # someone else wrote it: re-read and try again
            except NotFound:
                self.published = None
        raise Conflict(409, "Conflict", f"NodeDevices {self.node_name}: still conflicting after 5 tries")

    async def _owner(self) -> list[OwnerReference] | None:
        try:
            node = await self.api.get(Node, self.node_name)
        except NotFound:
            return None  # not registered yet: the next update adds the owner
        return [OwnerReference(api_version="v1", kind="Node", name=self.node_name, uid=node.metadata.uid or "")]

    async def delete(self) -> None:
        """Remove the node's NodeDevices (the node is being torn down)."""
        try:
            await self.api.delete(NodeDevices, self.node_name)
        except NotFound:
            pass
        self.published = None

    # -- Node labels ----------------------------------------------------------------------------

    async def label_node(self, inv: NodeDevices) -> None:
        want = gpu_labels(inv)
        if not want or want == self._labelled:
            return
        for _ in range(5):
            node = await self.api.get(Node, self.node_name)
            labels = dict(node.metadata.labels or {})
            if all(labels.get(k) == v for k, v in want.items()):
                break
            node.metadata.labels = {**labels, **want}
            try:
                await self.api.update(node)
                break
            except Conflict:  # the kubelet's own status write raced us: re-read
                continue
        else:
            raise Conflict(409, "Conflict", f"Node {self.node_name}: labels still conflicting after 5 tries")
        self._labelled = want

    # -- GPU health on Pods ---------------------------------------------------------------------

    def _bad_devices(self, uid: str) -> dict[str, str]:
        ids = self.devices.allocated_ids(uid, self.resource)
        return {base_uuid(d): self.unhealthy[base_uuid(d)] for d in ids if base_uuid(d) in self.unhealthy}

    async def _update_health(self, inv: NodeDevices) -> None:
        before = self.unhealthy
        self.unhealthy = {
            d.uuid or d.name: d.health_reason or "unhealthy" for d in inv.spec.devices if d.health != "Healthy"
        }
        node: Node | None = None
        for uuid in sorted(set(self.unhealthy) | set(before)):
            if (uuid in self.unhealthy) == (uuid in before):
                continue
            if node is None:
                node = await self.api.get(Node, self.node_name)
            if uuid in self.unhealthy:
                msg = f"GPU {uuid} is unhealthy: {self.unhealthy[uuid]}"
                await self.recorder.event(node, "Warning", UNHEALTHY_REASON, msg)
            else:
                await self.recorder.event(node, "Normal", HEALTHY_REASON, f"GPU {uuid} is healthy again")
        pods = self.devices.allocated_pods() | set(self._pod_bad)
        for uid in sorted(pods):
            bad = self._bad_devices(uid)
            old = self._pod_bad.get(uid, {})
            if bad == old:
                continue
            if bad:
                self._pod_bad[uid] = bad
            else:
                self._pod_bad.pop(uid, None)
                if not self.devices.allocated_ids(uid, self.resource):
                    continue  # it gave its GPUs back (finished, or gone): nothing healed, its condition stays
            pod = self._find_pod(uid)
            if pod is None:
                continue
            self._dispatch(uid)  # the kubelet rewrites the status with the new condition
            if bad:
                await self.recorder.event(pod, "Warning", UNHEALTHY_REASON, self._message(bad))
            elif old:
                await self.recorder.event(pod, "Normal", HEALTHY_REASON, "the Pod's GPUs are healthy again")

    @staticmethod
    def _message(bad: dict[str, str]) -> str:
        return "; ".join(f"GPU {uuid} is unhealthy: {why}" for uuid, why in sorted(bad.items()))

    def pod_conditions(self, pod: Pod) -> list[dict[str, Any]]:
        """The ``kray.io/GPUHealthy`` condition of a Pod that holds GPUs ([] otherwise)."""
        uid = pod.metadata.uid or ""
        if not self.devices.allocated_ids(uid, self.resource):
            return []
        bad = self._bad_devices(uid)
        if bad:
            return [{"type": CONDITION, "status": "False", "reason": UNHEALTHY_REASON, "message": self._message(bad)}]
        return [{"type": CONDITION, "status": "True", "reason": HEALTHY_REASON, "message": ""}]


def attach(kubelet: Any, devices: Any, inventory: Callable[[], NodeDevices | None]) -> DeviceStatusSync:
    """A loop for this kubelet (``actors.kubelet.Kubelet``): its Pods get the GPU condition."""
    sync = DeviceStatusSync(kubelet.node_name, kubelet.api, devices, inventory, kubelet.pods.get, kubelet.dispatch)
    sync.clock = kubelet.clock
    kubelet.condition_sources.append(sync.pod_conditions)
    # The scheduler's kray.io/gpu-devices names devices of the resource our NodeDevices describes.
    kubelet.syncer.configs.hint_resource = lambda: sync.resource
    return sync


async def delete_node_devices(config: Any, node_name: str) -> None:
    """`kray down` for a node's devices: its NodeDevices object goes (``config``: KrayConfig)."""
    from kray.client.aio import AsyncClient

    async with AsyncClient(config) as client:
        try:
            await client.delete(NodeDevices, node_name)
        except NotFound:
            pass
