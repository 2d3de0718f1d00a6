"""Multi-node kray end to end: three Ray nodes on this machine, each a kray node with its own
pod bridge and podCIDR, deployed by the node agent (``mn_cluster_driver.py`` runs the cluster in
a process of its own and checks, step by step):

- three Ready Nodes with distinct podCIDRs; a Deployment of 6 spreads over them;
- a pod on node A fetches from a pod on node B by pod IP and through the Service's ClusterIP;
  it has the Service's env vars, and ``web.<ns>.svc`` resolves through the node's DNS server
  (its resolv.conf points there);
- scaling to 2 changes the Endpoints and the traffic follows; back to 6;
- ``cluster.remove_node``: the Node goes NotReady, its pods are replaced on A and B, a client
  loop in a pod counts failures: bounded, then none; the agent deletes the Node after its grace.

Afterwards no bridge, veth, netns, route or nftables table of the run is left.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.leftovers import session_prefix

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.etcd, pytest.mark.ray]
DRIVER = Path(__file__).with_name("mn_cluster_driver.py")


def sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout


def in_cidr(route: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_network(route.split()[0], strict=False).subnet_of(ipaddress.ip_network(cidr))  # type: ignore[arg-type]
    except ValueError:
        return False  # "default" and the like


def leftovers(run_id: str, cluster_cidr: str) -> dict[str, list[str]]:
    """What of this run the kernel still has: links, netns, nft tables, routes."""
    prefix = f"km{run_id}"
    links = [line.split()[0].split("@")[0] for line in sh("ip", "-br", "link").splitlines() if line.strip()]
    return {
        "links": [name for name in links if name.startswith(prefix)],
        "netns": [line.split()[0] for line in sh("ip", "netns", "list").splitlines() if line.startswith(prefix)],
        "nft": re.findall(rf"table \S+ (kray-mn-{run_id}-\S+)", sh("nft", "list", "tables")),
        "routes": [r for r in sh("ip", "route").splitlines() if in_cidr(r, cluster_cidr)],
    }


def force_clean(run_id: str, workdir: Path, found: dict[str, list[str]]) -> None:
    """The safety net when the driver died half-way: only names and PIDs of this run."""
    for pid_file in (workdir / "nodes").glob("*/runtime.pid"):
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
    for ns in found["netns"]:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    for link in found["links"]:
        subprocess.run(["ip", "link", "del", link], capture_output=True)
    for table in found["nft"]:
        subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True)
    for route in found["routes"]:
        subprocess.run(["ip", "route", "del", route.split()[0]], capture_output=True)


def test_three_nodes_services_dns_scaling_and_node_loss(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: containers, bridges, nftables")
    for tool in ("busybox", "nft", "ip"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (scripts/install_system.sh)")
    run_id = session_prefix("km", 2)[2:]  # net prefixes km<id>a..c: the session's leftover check knows them
    third = 4 * secrets.randbelow(64)
    cluster_cidr = f"10.252.{third}.0/22"  # room for four /24 node blocks
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "KRAY_SERVER", "KRAY_TOKEN")}
    proc = subprocess.Popen(
        [sys.executable, str(DRIVER), str(tmp_path), run_id, cluster_cidr],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=420)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    print(out)
    found = leftovers(run_id, cluster_cidr)
    if any(found.values()):
        force_clean(run_id, tmp_path, found)
    assert proc.returncode == 0, out[-6000:]
    measured = json.loads(out.strip().splitlines()[-1])
    assert measured["loop_requests"] > 0
    assert not any(found.values()), found
