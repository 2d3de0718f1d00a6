"""Two "hosts" as network namespaces on one veth link, each with a pod bridge and a pod from
``BridgeNetwork``; ``RouteSync`` programs host-gw routes in each host from two Node objects, and
a pod on host A reaches a pod on host B by its pod IP (ping and TCP). Root only; every name is
derived from a random prefix and removed in ``finally``."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import kray.crds  # noqa: F401
from kray.crds import Node, ObjectMeta
from kray.crds.core.node import NodeAddress, NodeStatus
from kray.runtime.network import NETNS_DIR
from kray.runtime.routes import KRAY_ROUTE_PROTO, NetlinkRouteTable, RouteSync
from tests.leftovers import session_prefix

pytestmark = pytest.mark.root

# Runs inside a host netns (setns only: the mount namespace stays shared, so the pod netns
# BridgeNetwork bind-mounts under /var/run/netns are visible to everyone).
_HOST_HELPER = """
import json, sys
from pyroute2 import netns
netns.setns(sys.argv[1], flags=0)
with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
    f.write("1")
from kray.runtime.network import BridgeNetwork, NetworkConfig
cfg = NetworkConfig(subnet=sys.argv[2], state_dir=sys.argv[3], prefix=sys.argv[4], bridge=sys.argv[5])
sb = BridgeNetwork(cfg).setup(sys.argv[6])
print(json.dumps({"ip": sb.ip, "netns": sb.netns}))
"""


def sh(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


def node(name: str, cidr: str, ip: str) -> Node:
    n = Node(metadata=ObjectMeta(name=name))
    n.spec.pod_cidr, n.spec.pod_cidrs = cidr, [cidr]
    n.status = NodeStatus(addresses=[NodeAddress(type="InternalIP", address=ip)])
    return n


@pytest.fixture
def prefix() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not shutil.which("busybox"):
        pytest.skip("busybox not installed (scripts/install_system.sh)")
    p = session_prefix("kmn", 2)  # checked for leftovers at the end of the session
    try:
        yield p
    finally:
        # Deleting a netns takes its bridges and veths with it (a veth dies with either end).
        for ns in sorted(os.listdir(NETNS_DIR)) if NETNS_DIR.exists() else []:
            if ns.startswith(p):
                sh("ip", "netns", "del", ns, check=False)


def test_pod_on_host_a_reaches_pod_on_host_b(prefix: str, tmp_path: Path) -> None:
    ha, hb = f"{prefix}ha", f"{prefix}hb"
    octet = secrets.randbelow(200) + 20
    link_a, link_b = f"192.168.{octet}.1", f"192.168.{octet}.2"
    cidr_a, cidr_b = f"10.{octet}.1.0/24", f"10.{octet}.2.0/24"
    for ns in (ha, hb):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "link", "add", f"{prefix}va", "netns", ha, "type", "veth", "peer", "name", f"{prefix}vb", "netns", hb)
    for ns, dev, addr in ((ha, f"{prefix}va", link_a), (hb, f"{prefix}vb", link_b)):
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")

    pods: dict[str, dict[str, str]] = {}
    for host, cidr, tag in ((ha, cidr_a, "a"), (hb, cidr_b, "b")):
        out = sh(
            sys.executable, "-c", _HOST_HELPER, host, cidr, str(tmp_path / tag), f"{prefix}p{tag}", f"{prefix}br", "pod"
        )
        pods[tag] = json.loads(out.stdout.strip().splitlines()[-1])

    # Before routes: host A has no idea where 10.x.2.0/24 is.
    assert (
        sh(
            "ip", "netns", "exec", pods["a"]["netns"], "busybox", "ping", "-c1", "-W1", pods["b"]["ip"], check=False
        ).returncode
        != 0
    )

    nodes = [node("node-a", cidr_a, link_a), node("node-b", cidr_b, link_b)]
    for host, name in ((ha, "node-a"), (hb, "node-b")):
        changes = RouteSync(NetlinkRouteTable(netns=host), name).sync(nodes)
        assert len(changes.added) == 1 and not changes.failed, changes
        assert not RouteSync(NetlinkRouteTable(netns=host), name).sync(nodes)  # idempotent
    routes = sh("ip", "-n", ha, "route").stdout
    assert f"{cidr_b} via {link_b}" in routes and f"proto {KRAY_ROUTE_PROTO}" in routes

    ping = sh("ip", "netns", "exec", pods["a"]["netns"], "busybox", "ping", "-c2", "-W3", pods["b"]["ip"], check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr

    # TCP, pod B serving, pod A connecting to B's pod IP.
    server = subprocess.Popen(
        ["ip", "netns", "exec", pods["b"]["netns"], "busybox", "nc", "-l", "-p", "8080"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        connect = f"echo hello-b | busybox nc {pods['b']['ip']} 8080"
        script = f"for i in $(seq 50); do {connect} && exit 0; sleep 0.1; done; exit 1"
        client = sh("ip", "netns", "exec", pods["a"]["netns"], "sh", "-c", script, check=False)
        assert client.returncode == 0, client.stderr
        out, _ = server.communicate(timeout=10)
        assert "hello-b" in out
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    # Foreign routes survive, stale kray routes go.
    sh("ip", "-n", ha, "route", "add", "172.30.0.0/16", "via", link_b)  # proto boot: not ours
    assert RouteSync(NetlinkRouteTable(netns=ha), "node-a").sync(nodes[:1]).deleted == (cidr_b,)
    routes = sh("ip", "-n", ha, "route").stdout
    assert cidr_b not in routes and "172.30.0.0/16" in routes
