"""Run a node's CRI runtime service:

    python -m kray.runtime --socket /run/kray/<node>/cri.sock --state-dir /var/lib/kray/<node> \
        --subnet 10.88.0.0/24 [--runtime crun|runc] [--bridge kray0] [--prefix kray] [--cgroup-root kray]

Without --subnet the node serves host-network pods only. SIGTERM/SIGINT stop the service; the
containers keep running (their shims are detached) and a restarted service re-adopts them.
"""

from __future__ import annotations

import os

# pyroute2 enters a pod's netns through a forked helper process. gRPC's fork handlers, with server
# threads busy, leave that child crashing (SIGSEGV); without them the child only runs netlink code.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from kray.runtime.cri.server import serve
from kray.runtime.images import ImageStore
from kray.runtime.network import BridgeNetwork, NetworkConfig
from kray.runtime.ocirt import detect_runtime, make_runtime
from kray.runtime.procrt import NO_ISOLATION_WARNING
from kray.runtime.registry import RegistryClient, parse_mirrors
from kray.runtime.service import NodeRuntime
from kray.runtime.shimfork import ShimLauncher
from kray.runtime.volumes import VolumeManager

log = logging.getLogger("kray.runtime")


def build_node(args: argparse.Namespace) -> NodeRuntime:
    state = Path(args.state_dir)
    oci_root = state / "oci"
    runtime = make_runtime(args.runtime, oci_root) if args.runtime else detect_runtime(oci_root)
    network = None
    if not runtime.isolated:
        # Loud on purpose: whoever reads the node's log must not mistake these for containers.
        log.warning("WARNING: %s", NO_ISOLATION_WARNING)
        print(f"WARNING: {NO_ISOLATION_WARNING}", file=sys.stderr, flush=True)
        if args.subnet:
            log.warning("--subnet %s ignored: process containers use the host network", args.subnet)
    elif args.subnet:
        network = BridgeNetwork(
            NetworkConfig(subnet=args.subnet, state_dir=state / "net", prefix=args.prefix, bridge=args.bridge)
        )
    images = ImageStore(Path(args.image_dir) if args.image_dir else state / "images")
    volumes = VolumeManager(state / "pods")
    launcher = ShimLauncher(state / "shimfork.sock")
    # Registries spoken to over plain HTTP besides loopback, and a private CA: flags, or the
    # environment `ray start`/`kray up` ran in (every node's runtime inherits it).
    insecure = args.insecure_registry or [h for h in os.environ.get("KRAY_INSECURE_REGISTRIES", "").split(",") if h]
    mirrors = parse_mirrors(";".join(args.registry_mirror) or os.environ.get("KRAY_REGISTRY_MIRRORS", ""))
    ca_file = args.registry_ca_file or os.environ.get("KRAY_REGISTRY_CA_FILE")
    registry = RegistryClient(insecure, ca_file=ca_file, mirrors=mirrors)
    return NodeRuntime(
        runtime,
        images,
        network,
        state,
        volumes=volumes,
        cgroup_root=args.cgroup_root,
        shim_launcher=launcher,
        registry=registry,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kray.runtime", description="kray node CRI runtime service")
    ap.add_argument("--socket", required=True, help="unix socket to serve CRI v1 on")
    ap.add_argument("--state-dir", required=True, help="sandboxes, containers, logs, images live here")
    ap.add_argument("--subnet", default="", help="the node's podCIDR (pod network); empty: host network only")
    ap.add_argument(
        "--runtime",
        default="",
        help="crun or runc (default: the first installed), or process: plain host processes, NO isolation,"
        " for machines where kray is not root",
    )
    ap.add_argument("--bridge", default="kray0")
    ap.add_argument("--prefix", default="kray", help="names of netns/veths start with this")
    ap.add_argument("--cgroup-root", default="kray")
    ap.add_argument("--image-dir", default="", help="image store (default: <state-dir>/images)")
    ap.add_argument(
        "--insecure-registry", action="append", default=[], help="HOST[:PORT] to pull from over plain HTTP (repeat)"
    )
    ap.add_argument(
        "--registry-mirror",
        action="append",
        default=[],
        help="REGISTRY=URL[,URL...]: mirrors to pull REGISTRY's images from first (repeat; e.g. docker.io=http://cache:5000)",
    )
    ap.add_argument("--registry-ca-file", default="", help="PEM CA bundle for registries (default: the system's)")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    node = build_node(args)
    server = serve(node, args.socket)
    logging.getLogger("kray.runtime").info(
        "serving CRI on unix:%s (runtime %s, %d sandboxes adopted)",
        args.socket,
        node.runtime.name,
        len(node.sandboxes()),
    )
    # Say so on stdout too: a parent process waits for this line before it connects.
    print(f"ready {args.socket}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop(grace=2.0).wait()
    node.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
