"""RouteSync on the in-memory route table: routes from Nodes, idempotent, only kray's touched."""

from __future__ import annotations

import kray.crds  # noqa: F401
from kray.crds import Node, ObjectMeta
from kray.crds.core.node import NodeAddress, NodeStatus
from kray.runtime.routes import FakeRoute, FakeRouteTable, RouteSync, node_routes


def node(name: str, cidr: str | None, ip: str | None) -> Node:
    n = Node(metadata=ObjectMeta(name=name))
    if cidr:
        n.spec.pod_cidr, n.spec.pod_cidrs = cidr, [cidr]
    if ip:
        n.status = NodeStatus(addresses=[NodeAddress(type="InternalIP", address=ip)])
    return n


def test_wanted_routes_skip_self_and_incomplete_nodes() -> None:
    nodes = [
        node("a", "10.244.0.0/24", "192.168.1.1"),
        node("b", "10.244.1.0/24", "192.168.1.2"),
        node("c", None, "192.168.1.3"),  # no podCIDR yet
        node("d", "10.244.3.0/24", None),  # no address yet
        node("e", "fd00:1::/64", "192.168.1.5"),  # family mismatch: host-gw cannot
    ]
    assert node_routes(nodes, "a") == {"10.244.1.0/24": "192.168.1.2"}


def test_nodes_sharing_this_host_get_no_route() -> None:
    """Several kray nodes on one machine (one address): their bridges are local, no gateway."""
    nodes = [
        node("a", "10.244.0.0/24", "127.0.0.1"),
        node("b", "10.244.1.0/24", "127.0.0.1"),
        node("c", "10.244.2.0/24", "192.168.1.3"),
    ]
    assert node_routes(nodes, "a") == {"10.244.2.0/24": "192.168.1.3"}


def test_sync_adds_replaces_deletes_and_is_idempotent() -> None:
    table = FakeRouteTable(connected=["192.168.1.0/24"])
    # Someone else's route (static, proto 4) to a destination kray will never want.
    table.routes["172.16.0.0/16"] = FakeRoute("192.168.1.254", 4)
    sync = RouteSync(table, "a")
    nodes = [node("a", "10.244.0.0/24", "192.168.1.1"), node("b", "10.244.1.0/24", "192.168.1.2")]
    nodes.append(node("c", "10.244.2.0/24", "192.168.1.3"))
    changes = sync.sync(nodes)
    assert changes.added == ("10.244.1.0/24", "10.244.2.0/24") and not changes.deleted
    assert table.list() == {"10.244.1.0/24": "192.168.1.2", "10.244.2.0/24": "192.168.1.3"}
    calls = len(table.calls)
    assert not sync.sync(nodes)  # nothing to do
    assert len(table.calls) == calls
    # c moves to another address, b leaves.
    nodes = [nodes[0], node("c", "10.244.2.0/24", "192.168.1.33")]
    changes = sync.sync(nodes)
    assert changes.replaced == ("10.244.2.0/24",) and changes.deleted == ("10.244.1.0/24",)
    assert table.list() == {"10.244.2.0/24": "192.168.1.33"}
    assert table.routes["172.16.0.0/16"].proto == 4  # never touched
    sync.clear()
    assert table.list() == {} and "172.16.0.0/16" in table.routes


def test_unreachable_gateway_fails_that_route_only_and_retries() -> None:
    table = FakeRouteTable(connected=["192.168.1.0/24"])
    sync = RouteSync(table, "a")
    nodes = [node("b", "10.244.1.0/24", "192.168.1.2"), node("x", "10.244.9.0/24", "10.0.0.9")]
    changes = sync.sync(nodes)
    assert changes.added == ("10.244.1.0/24",) and changes.failed == ("10.244.9.0/24",)
    table.connected.append("10.0.0.0/24")  # the link comes up
    assert sync.sync(nodes).added == ("10.244.9.0/24",)
