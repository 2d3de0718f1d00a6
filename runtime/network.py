"""Pod sandbox networking: a named network namespace per pod on a node bridge (CNI "bridge" +
"host-local" IPAM, done in-process with pyroute2).

    node:   <bridge> (gateway = first address of the podCIDR)
              |-- <veth host end>  ==  eth0 in /var/run/netns/<prefix><pod>  (pod IP, default route)

Every name derives from `NetworkConfig.prefix` so several networks (tests, other nodes on the
same machine) never collide and each can clean up exactly what it made. IPAM allocations are
kept in a JSON file under `state_dir`, so they survive a restart and are released on teardown.
A hostNetwork pod gets no namespace: its containers stay in the node's.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import ipaddress
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from kray.runtime import netns

NETNS_DIR = Path("/var/run/netns")
IFNAMSIZ = 15


class NetworkError(RuntimeError):
    pass


@dataclass
class NetworkConfig:
    subnet: str  # the node's podCIDR, e.g. "10.88.0.0/24"
    state_dir: Path
    prefix: str = "kray"  # netns "<prefix><pod>", veths "<prefix>" + hash
    bridge: str = "kray0"
    mtu: int = 1500

    def __post_init__(self) -> None:
        if len(self.bridge) > IFNAMSIZ:
            raise NetworkError(f"bridge name {self.bridge!r} is longer than {IFNAMSIZ}")
        self.state_dir = Path(self.state_dir)


@dataclass
class Sandbox:
    pod_id: str
    netns: str | None  # name under /var/run/netns; None: host network
    netns_path: str | None
    ip: str | None
    prefixlen: int
    gateway: str | None
    host_veth: str | None


class HostLocalIpam:
    """Addresses of one subnet, handed out first-free; the gateway (first host) is reserved."""

    def __init__(self, subnet: str, state_file: Path) -> None:
        self.net = ipaddress.ip_network(subnet)
        self.gateway = str(next(self.net.hosts()))
        self.state_file = Path(state_file)
        self.state_file.parent.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, str]]:
        """The owner -> ip table under an exclusive lock (other processes on the node share it)."""
        with open(self.state_file.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data: dict[str, Any] = {}
            if self.state_file.exists():
                data = json.loads(self.state_file.read_text() or "{}")
            table: dict[str, str] = dict(data.get("allocations", {}))
            before = dict(table)
            yield table
            if table != before:
                tmp = self.state_file.with_suffix(".tmp")
                tmp.write_text(json.dumps({"subnet": str(self.net), "allocations": table}, indent=1))
                os.replace(tmp, self.state_file)

    def allocate(self, owner: str) -> str:
        """The address of `owner`, allocating one if it has none (idempotent)."""
        with self._locked() as table:
            if owner in table:
                return table[owner]
            used = set(table.values()) | {self.gateway}
            for host in self.net.hosts():
                ip = str(host)
                if ip not in used:
                    table[owner] = ip
                    return ip
        raise NetworkError(f"subnet {self.net} is full")

    def release(self, owner: str) -> str | None:
        with self._locked() as table:
            return table.pop(owner, None)

    def allocations(self) -> dict[str, str]:
        with self._locked() as table:
            return dict(table)


class BridgeNetwork:
    def __init__(self, cfg: NetworkConfig, ipam: HostLocalIpam | None = None) -> None:
        self.cfg = cfg
        self.ipam = ipam or HostLocalIpam(cfg.subnet, cfg.state_dir / f"ipam-{cfg.bridge}.json")
        self.prefixlen = ipaddress.ip_network(cfg.subnet).prefixlen
        self._bridge_ready = 0  # ifindex of the bridge this object has set up

    # names ------------------------------------------------------------------------------------
    def netns_name(self, pod_id: str) -> str:
        return f"{self.cfg.prefix}{pod_id}"

    def veth_name(self, pod_id: str) -> str:
        h = hashlib.sha1(pod_id.encode()).hexdigest()
        head = self.cfg.prefix[: IFNAMSIZ - 8]
        return (head + h)[:IFNAMSIZ]

    # bridge -----------------------------------------------------------------------------------
    def ensure_bridge(self) -> int:
        """Create the bridge with the gateway address if missing; returns its ifindex."""
        idx = _ifindex(self.cfg.bridge)
        if idx is not None and idx == self._bridge_ready:
            return idx  # set up by us before and still there: no netlink round trips per pod
        with IPRoute() as ip:
            if idx is None:
                with contextlib.suppress(NetlinkError):  # lost a race with another creator
                    ip.link("add", ifname=self.cfg.bridge, kind="bridge")
                idx = _ifindex(self.cfg.bridge)
                if idx is None:
                    raise NetworkError(f"bridge {self.cfg.bridge} vanished while being created")
            have = {a.get_attr("IFA_ADDRESS") for a in ip.get_addr(index=idx)}
            if self.ipam.gateway not in have:
                ip.addr("add", index=idx, address=self.ipam.gateway, prefixlen=self.prefixlen)
            ip.link("set", index=idx, state="up", mtu=self.cfg.mtu)
        enable_forwarding(self.cfg.bridge)  # pods reach other nodes' pods and Service backends
        self._bridge_ready = idx
        return idx

    def delete_bridge(self) -> None:
        with IPRoute() as ip:
            for idx in ip.link_lookup(ifname=self.cfg.bridge):
                ip.link("del", index=idx)

    # sandboxes --------------------------------------------------------------------------------
    def setup(self, pod_id: str) -> Sandbox:
        """Namespace, veth pair (the pod end is its eth0), address, lo up, default route."""
        br = self.ensure_bridge()
        ns = self.netns_name(pod_id)
        host_if = self.veth_name(pod_id)
        peer = (host_if[:-1] + "p") if host_if[-1] != "p" else (host_if[:-1] + "q")
        addr = self.ipam.allocate(pod_id)
        try:
            if not (NETNS_DIR / ns).exists():
                netns.create(ns)
            # Interfaces by name through if_nametoindex / RTM_GETLINK of one name: pyroute2's
            # link_lookup dumps and decodes every link of the node, O(pods) per pod start.
            with IPRoute() as ip:
                if _ifindex(host_if) is None:
                    # The pod end is born in the pod's netns as eth0: moving it there afterwards
                    # waits out RCU grace periods under the kernel's global rtnl lock (~17 ms per
                    # pod, every pod start of the node in a queue behind it).
                    fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
                    try:
                        ip.link("add", ifname=host_if, kind="veth", peer={"ifname": "eth0", "net_ns_fd": fd})
                    finally:
                        os.close(fd)
                hidx = _ifindex(host_if)
                ip.link("set", index=hidx, master=br, mtu=self.cfg.mtu, state="up")
            with netns.iproute(ns) as nsr:
                nsr.link("set", index=_link_index(nsr, "lo"), state="up")
                found = _link_index(nsr, peer)  # a pod end moved in by an older kray
                if found is not None:
                    nsr.link("set", index=found, ifname="eth0")
                eth = _link_index(nsr, "eth0")
                have = {a.get_attr("IFA_ADDRESS") for a in nsr.get_addr(index=eth)}
                if addr not in have:
                    nsr.addr("add", index=eth, address=addr, prefixlen=self.prefixlen)
                nsr.link("set", index=eth, state="up", mtu=self.cfg.mtu)
                with contextlib.suppress(NetlinkError):  # already there on a repeated setup
                    nsr.route("add", dst="0.0.0.0/0", gateway=self.ipam.gateway)
        except Exception:
            self.teardown(pod_id)
            raise
        return Sandbox(pod_id, ns, str(NETNS_DIR / ns), addr, self.prefixlen, self.ipam.gateway, host_if)

    def teardown(self, pod_id: str) -> None:
        """Remove veth, namespace and the address; safe to repeat, safe on half-made sandboxes."""
        host_if = self.veth_name(pod_id)
        idx = _ifindex(host_if)
        if idx is not None:
            with IPRoute() as ip, contextlib.suppress(NetlinkError):
                ip.link("del", index=idx)  # takes the pod end with it
        ns = self.netns_name(pod_id)
        if (NETNS_DIR / ns).exists():
            with contextlib.suppress(OSError):
                netns.remove(ns)
        self.ipam.release(pod_id)

    def status(self, pod_id: str) -> Sandbox | None:
        ns = self.netns_name(pod_id)
        addr = self.ipam.allocations().get(pod_id)
        if addr is None or not (NETNS_DIR / ns).exists():
            return None
        return Sandbox(pod_id, ns, str(NETNS_DIR / ns), addr, self.prefixlen, self.ipam.gateway, self.veth_name(pod_id))

    def sandboxes(self) -> list[str]:
        """Pod ids that have an address in this network (for cleanup after a restart)."""
        return sorted(self.ipam.allocations())


def enable_forwarding(ifname: str) -> None:
    """Route what pods send through the bridge (to other nodes' pods, to Service backends after
    DNAT), as the CNI bridge plugin does for its gateway. IPv4 forwarding is decided by the
    interface a packet comes in on, so this enables it for the bridge only: the machine's other
    interfaces keep their own setting."""
    path = Path(f"/proc/sys/net/ipv4/conf/{ifname}/forwarding")
    try:
        if path.read_text().strip() != "1":
            path.write_text("1")
    except OSError as exc:
        raise NetworkError(f"cannot enable forwarding on {ifname}: {exc}") from exc


def _ifindex(name: str) -> int | None:
    """The index of a link of this thread's network namespace (one ioctl, no netlink dump)."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def _link_index(ip: IPRoute, name: str) -> Any:
    """The index of `name` in the namespace of `ip` (RTM_GETLINK of that one name), or None."""
    try:
        return ip.link("get", ifname=name)[0]["index"]
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise


def host_sandbox(pod_id: str) -> Sandbox:
    """hostNetwork: no namespace, no address of its own (the pod IP is the node's)."""
    return Sandbox(pod_id, None, None, None, 0, None, None)
