"""The node agent: Ray's membership -> Nodes, per-node actors, and autoscaler requests.

Level-based, one ``step()`` at a time:

* every alive Ray node gets a Node object (named stably, labelled from the Ray node), and once
  the node IPAM controller has given it a podCIDR, a kubelet and a proxy actor -- plus a GPU
  device plugin actor where Ray counts GPUs;
* a Ray node that is gone loses its actors; its Node goes NotReady on its own (the node
  lifecycle controller sees the lease stop) and is deleted after ``grace_period``, unless the
  node comes back under the same name first. Only Nodes this agent made (they carry the
  ``kray.io/ray-node-id`` label) are ever deleted;
* Pods the scheduler could not place become a ``request_resources`` bundle list for Ray's
  autoscaler. kray's pods use no Ray resources, so Ray sees every node as empty: the request
  therefore also lists the pods already bound, so the autoscaler's bin-packing sees the load.
  It is cleared when nothing is pending, and sent only on change, at most every
  ``autoscale_interval`` seconds.

After a restart the agent rebuilds everything from Ray and the API: deploying is idempotent
(named actors, ``get_if_exists``), and a departed node gets a full grace period again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from decimal import Decimal

from kray.actors.framework import Clock
from kray.client.errors import Conflict, NotFound
from kray.crds.core import Lease, Node, Pod
from kray.crds.meta import ObjectMeta
from kray.crds.quantity import Quantity
from kray.crds.validation import is_dns1123_subdomain, is_qualified_name, is_valid_label_value

from .ports import Api, Autoscaler, Deployer, Membership, NodePlan, RayNode

log = logging.getLogger(__name__)

NODE_NAME_LABEL = "kray.io/node-name"  # a Ray label naming the node (``ray start --labels``)
# Per-node settings, as a Ray label of the node or an annotation of its Node (which wins):
NET_PREFIX_KEY = "kray.io/net-prefix"  # the node's bridge/netns/veth names start with this
NODE_ROOT_KEY = "kray.io/node-root"  # the node's state folder (pods, images, CRI socket)
SETTING_KEYS = (NET_PREFIX_KEY, NODE_ROOT_KEY)
NODE_NAME_RESOURCE = "kray.io/node-name:"  # or a custom resource "kray.io/node-name:<name>"
RAY_NODE_ID_LABEL = "kray.io/ray-node-id"
RESOURCE_LABEL_PREFIX = "resources.kray.io/"
ACCELERATOR_LABEL = "kray.io/accelerator-type"
GPU_COUNT_LABEL = "kray.io/gpu-count"
LEASE_NAMESPACE = "kube-node-lease"
GPU_RESOURCE = "nvidia.com/gpu"
# Ray's own resources: not user hints.
_BUILTIN_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory"}
# What Kubernetes' scheduler assumes for a pod without requests (non-zero defaults).
DEFAULT_CPU = 0.1
DEFAULT_MEMORY = float(200 * 1024 * 1024)


def _dns_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-.")
    return re.sub(r"-{2,}", "-", name)[:200] or "node"


def node_name_for(node: RayNode) -> str:
    """A stable Node name: the user's ``kray.io/node-name`` (label or resource), else
    hostname + the first 8 hex digits of the Ray node id (unique with several nodes per host,
    stable for the life of the Ray node, so kubelet restarts keep it)."""
    wanted = node.labels.get(NODE_NAME_LABEL) or next(
        (r[len(NODE_NAME_RESOURCE) :] for r in node.resources if r.startswith(NODE_NAME_RESOURCE)), ""
    )
    if wanted and not is_dns1123_subdomain(wanted):
        return wanted
    if wanted:
        log.warning(
            "ray node %s: %s=%r is not a valid node name; using the default", node.node_id, NODE_NAME_LABEL, wanted
        )
    return f"{_dns_name(node.hostname or 'node')}-{node.node_id[:8].lower()}"


def node_setting(key: str, member: RayNode, node: Node | None) -> str | None:
    """A per-node setting: the Node's annotation (written by `kray up` for its own node), else
    the Ray node's label, else None (the agent's default)."""
    annotations = (node.metadata.annotations or {}) if node is not None else {}
    return annotations.get(key) or member.labels.get(key) or None


def bound_names(nodes: dict[str, Node]) -> dict[str, str]:
    """Ray node id -> the name of the Node bound to it (by the ``kray.io/ray-node-id`` label): a
    node keeps its name whatever its Ray labels say later, and `kray up` names its own node so."""
    out: dict[str, str] = {}
    for name, node in nodes.items():
        node_id = (node.metadata.labels or {}).get(RAY_NODE_ID_LABEL)
        if node_id and node.metadata.deletion_timestamp is None:
            out.setdefault(node_id, name)
    return out


def gateway_of(cidr: str) -> str:
    """The pod bridge's address: the first host of the podCIDR (as the runtime's IPAM has it)."""
    return str(next(ipaddress.ip_network(cidr, strict=False).hosts()))


def _label_ok(key: str, value: str) -> bool:
    return not is_qualified_name(key) and not is_valid_label_value(value)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def node_labels(node: RayNode) -> dict[str, str]:
    """Node labels from the Ray node: its id, the user's labels, custom resources as hints."""
    labels = {RAY_NODE_ID_LABEL: node.node_id}
    for key, value in node.labels.items():
        if key.startswith("ray.io/") or key == NODE_NAME_LABEL or key in SETTING_KEYS:
            continue  # Ray's own (node id, market type...), the name itself, node settings
        if _label_ok(key, value):
            labels[key] = value
    for res, amount in node.resources.items():
        if res in _BUILTIN_RESOURCES or res.startswith(("node:", NODE_NAME_RESOURCE)) or "_group_" in res:
            continue  # placement-group bundles show up as "<res>_group_<id>"
        if res.startswith("accelerator_type:"):
            key, value = ACCELERATOR_LABEL, res.split(":", 1)[1]
        else:
            key, value = RESOURCE_LABEL_PREFIX + res, _number(amount)
        if _label_ok(key, value):
            labels[key] = value
    if node.gpus:
        labels[GPU_COUNT_LABEL] = str(node.gpus)
    return labels


def unschedulable(pod: Pod) -> bool:
    """Pending and rejected by the scheduler (PodScheduled=False, reason Unschedulable)."""
    if pod.spec.node_name or pod.metadata.deletion_timestamp is not None:
        return False
    status = pod.status
    if status is None or status.phase not in (None, "Pending"):
        return False
    cond = next((c for c in status.conditions or [] if c.type == "PodScheduled"), None)
    return cond is not None and cond.status == "False" and cond.reason == "Unschedulable"


def _active_on(pod: Pod, nodes: set[str]) -> bool:
    phase = pod.status.phase if pod.status else None
    return bool(pod.spec.node_name in nodes and phase not in ("Succeeded", "Failed"))


def pod_bundle(pod: Pod, memory: bool = True) -> dict[str, float]:
    """A pod's requests as a Ray resource shape (CPU cores, memory bytes unless ``memory`` is
    False, GPUs)."""
    req = pod.spec.resource_requests()

    def amount(name: str) -> float:
        q = req.get(name)
        return float(q.amount if isinstance(q, Quantity) else Decimal(0))

    cpu = round(amount("cpu"), 4) or DEFAULT_CPU
    bundle = {"CPU": cpu}
    if memory:
        bundle["memory"] = float(int(amount("memory"))) or DEFAULT_MEMORY
    gpus = amount(GPU_RESOURCE)
    if gpus:
        bundle["GPU"] = gpus
    return bundle


class NodeAgent:
    def __init__(
        self,
        api: Api,
        membership: Membership,
        deployer: Deployer,
        autoscaler: Autoscaler | None,
        clock: Clock,
        *,
        grace_period: float = 300.0,
        autoscale_interval: float = 10.0,
        period: float = 2.0,
        dns: bool = True,
        exclude_node_ids: frozenset[str] | set[str] = frozenset(),
        bundle_memory: bool = True,
        node_actors: bool = True,
    ) -> None:
        self.api, self.membership, self.deployer, self.autoscaler = api, membership, deployer, autoscaler
        self.clock = clock
        self.dns = dns  # a DNS server on every node, on its pod bridge's gateway address
        self.exclude_node_ids = frozenset(exclude_node_ids)  # Ray nodes that run no kray node
        # Whether bundles ask for memory: only providers that know their node types' memory
        # (the clouds fill it in) can place such a bundle; to others it is infeasible.
        self.bundle_memory = bundle_memory
        # False: Nodes are registered (and get podCIDRs) but no kubelet, proxy or DNS is
        # deployed -- where Ray runs without root, kubelets could only fail and restart.
        self.node_actors = node_actors
        self.grace_period = grace_period
        self.autoscale_interval = autoscale_interval
        self.period = period
        self.deployed: dict[str, str] = {}  # node name -> Ray node id its actors were deployed for
        self.gone_since: dict[str, float] = {}  # node name -> monotonic time first seen gone
        self._requested: list[dict[str, float]] | None = None  # None: nothing sent yet
        self._requested_at: float | None = None

    # ---- one pass -----------------------------------------------------------------------------

    async def step(self) -> None:
        nodes = {n.name: n for n in (await self.api.list(Node)).items}
        bound = bound_names(nodes)
        alive: dict[str, RayNode] = {}
        for member in self.membership.nodes():
            if member.alive and member.node_id not in self.exclude_node_ids:
                name = bound.get(member.node_id) or node_name_for(member)
                if name in alive:
                    log.warning("ray nodes %s and %s both want node name %s", alive[name].node_id, member.node_id, name)
                    continue
                alive[name] = member
        for name, member in alive.items():
            self.gone_since.pop(name, None)
            try:
                await self._ensure(name, member, nodes.get(name))
            except Exception:  # one node's trouble must not hold up the others
                log.exception("node %s: setting up failed", name)
        await self._departed(alive, nodes)
        if self.autoscaler is not None:
            await self._autoscale(set(alive))

    async def run(self) -> None:
        """Step forever; errors are logged and retried, never fatal."""
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("node agent step failed")
            await self.clock.sleep(self.period)

    # ---- joining ----------------------------------------------------------------------------

    async def _ensure(self, name: str, member: RayNode, node: Node | None) -> None:
        labels = node_labels(member)
        if node is None:
            try:
                node = await self.api.create(Node(metadata=ObjectMeta(name=name, labels=labels)))
            except Conflict:
                node = await self.api.get(Node, name)
            log.info("node %s: registered for ray node %s", name, member.node_id)
        elif any((node.metadata.labels or {}).get(k) != v for k, v in labels.items()):
            node = node.model_copy(deep=True)
            node.metadata.labels = {**(node.metadata.labels or {}), **labels}
            node = await self.api.update(node)  # 409 on a race: next pass
        assert node is not None
        cidr = node.spec.pod_cidr
        if not cidr:
            log.debug("node %s: waiting for a podCIDR from the node IPAM controller", name)
            return
        if self.deployed.get(name) == member.node_id or not self.node_actors:
            return
        if name in self.deployed:  # the same name is back on another Ray node: old actors out
            self.deployer.remove(name)
            del self.deployed[name]
        plan = NodePlan(
            node_id=member.node_id,
            node_name=name,
            pod_cidr=cidr,
            node_ip=member.address,
            labels=labels,
            cpu=_number(member.resources["CPU"]) if member.resources.get("CPU") else None,
            gpus=member.gpus,
            net_prefix=node_setting(NET_PREFIX_KEY, member, node),
            root=node_setting(NODE_ROOT_KEY, member, node),
            dns_ip=gateway_of(cidr) if self.dns else None,
        )
        # DNS first: the kubelet's pods point at it from their start.
        if plan.dns_ip:
            self.deployer.deploy_dns(plan)
        self.deployer.deploy_kubelet(plan)
        self.deployer.deploy_proxy(plan)
        if plan.gpus:
            self.deployer.deploy_gpu_plugin(plan)
        self.deployed[name] = member.node_id
        extra = "".join([", DNS" if plan.dns_ip else "", ", GPU plugin" if plan.gpus else ""])
        log.info("node %s: kubelet, proxy%s deployed", name, extra)

    # ---- leaving ----------------------------------------------------------------------------

    async def _departed(self, alive: dict[str, RayNode], nodes: dict[str, Node]) -> None:
        now = self.clock.monotonic()
        for name in [n for n in self.deployed if n not in alive]:
            log.info("node %s: ray node %s left", name, self.deployed[name])
            del self.deployed[name]
            try:
                self.deployer.remove(name)
            except Exception:
                log.exception("node %s: removing its actors failed", name)
        for name, node in nodes.items():
            if name in alive or RAY_NODE_ID_LABEL not in (node.metadata.labels or {}):
                continue  # present, or not ours (hollow nodes, hand-made ones)
            since = self.gone_since.setdefault(name, now)
            if now - since < self.grace_period:
                continue
            log.info("node %s: gone for %.0fs, deleting the Node", name, now - since)
            for kind, ns in ((Node, None), (Lease, LEASE_NAMESPACE)):
                try:
                    await self.api.delete(kind, name, ns)
                except NotFound:
                    pass
            self.gone_since.pop(name, None)
        for name in [n for n in self.gone_since if n not in nodes]:
            del self.gone_since[name]

    # ---- autoscaling ------------------------------------------------------------------------

    async def _autoscale(self, alive: set[str]) -> None:
        assert self.autoscaler is not None
        pods = (await self.api.list(Pod, all_namespaces=True)).items
        pending = [p for p in pods if unschedulable(p)]
        bundles: list[dict[str, float]] = []
        if pending:
            bound = [p for p in pods if _active_on(p, alive)]
            bundles = [pod_bundle(p, self.bundle_memory) for p in [*bound, *pending]]
            bundles.sort(key=lambda b: sorted(b.items()))  # order-free comparison with the last
        if bundles == self._requested:
            return
        now = self.clock.monotonic()
        if self._requested_at is not None and now - self._requested_at < self.autoscale_interval:
            return  # rate limit: the next pass after the interval sends the latest
        self.autoscaler.request(bundles)
        self._requested, self._requested_at = bundles, now
        log.info("autoscaler request: %d bundles (%d pending pods)", len(bundles), len(pending))
