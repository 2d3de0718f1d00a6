"""Pods and nodes pre-digested for scheduling.

Quantities are exact Decimals, far too slow to add up thousands of times per cycle, so each pod's
requests are converted once to integer milli-units (``500m`` cpu -> 500, ``1Gi`` -> 1024**3*1000).
Everything a plugin asks about a pod repeatedly (labels, ports, affinity terms) is computed here
once, when the pod enters the scheduler.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kray.crds import Pod
from kray.crds.core.scheduling import PodAffinityTerm, WeightedPodAffinityTerm
from kray.crds.quantity import Quantity
from kray.crds.scheduling import GPU_DEVICES_ANNOTATION, POD_GROUP_LABEL
from kray.crds.selectors import IN, Requirement, Selector

PODS = "pods"
CPU = "cpu"
MEMORY = "memory"
HOSTNAME_LABEL = "kubernetes.io/hostname"
# What a pod with no cpu/memory request counts as when scoring (kube-scheduler's non-zero defaults),
# so best-effort pods do not all pile onto one node.
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY_MILLI = 200 * 1024 * 1024 * 1000


def milli_units(resources: Mapping[str, Quantity] | None) -> dict[str, int]:
    return {name: q.milli() for name, q in (resources or {}).items() if not q.is_zero()}


def pod_key(pod: Pod) -> str:
    return f"{pod.metadata.namespace or 'default'}/{pod.metadata.name}"


@dataclass(frozen=True, slots=True)
class AffinityTerm:
    """A PodAffinityTerm with its selector compiled and its namespaces resolved."""

    selector: Selector
    namespaces: frozenset[str]  # empty: every namespace (a namespaceSelector of {})
    topology_key: str
    weight: int = 0

    @classmethod
    def build(cls, term: PodAffinityTerm, own_namespace: str, weight: int = 0) -> AffinityTerm:
        if term.namespaces:
            namespaces = frozenset(term.namespaces)
        elif term.namespace_selector is not None:
            namespaces = frozenset()  # kray has no namespace labels yet: {} and any selector mean all
        else:
            namespaces = frozenset((own_namespace,))
        # A missing labelSelector matches no pods (Kubernetes); an impossible selector models that.
        selector = (
            term.label_selector.to_selector() if term.label_selector is not None else Selector(requirements=(_NEVER,))
        )
        return cls(selector, namespaces, term.topology_key, weight)

    def matches(self, other: PodInfo) -> bool:
        if self.namespaces and other.namespace not in self.namespaces:
            return False
        return self.selector.matches(other.labels)


# "key in ()" matches nothing.
_NEVER = Requirement("kray.io/never", IN, ())


@dataclass(eq=False, slots=True)
class PodInfo:
    pod: Pod
    key: str
    namespace: str
    name: str
    labels: dict[str, str]
    requests: dict[str, int]
    non_zero_cpu: int
    non_zero_memory: int
    priority: int
    host_ports: frozenset[tuple[str, str, int]]
    group: str | None
    required_affinity: tuple[AffinityTerm, ...] = ()
    required_anti_affinity: tuple[AffinityTerm, ...] = ()
    preferred_affinity: tuple[AffinityTerm, ...] = ()
    preferred_anti_affinity: tuple[AffinityTerm, ...] = ()
    images: tuple[str, ...] = field(default=())
    # Device ids this pod holds on its node (the kray.io/gpu-devices annotation, or what Reserve
    # picked for an assumed pod), so the cache knows which GPUs are free, also after a restart.
    gpu_devices: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, pod: Pod) -> PodInfo:
        spec, ns = pod.spec, pod.metadata.namespace or "default"
        requests = milli_units(spec.resource_requests())
        requests.pop(PODS, None)
        ports = frozenset(
            (p.host_ip or "0.0.0.0", p.protocol or "TCP", p.host_port)
            for c in spec.containers
            for p in c.ports or []
            if p.host_port
        )
        aff = spec.affinity
        pa = aff.pod_affinity if aff else None
        paa = aff.pod_anti_affinity if aff else None
        labels = dict(pod.metadata.labels or {})
        return cls(
            pod=pod,
            key=f"{ns}/{pod.metadata.name}",
            namespace=ns,
            name=pod.metadata.name or "",
            labels=labels,
            requests=requests,
            non_zero_cpu=requests.get(CPU) or DEFAULT_MILLI_CPU,
            non_zero_memory=requests.get(MEMORY) or DEFAULT_MEMORY_MILLI,
            priority=spec.priority or 0,
            host_ports=ports,
            group=labels.get(POD_GROUP_LABEL),
            required_affinity=_terms(pa.required_during_scheduling_ignored_during_execution if pa else None, ns),
            required_anti_affinity=_terms(paa.required_during_scheduling_ignored_during_execution if paa else None, ns),
            preferred_affinity=_weighted(pa.preferred_during_scheduling_ignored_during_execution if pa else None, ns),
            preferred_anti_affinity=_weighted(
                paa.preferred_during_scheduling_ignored_during_execution if paa else None, ns
            ),
            images=tuple(
                normalize_image(c.image) for c in [*(spec.init_containers or []), *spec.containers] if c.image
            ),
            gpu_devices=parse_devices((pod.metadata.annotations or {}).get(GPU_DEVICES_ANNOTATION)),
        )

    @property
    def node_name(self) -> str | None:
        return self.pod.spec.node_name

    @property
    def group_key(self) -> str | None:
        return f"{self.namespace}/{self.group}" if self.group else None


def normalize_image(name: str) -> str:
    """``busybox`` -> ``docker.io/library/busybox:latest``, as the kubelet reports images, so
    a pod's image and a node's list compare equal however either was written."""
    if "@" not in name and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    first, _, rest = name.partition("/")
    if not rest:
        return f"docker.io/library/{name}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{name}"
    return name


def parse_devices(value: str | None) -> tuple[str, ...]:
    """``"GPU-a, GPU-b"`` -> ("GPU-a", "GPU-b"); missing or empty -> ()."""
    if not value:
        return ()
    return tuple(d for d in (part.strip() for part in value.split(",")) if d)


def _terms(terms: list[PodAffinityTerm] | None, ns: str) -> tuple[AffinityTerm, ...]:
    return tuple(AffinityTerm.build(t, ns) for t in terms or [])


def _weighted(terms: list[WeightedPodAffinityTerm] | None, ns: str) -> tuple[AffinityTerm, ...]:
    return tuple(AffinityTerm.build(t.pod_affinity_term, ns, t.weight) for t in terms or [])


def topology_value(labels: Mapping[str, str], node_name: str, key: str) -> str | None:
    """A node's value for a topology key; hostname falls back to the node name (nodes built in
    tests and by hollow kubelets often leave the label out)."""
    value = labels.get(key)
    if value is None and key == HOSTNAME_LABEL:
        return node_name
    return value
