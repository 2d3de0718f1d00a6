"""The proxy with the real nftables: a client netns reaches pods through a ClusterIP (root).

Three test "pods" are network namespaces on a test bridge (runtime/network.py); two run a
busybox TCP server answering their name. The proxy programs its table inside the client's own
namespace (the "node" here: its ``output`` hook is what traffic from the node itself hits), so
nothing on the host's rule set is touched. Afterwards no table, netns, veth or bridge remains.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.framework import StoreListWatcher
from kray.actors.proxy import NftCli, ProxyCore
from kray.actors.store import MemoryKV, ObjectStore
from kray.crds.core import Endpoints, Service
from kray.crds.registry import REGISTRY
from kray.runtime.network import NETNS_DIR, BridgeNetwork, NetworkConfig
from tests.leftovers import session_prefix

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not (shutil.which("nft") and shutil.which("busybox")), reason="needs nft and busybox"),
]

NS = "default"
CLUSTER_IP = "10.97.123.45"


class Net:
    def __init__(self, base: Path) -> None:
        self.prefix = session_prefix("ksv")  # checked for leftovers at the end of the session
        subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}.0/24"
        self.net = BridgeNetwork(
            NetworkConfig(subnet=subnet, state_dir=base, prefix=self.prefix, bridge=f"{self.prefix}br")
        )
        self.servers: list[subprocess.Popen[bytes]] = []
        self.ips: dict[str, str] = {}

    def pod(self, name: str, serve: bool) -> str:
        sb = self.net.setup(name)
        assert sb.ip and sb.netns
        self.ips[name] = sb.ip
        if serve:  # a persistent server that answers every connection with the pod's name
            server = ["busybox", "nc", "-ll", "-p", "8080", "-e", "busybox", "echo", name]
            argv = ["ip", "netns", "exec", sb.netns, *server]
            self.servers.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return sb.netns

    def ask(self, ns: str, ip: str, port: int) -> str:
        argv = ["ip", "netns", "exec", ns, "busybox", "nc", "-w", "2", ip, str(port)]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
        return out.stdout.strip()

    def cleanup(self) -> None:
        for p in self.servers:
            p.kill()
            p.wait(5)
        for pod in self.net.sandboxes():
            self.net.teardown(pod)
        self.net.delete_bridge()

    def leftovers(self) -> list[str]:
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        found = [line.split(":")[1].strip() for line in links.splitlines() if self.prefix in line]
        found += [p.name for p in NETNS_DIR.glob(f"{self.prefix}*")] if NETNS_DIR.exists() else []
        return found


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:  # sync: pyroute2's sync API runs its own loop
    n = Net(tmp_path)
    try:
        yield n
    finally:
        n.cleanup()
        assert n.leftovers() == []


def endpoints(*ips: str) -> Endpoints:
    subset: dict[str, Any] = {"addresses": [{"ip": ip} for ip in ips], "ports": [{"name": "http", "port": 8080}]}
    return Endpoints.model_validate({"metadata": {"name": "web", "namespace": NS}, "subsets": [subset]})


async def wait_answers(net: Net, client: str, want: set[str], timeout: float = 3.0, tries: int = 24) -> float:
    """Seconds until ``tries`` connections to the ClusterIP are answered by exactly ``want``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        seen = {await asyncio.to_thread(net.ask, client, CLUSTER_IP, 80) for _ in range(tries)}
        if seen == want:
            return loop.time() - start
        assert loop.time() - start < timeout, f"answers {seen}, wanted {want}"
        await asyncio.sleep(0.05)


async def test_clusterip_reaches_endpoints_and_follows_changes(net: Net) -> None:
    for name in ("pa", "pb"):
        await asyncio.to_thread(net.pod, name, True)
    client = await asyncio.to_thread(net.pod, "cl", False)
    kv = MemoryKV()
    store = ObjectStore(kv, REGISTRY)
    svc = Service.model_validate(
        {
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"clusterIP": CLUSTER_IP, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }
    )
    await store.create(REGISTRY.for_model(Service), svc)
    ep_info = REGISTRY.for_model(Endpoints)
    current = await store.create(ep_info, endpoints(net.ips["pa"], net.ips["pb"]))
    nft = NftCli(netns=client)
    table = f"kray-{net.prefix}"
    proxy = ProxyCore(StoreListWatcher(store), nft, "test", table=table)
    try:
        assert await proxy.start(5)
        assert ("ip", table) in await nft.tables()
        # Both endpoints answer (random spreading; 24 tries miss one with p = 2^-23).
        await wait_answers(net, client, {"pa", "pb"})

        # Endpoints change: traffic follows within a second.
        update = endpoints(net.ips["pb"])
        update.metadata.resource_version = current.metadata.resource_version
        current = await store.update(ep_info, update)
        took = await wait_answers(net, client, {"pb"}, tries=12)
        assert took < 1.0
        listing = await nft.list_table("ip", table)
        assert f"dnat to {net.ips['pb']}:8080" in listing and net.ips["pa"] not in listing

        # No endpoints: connections are refused at once (nc would otherwise wait 2 s each).
        update = endpoints()
        update.subsets = None
        update.metadata.resource_version = current.metadata.resource_version
        await store.update(ep_info, update)
        took = await wait_answers(net, client, {""}, tries=4)
        assert took < 1.5
    finally:
        await proxy.stop()
        await kv.close()
    assert ("ip", table) not in await nft.tables()
