"""Pod sandboxes on a test bridge: shared netns within a pod, pod-to-pod by IP (root only)."""

from __future__ import annotations

import os
import subprocess

import pytest

from kray.runtime.network import NETNS_DIR, BridgeNetwork, HostLocalIpam

pytestmark = pytest.mark.root


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def test_sandbox_setup_and_teardown(bridge: BridgeNetwork):
    sb = bridge.setup("pa")
    assert sb.netns and os.path.exists(sb.netns_path)
    out = subprocess.run(["ip", "netns", "exec", sb.netns, "ip", "-o", "addr"], capture_output=True, text=True).stdout
    assert f"inet {sb.ip}/24" in out and "eth0" in out
    routes = subprocess.run(["ip", "netns", "exec", sb.netns, "ip", "route"], capture_output=True, text=True).stdout
    assert f"default via {sb.gateway} dev eth0" in routes
    assert bridge.setup("pa").ip == sb.ip  # repeatable
    # The allocation survives a new allocator over the same state dir ("kubelet restart").
    again = HostLocalIpam(bridge.cfg.subnet, bridge.ipam.state_file)
    assert again.allocations() == {"pa": sb.ip}
    assert bridge.status("pa") is not None
    bridge.teardown("pa")
    assert not (NETNS_DIR / sb.netns).exists()
    assert not _link_exists(sb.host_veth or "")
    assert bridge.ipam.allocations() == {}
    bridge.teardown("pa")  # idempotent


def test_two_containers_share_pod_netns(crun_node, bridge: BridgeNetwork):
    sb = bridge.setup("pod1")
    joins = {"network": sb.netns_path or ""}
    server = crun_node.config("srv", ["nc", "-l", "-p", "8080"], join_namespaces=joins)
    crun_node.containers.create("srv", server, crun_node.base / "logs" / "srv.log")
    crun_node.containers.start("srv")
    client = crun_node.config(
        "cli",
        [
            "sh",
            "-c",
            "for i in $(seq 50); do echo hello-from-cli | nc 127.0.0.1 8080 && exit 0; sleep 0.1; done; exit 1",
        ],
        join_namespaces=joins,
    )
    st = crun_node.run("cli", client)
    assert st.exit_code == 0, crun_node.log("cli")
    srv = crun_node.containers.wait("srv", 10)
    assert srv.state == "exited", srv
    assert "stdout F hello-from-cli" in crun_node.log("srv")


def test_two_sandboxes_reach_each_other(crun_node, bridge: BridgeNetwork):
    a = bridge.setup("pa")
    b = bridge.setup("pb")
    assert a.ip != b.ip
    cfg = crun_node.config(
        "pinger", ["ping", "-c", "1", "-W", "3", b.ip or ""], join_namespaces={"network": a.netns_path or ""}
    )
    st = crun_node.run("pinger", cfg)
    assert st.exit_code == 0, crun_node.log("pinger")
    assert "1 packets received" in crun_node.log("pinger")
