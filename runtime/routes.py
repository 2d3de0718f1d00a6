"""Pod routes between nodes, flannel "host-gw" style: every node routes each other node's podCIDR
to that node's address (its InternalIP), so pod-to-pod traffic crosses machines unencapsulated.

    node A (10.244.0.0/24 on its bridge)          node B (10.244.1.0/24 on its bridge)
      10.244.1.0/24 via <B's InternalIP>   <-->     10.244.0.0/24 via <A's InternalIP>

This needs the nodes on one L2 segment (the gateway must be directly reachable), like host-gw.
``RouteSync`` is the level-based core: from the Nodes it computes the wanted routes and makes the
table match -- add what is missing, replace what changed, delete what is stale. It only ever
touches routes marked with kray's routing protocol number (``proto 198``, "kray" in
``ip route`` output once named in /etc/iproute2/rt_protos), so routes of the admin, DHCP or
other daemons with the same destination are never deleted.

The table is a port: ``NetlinkRouteTable`` (pyroute2, the node's netns or a named one) and
``FakeRouteTable`` (in memory, with the kernel's rules that matter: a gateway must be on a
connected network, a delete must match).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

KRAY_ROUTE_PROTO = 198  # unassigned in rt_protos (bird=12, zebra=11, bgp=186..192 are taken)
MAIN_TABLE = 254


class RouteError(RuntimeError):
    pass


@dataclass(frozen=True)
class Changes:
    added: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.replaced or self.deleted or self.failed)


class RouteTable(Protocol):
    """One routing table as seen by kray: only routes carrying kray's protocol number."""

    def list(self) -> dict[str, str]:
        """kray's routes: destination CIDR -> gateway address."""
        ...

    def replace(self, dst: str, gateway: str) -> None:
        """Add or overwrite the route to ``dst`` (marked as kray's). Raises RouteError."""
        ...

    def delete(self, dst: str) -> None:
        """Remove kray's route to ``dst``; a missing one is not an error."""
        ...


# ---------------------------------------------------------------------------------------------
# the core


def node_routes(nodes: Iterable[Any], own_node: str) -> dict[str, str]:
    """Wanted routes from Nodes: every other node's podCIDRs via its InternalIP.

    Nodes without an address or podCIDR yet are skipped (they get routes once they have both);
    a node whose CIDR is the same family as its address is the only pairing host-gw can do.
    A node with this node's own address shares its host (several kray nodes on one machine):
    its podCIDR is on a local bridge, which the kernel routes already; a route via our own
    address would replace that connected route, so there is none.
    """
    nodes = list(nodes)
    own = next((n for n in nodes if n.name == own_node), None)
    own_address = own.status.address("InternalIP") if own is not None and own.status else None
    wanted: dict[str, str] = {}
    for node in nodes:
        if node.name == own_node or node.metadata.deletion_timestamp is not None:
            continue
        address = node.status.address("InternalIP") if node.status else None
        if not address or address == own_address:
            continue
        cidrs = list(node.spec.pod_cidrs or []) or ([node.spec.pod_cidr] if node.spec.pod_cidr else [])
        try:
            gw = ipaddress.ip_address(address)
        except ValueError:
            log.warning("node %s: bad InternalIP %r", node.name, address)
            continue
        for cidr in cidrs:
            try:
                net = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                log.warning("node %s: bad podCIDR %r", node.name, cidr)
                continue
            if net.version == gw.version:
                wanted[str(net)] = str(gw)
    return wanted


class RouteSync:
    """Makes a ``RouteTable`` hold exactly the routes the Nodes call for (idempotent)."""

    def __init__(self, table: RouteTable, node_name: str) -> None:
        self.table = table
        self.node_name = node_name

    def sync(self, nodes: Iterable[Any]) -> Changes:
        return self.apply(node_routes(nodes, self.node_name))

    def apply(self, wanted: dict[str, str]) -> Changes:
        have = self.table.list()
        added: list[str] = []
        replaced: list[str] = []
        deleted: list[str] = []
        failed: list[str] = []
        for dst, gw in sorted(wanted.items()):
            if have.get(dst) == gw:
                continue
            try:
                self.table.replace(dst, gw)
            except RouteError as exc:  # e.g. gateway not reachable yet: next pass retries
                log.warning("route %s via %s: %s", dst, gw, exc)
                failed.append(dst)
                continue
            (replaced if dst in have else added).append(dst)
        for dst in sorted(set(have) - set(wanted)):
            self.table.delete(dst)
            deleted.append(dst)
        changes = Changes(tuple(added), tuple(replaced), tuple(deleted), tuple(failed))
        if changes:
            log.info("routes on %s: %s", self.node_name, changes)
        return changes

    def clear(self) -> None:
        """Remove every kray route (the node leaves the cluster)."""
        self.apply({})


# ---------------------------------------------------------------------------------------------
# fake


@dataclass
class FakeRoute:
    gateway: str
    proto: int


@dataclass
class FakeRouteTable:
    """An in-memory table with the kernel rules RouteSync relies on.

    ``routes`` holds every route (kray's and others', by destination); ``connected`` are the
    networks directly attached, so a gateway outside them fails like ENETUNREACH does.
    """

    connected: list[str] = field(default_factory=lambda: ["0.0.0.0/0", "::/0"])
    proto: int = KRAY_ROUTE_PROTO
    routes: dict[str, FakeRoute] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def list(self) -> dict[str, str]:
        return {dst: r.gateway for dst, r in self.routes.items() if r.proto == self.proto}

    def replace(self, dst: str, gateway: str) -> None:
        gw = ipaddress.ip_address(gateway)
        if not any(gw in ipaddress.ip_network(c) for c in self.connected):
            raise RouteError(f"gateway {gateway} is not on a connected network (ENETUNREACH)")
        self.calls.append(("replace", dst))
        self.routes[str(ipaddress.ip_network(dst))] = FakeRoute(gateway, self.proto)

    def delete(self, dst: str) -> None:
        key = str(ipaddress.ip_network(dst))
        route = self.routes.get(key)
        if route is not None and route.proto == self.proto:  # a delete with proto matches only ours
            self.calls.append(("delete", dst))
            del self.routes[key]


# ---------------------------------------------------------------------------------------------
# netlink


class NetlinkRouteTable:
    """The kernel's table through pyroute2, in the current netns or a named one (``netns``)."""

    def __init__(self, netns: str | None = None, proto: int = KRAY_ROUTE_PROTO, table: int = MAIN_TABLE) -> None:
        self.netns, self.proto, self.table = netns, proto, table

    @contextlib.contextmanager
    def _ip(self) -> Iterator[Any]:
        from kray.runtime import netns

        with netns.iproute(self.netns) as ip:
            yield ip

    def list(self) -> dict[str, str]:
        out: dict[str, str] = {}
        with self._ip() as ip:
            for family in (socket.AF_INET, socket.AF_INET6):
                for r in ip.route("dump", family=family):
                    if r.get("proto") != self.proto or (r.get_attr("RTA_TABLE") or r.get("table")) != self.table:
                        continue
                    dst, gw = r.get_attr("RTA_DST"), r.get_attr("RTA_GATEWAY")
                    if dst and gw:
                        out[f"{dst}/{r.get('dst_len')}"] = gw
        return out

    def replace(self, dst: str, gateway: str) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            with self._ip() as ip:
                ip.route("replace", dst=dst, gateway=gateway, proto=self.proto, table=self.table)
        except NetlinkError as exc:
            raise RouteError(f"route {dst} via {gateway}: {exc}") from exc

    def delete(self, dst: str) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        family = socket.AF_INET6 if ":" in dst else socket.AF_INET
        with contextlib.suppress(NetlinkError), self._ip() as ip:  # ESRCH: gone already
            ip.route("del", dst=dst, proto=self.proto, table=self.table, family=family)
