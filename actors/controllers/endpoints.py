"""The Endpoints controller: for each Service with a selector, the pods behind it.

Level-based, like kube's ``endpoint`` controller: every pass reads the Service and the pods
its selector matches from the cache and computes the whole Endpoints object (same name as the
Service): ready pods under ``addresses``, the others under ``notReadyAddresses`` (all under
``addresses`` with ``publishNotReadyAddresses``), every Service port resolved against each
pod's container ports (a named ``targetPort`` that a pod lacks leaves that pod out of that
port). Pods with the same resolved ports share one subset. It writes only when the result
differs, with the resourceVersion it read (a stale cache gives a 409 and a quiet requeue).

Readiness is the Pod's ``Ready`` condition, which the kubelet derives from readiness probes, so
a failing probe takes a pod out of the Service here. Services without a selector are left
alone: their Endpoints are the user's. Deleting a Service deletes its Endpoints.
"""

from __future__ import annotations

from collections.abc import Iterable

from kray.actors.framework import ControllerBuilder, Manager, Reader, Request, Result, Writer
from kray.client.errors import NotFound
from kray.crds.core import Endpoints, Pod, Service
from kray.crds.core.common import ObjectReference
from kray.crds.core.service import EndpointAddress, EndpointPort, EndpointSubset, ServicePort
from kray.crds.meta import ObjectMeta
from kray.crds.selectors import selector_from_set

CONTROLLER_NAME = "endpoints"
HEADLESS_LABEL = "service.kubernetes.io/headless"


def pod_is_ready(pod: Pod) -> bool:
    cond = pod.status.condition("Ready") if pod.status else None
    return cond is not None and cond.status == "True"


def serves(pod: Pod, publish_not_ready: bool) -> bool:
    """Whether a pod belongs in Endpoints at all (kube's ShouldPodBeInEndpoints)."""
    status = pod.status
    if status is None or not status.pod_ip or status.phase in ("Succeeded", "Failed"):
        return False
    # A terminating pod stops taking new connections, unless the Service wants every pod.
    return pod.metadata.deletion_timestamp is None or publish_not_ready


def resolve_port(pod: Pod, port: ServicePort) -> int | None:
    """The pod's port for ``port.targetPort``: a number as is, a name through container ports."""
    target = port.target_port if port.target_port not in (None, "") else port.port
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for container in pod.spec.containers:
        for cp in container.ports or ():
            if cp.name == target and cp.protocol == port.protocol:
                return cp.container_port
    return None


def _address(pod: Pod, service: Service) -> EndpointAddress:
    assert pod.status is not None and pod.status.pod_ip
    ref = ObjectReference(kind="Pod", namespace=pod.metadata.namespace, name=pod.metadata.name, uid=pod.metadata.uid)
    # As kube's endpoints controller: a pod whose subdomain names this Service gets its hostname
    # on the address, which is what DNS serves as <hostname>.<service>.<ns>.svc (StatefulSets).
    spec = pod.spec
    named = bool(spec.hostname) and spec.subdomain == service.metadata.name
    same_ns = pod.metadata.namespace == service.metadata.namespace
    hostname = spec.hostname if named and same_ns else None
    return EndpointAddress(ip=pod.status.pod_ip, hostname=hostname, node_name=spec.node_name, target_ref=ref)


def desired_subsets(service: Service, pods: Iterable[Pod]) -> list[EndpointSubset]:
    """The Endpoints subsets for ``service`` over ``pods`` (already selector-matched)."""
    publish = bool(service.spec.publish_not_ready_addresses)
    ports = service.spec.ports or []
    # Pods with equal resolved port lists share a subset (kube's RepackSubsets).
    groups: dict[tuple[tuple[str, int, str], ...], tuple[list[EndpointAddress], list[EndpointAddress]]] = {}
    for pod in sorted(pods, key=lambda p: (p.status.pod_ip if p.status else "") or ""):
        if not serves(pod, publish):
            continue
        resolved: list[tuple[str, int, str]] = []
        for sp in ports:
            number = resolve_port(pod, sp)
            if number is not None:
                resolved.append((sp.name or "", number, sp.protocol))
        if ports and not resolved:
            continue  # none of the Service's ports exist on this pod
        ready, not_ready = groups.setdefault(tuple(resolved), ([], []))
        (ready if publish or pod_is_ready(pod) else not_ready).append(_address(pod, service))
    subsets: list[EndpointSubset] = []
    for key in sorted(groups):
        ready, not_ready = groups[key]
        subsets.append(
            EndpointSubset(
                addresses=ready or None,
                not_ready_addresses=not_ready or None,
                ports=[EndpointPort(name=n or None, port=p, protocol=proto) for n, p, proto in key] or None,  # type: ignore[arg-type]
            )
        )
    return subsets


def _dump(subsets: list[EndpointSubset] | None) -> list[dict[str, object]]:
    return [s.model_dump(by_alias=True, exclude_none=True) for s in subsets or []]


class EndpointsReconciler:
    def __init__(self, reader: Reader, writer: Writer) -> None:
        self.reader = reader
        self.writer = writer

    async def reconcile(self, request: Request) -> Result:
        ns, name = request.namespace, request.name
        try:
            service: Service | None = await self.reader.get(Service, name, ns)
        except NotFound:
            service = None
        try:
            current: Endpoints | None = await self.reader.get(Endpoints, name, ns)
        except NotFound:
            current = None
        if service is None or service.metadata.deletion_timestamp is not None:
            if current is not None and service is None:
                try:
                    await self.writer.delete(Endpoints, name, ns)
                except NotFound:
                    pass
            return Result()
        selector = service.spec.selector
        if not selector or service.spec.type == "ExternalName":
            return Result()  # the user (or nobody) manages these Endpoints
        match = selector_from_set(selector)
        pods = [p for p in await self.reader.list(Pod, ns) if match.matches(p.metadata.labels or {})]
        subsets = desired_subsets(service, pods)
        labels = dict(service.metadata.labels or {})
        if service.spec.cluster_ip == "None":
            labels[HEADLESS_LABEL] = ""
        if current is None:
            meta = ObjectMeta(name=name, namespace=ns, labels=labels or None)
            await self.writer.create(Endpoints(metadata=meta, subsets=subsets or None))
            return Result()
        if _dump(current.subsets) == _dump(subsets) and (current.metadata.labels or {}) == labels:
            return Result()
        updated = current.model_copy(deep=True)  # cached objects are shared
        updated.subsets = subsets or None
        updated.metadata.labels = labels or None
        await self.writer.update(updated)  # carries the resourceVersion read: CAS
        return Result()


def build_endpoints_controller(manager: Manager, workers: int = 1) -> object:
    reconciler = EndpointsReconciler(manager.reader, manager.writer)
    services = manager.informer_for(Service)

    def pod_to_services(obj: object) -> list[Request]:
        """Every Service in the pod's namespace whose selector matches its labels."""
        assert isinstance(obj, Pod)
        labels = obj.metadata.labels or {}
        out = []
        for svc in services.cache.list(obj.metadata.namespace):
            selector = svc.spec.selector  # type: ignore[attr-defined]
            if selector and selector_from_set(selector).matches(labels):
                out.append(Request.for_object(svc))
        return out

    def self_key(obj: object) -> list[Request]:
        return [Request.for_object(obj)]  # type: ignore[arg-type]

    builder = ControllerBuilder(manager).named(CONTROLLER_NAME).for_(Service)
    builder.watches(Pod, pod_to_services).watches(Endpoints, self_key)
    return builder.with_workers(workers).complete(reconciler)


def setup(manager: Manager, **options: object) -> None:
    """Register the Endpoints controller (options: ``workers``: int, default 1)."""
    workers = options.get("workers", 1)
    build_endpoints_controller(manager, workers if isinstance(workers, int) else 1)
