"""The node IPAM controller: hand every Node a podCIDR out of the cluster CIDR (Kubernetes' range
allocator, ``--allocate-node-cidrs``).

The cluster CIDR (``10.244.0.0/16``) is cut into per-node blocks of ``node_mask`` bits (``/24``).
Level-based: each pass looks at *all* Nodes in the cache, so the set of blocks in use is always
rebuilt from what the Nodes say (a restarted controller needs no state of its own, and a deleted
Node's block is free again the moment it leaves the cache). Assignments written but not yet seen
in the cache are remembered so a stale cache never hands the same block out twice.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field

from kray.actors.framework import Clock, ControllerBuilder, EventRecorder, Manager, Reader, Request, Result, Writer
from kray.client.errors import NotFound
from kray.crds.core import Node

log = logging.getLogger(__name__)

# How long a write not yet visible in the cache keeps its block reserved.
PENDING_TIMEOUT = 60.0
# Retry cadence while the cluster CIDR is exhausted (a Node may be deleted meanwhile).
EXHAUSTED_RETRY = 30.0


class CIDRExhaustedError(RuntimeError):
    """No free per-node block is left in the cluster CIDR."""


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class CIDRSet:
    """Blocks of ``node_mask`` bits inside ``cluster_cidr``, by index; first free wins."""

    cluster_cidr: str
    node_mask: int
    used: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.net: Network = ipaddress.ip_network(self.cluster_cidr)
        if not self.net.prefixlen <= self.node_mask <= self.net.max_prefixlen:
            raise ValueError(f"node mask /{self.node_mask} does not fit in cluster CIDR {self.net}")
        self.size = 1 << (self.node_mask - self.net.prefixlen)
        self._step = 1 << (self.net.max_prefixlen - self.node_mask)

    def block(self, index: int) -> str:
        addr = ipaddress.ip_address(int(self.net.network_address) + index * self._step)
        return f"{addr}/{self.node_mask}"

    def index_of(self, cidr: str) -> int | None:
        """The block index of a CIDR, or None when it is not one of ours (other range, other size)."""
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return None
        if net.version != self.net.version or net.prefixlen != self.node_mask or not net.subnet_of(self.net):  # type: ignore[arg-type]
            return None
        return (int(net.network_address) - int(self.net.network_address)) // self._step

    def occupy(self, cidr: str) -> bool:
        index = self.index_of(cidr)
        if index is None:
            return False
        self.used.add(index)
        return True

    def release(self, cidr: str) -> None:
        index = self.index_of(cidr)
        if index is not None:
            self.used.discard(index)

    def allocate(self) -> str:
        for index in range(self.size):
            if index not in self.used:
                self.used.add(index)
                return self.block(index)
        raise CIDRExhaustedError(f"no free /{self.node_mask} left in cluster CIDR {self.net}")


def node_cidrs(node: Node) -> list[str]:
    cidrs = list(node.spec.pod_cidrs or [])
    if node.spec.pod_cidr and node.spec.pod_cidr not in cidrs:
        cidrs.insert(0, node.spec.pod_cidr)
    return cidrs


class NodeIpamReconciler:
    def __init__(
        self,
        reader: Reader,
        writer: Writer,
        clock: Clock,
        recorder: EventRecorder | None = None,
        *,
        cluster_cidr: str = "10.244.0.0/16",
        node_mask: int = 24,
    ) -> None:
        self.reader, self.writer, self.clock, self.recorder = reader, writer, clock, recorder
        self.cluster_cidr, self.node_mask = cluster_cidr, node_mask
        CIDRSet(cluster_cidr, node_mask)  # fail at setup on a bad configuration, not per Node
        # node name -> (cidr, monotonic time written): assigned by us, maybe not in the cache yet
        self._pending: dict[str, tuple[str, float]] = {}

    def _used(self, nodes: list[Node]) -> CIDRSet:
        """The blocks in use, rebuilt from every Node plus our own unconfirmed writes."""
        cidrs = CIDRSet(self.cluster_cidr, self.node_mask)
        seen = {n.name: n for n in nodes}
        now = self.clock.monotonic()
        for node in nodes:
            for cidr in node_cidrs(node):
                cidrs.occupy(cidr)
        for name, (cidr, at) in list(self._pending.items()):
            found = seen.get(name)
            if (found is not None and node_cidrs(found)) or now - at > PENDING_TIMEOUT:
                del self._pending[name]  # the cache caught up (or the write is long lost)
            else:
                cidrs.occupy(cidr)
        return cidrs

    async def reconcile(self, request: Request) -> Result:
        nodes = await self.reader.list(Node)
        cidrs = self._used(nodes)
        try:
            node = await self.reader.get(Node, request.name)
        except NotFound:
            self._pending.pop(request.name, None)  # its block is free: no Node holds it any more
            return Result()
        if node_cidrs(node) or node.metadata.deletion_timestamp is not None:
            return Result()
        pending = self._pending.get(node.name)
        try:
            cidr = pending[0] if pending else cidrs.allocate()
        except CIDRExhaustedError as exc:
            log.warning("node %s: %s", node.name, exc)
            if self.recorder is not None:
                await self.recorder.event(node, "Warning", "CIDRNotAvailable", str(exc))
            return Result(requeue_after=EXHAUSTED_RETRY)
        updated = node.model_copy(deep=True)
        updated.spec.pod_cidr, updated.spec.pod_cidrs = cidr, [cidr]
        self._pending[node.name] = (cidr, self.clock.monotonic())
        try:
            await self.writer.update(updated)  # stale resourceVersion -> 409 -> requeue
        except NotFound:
            self._pending.pop(node.name, None)
            return Result()
        except Exception:
            self._pending.pop(node.name, None)
            raise
        log.info("node %s: podCIDR %s", node.name, cidr)
        if self.recorder is not None:
            await self.recorder.event(node, "Normal", "CIDRAssignmentSucceeded", f"podCIDR {cidr}")
        return Result()


def setup(manager: Manager, **options: object) -> None:
    """Register the node IPAM controller.

    Options: ``cluster_cidr`` (default ``10.244.0.0/16``), ``node_mask`` (prefix length of each
    node's block, default 24).
    """
    cluster_cidr = options.get("cluster_cidr", "10.244.0.0/16")
    node_mask = options.get("node_mask", 24)
    reconciler = NodeIpamReconciler(
        manager.reader,
        manager.writer,
        manager.clock,
        manager.event_recorder("node-ipam-controller"),
        cluster_cidr=str(cluster_cidr),
        node_mask=int(node_mask) if isinstance(node_mask, (int, str)) else 24,
    )
    ControllerBuilder(manager).named("node-ipam").for_(Node).complete(reconciler)
