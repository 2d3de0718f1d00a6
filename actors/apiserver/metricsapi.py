"""``metrics.k8s.io/v1beta1``: NodeMetrics and PodMetrics, read from the kubelets on request.

What metrics-server serves in Kubernetes, and what ``kubectl top``/``kray top`` read: each
node's and pod's CPU (a rate, in nano cores) and memory working set, from the kubelets'
``/stats/summary`` (``kubelet/stats.py``). Nothing is stored: every request asks the kubelets
of the nodes concerned, concurrently, and a node whose kubelet does not answer in time is left
out (as metrics-server leaves out what it could not scrape). Read-only: get and list.

GPUs (kray extensions, which kubectl ignores: it reads only ``cpu`` and ``memory``): a container
whose summary lists ``accelerators`` gets two more usage keys, ``nvidia.com/gpu.utilization``
(percent busy, averaged over its GPUs, a plain integer quantity) and ``nvidia.com/gpu.memory``
(memory used on its GPUs, summed, in Ki); a node gets the same over all its GPUs.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kray.crds.selectors import parse_label_selector

from . import errors
from .handlers import Handlers
from .logs import node_kubelet_url

log = logging.getLogger(__name__)

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
PREFIX = f"/apis/{GROUP_VERSION}"
SCRAPE_TIMEOUT_S = 5.0
GPU_UTILIZATION = "nvidia.com/gpu.utilization"
GPU_MEMORY = "nvidia.com/gpu.memory"


def group_doc() -> dict[str, Any]:
    entry = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"name": GROUP, "versions": [entry], "preferredVersion": entry}


def resource_list() -> dict[str, Any]:
    def resource(plural: str, kind: str, namespaced: bool) -> dict[str, Any]:
        return {"name": plural, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["get", "list"]}

    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [resource("nodes", "NodeMetrics", False), resource("pods", "PodMetrics", True)],
    }


def _cpu(nano_cores: int) -> str:
    return f"{int(nano_cores)}n"


def _memory(num_bytes: int) -> str:
    return f"{int(num_bytes) // 1024}Ki"


def _gpu(stats: dict[str, Any]) -> dict[str, str]:
    """The GPU usage keys for a summary's container or node; {} without accelerators, and a key
    left out when none of the GPUs can tell that figure."""
    accelerators = stats.get("accelerators") or []
    busy = [int(a["dutyCycle"]) for a in accelerators if "dutyCycle" in a]
    used = [int(a["memoryUsed"]) for a in accelerators if "memoryUsed" in a]
    out = {}
    if busy:
        out[GPU_UTILIZATION] = str(sum(busy) // len(busy))
    if used:
        out[GPU_MEMORY] = _memory(sum(used))
    return out


class MetricsApi:
    def __init__(self, handlers: Handlers, registry: Any) -> None:
        self.handlers = handlers
        self.registry = registry
        self.transport: httpx.AsyncBaseTransport | None = None  # tests: an in-process kubelet

    def routes(self) -> list[Route]:
        return [
            Route(f"{PREFIX}/nodes", self._nodes),
            Route(f"{PREFIX}/nodes/{{name}}", self._nodes),
            Route(f"{PREFIX}/pods", self._pods),
            Route(f"{PREFIX}/namespaces/{{namespace}}/pods", self._pods),
            Route(f"{PREFIX}/namespaces/{{namespace}}/pods/{{name}}", self._pods),
        ]

    async def _summaries(self, nodes: list[Any]) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(transport=self.transport, timeout=SCRAPE_TIMEOUT_S) as client:

            async def scrape(node: Any) -> dict[str, Any] | None:
                try:
                    base = node_kubelet_url(node)
                    answer = await client.get(f"{base}/stats/summary")
                    answer.raise_for_status()
                    return dict(answer.json())
                except (httpx.HTTPError, errors.ApiError, ValueError) as exc:
                    log.info("metrics: no summary from node %s: %s", node.metadata.name, exc)
                    return None

            found = await asyncio.gather(*(scrape(n) for n in nodes))
        return [s for s in found if s is not None]

    async def _all_nodes(self, name: str | None) -> list[Any]:
        kind = self.registry.get("v1", "Node")
        if name is not None:
            return [await self.handlers.get(kind, None, name)]
        return (await self.handlers.store.list(kind))[0]

    async def _nodes(self, request: Request) -> Response:
        name = request.path_params.get("name")
        try:
            nodes = await self._all_nodes(name)
        except errors.ApiError as exc:
            return exc.response()
        selector = request.query_params.get("labelSelector")
        if selector:
            match = parse_label_selector(selector)
            nodes = [n for n in nodes if match.matches(n.metadata.labels or {})]
        items = []
        for s in await self._summaries(nodes):
            node = s["node"]
            usage = {"cpu": _cpu(node["cpu"]["usageNanoCores"]), "memory": _memory(node["memory"]["workingSetBytes"])}
            usage.update(_gpu(node))
            items.append({
                "metadata": {"name": node["nodeName"], "creationTimestamp": _now()},
                "timestamp": node["cpu"]["time"],
                "window": s.get("window", "1s"),
                "usage": usage,
            })  # fmt: skip
        if name is not None:
            if not items:
                return errors.ApiError(404, "NotFound", f'nodemetrics.metrics.k8s.io "{name}" not found').response()
            return JSONResponse({"kind": "NodeMetrics", "apiVersion": GROUP_VERSION, **items[0]})
        return JSONResponse(_list("NodeMetricsList", sorted(items, key=lambda i: i["metadata"]["name"])))

    async def _pods(self, request: Request) -> Response:
        namespace, name = request.path_params.get("namespace"), request.path_params.get("name")
        pod_kind = self.registry.get("v1", "Pod")
        missing = errors.ApiError(404, "NotFound", f'podmetrics.metrics.k8s.io "{namespace}/{name}" not found')
        try:
            pods = [await self.handlers.get(pod_kind, namespace, name)] if name else None
            nodes = await self._all_nodes(None)
        except errors.ApiError as exc:
            return (missing if exc.code == 404 and name else exc).response()
        if pods is not None:
            pod: Any = pods[0]  # the registry's v1 Pod kind
            bound_to = pod.spec.node_name
            nodes = [n for n in nodes if n.metadata.name == bound_to]
        selector = request.query_params.get("labelSelector")
        match = parse_label_selector(selector) if selector else None
        labels_of = {}
        if match is not None:
            for pod in (await self.handlers.store.list(pod_kind, namespace))[0]:
                labels_of[(pod.metadata.namespace, pod.metadata.name)] = pod.metadata.labels or {}
        items = []
        for s in await self._summaries(nodes):
            for pod in s.get("pods") or []:
                ref = pod["podRef"]
                if (namespace and ref["namespace"] != namespace) or (name and ref["name"] != name):
                    continue
                if match is not None and not match.matches(labels_of.get((ref["namespace"], ref["name"]), {})):
                    continue
                containers = [
                    {"name": c["name"], "usage": {"cpu": _cpu(c["cpu"]["usageNanoCores"]),
                                                  "memory": _memory(c["memory"]["workingSetBytes"]), **_gpu(c)}}
                    for c in pod.get("containers") or []
                ]  # fmt: skip
                times = [c["cpu"]["time"] for c in pod.get("containers") or []]
                items.append({
                    "metadata": {"name": ref["name"], "namespace": ref["namespace"], "creationTimestamp": _now()},
                    "timestamp": max(times) if times else _now(),
                    "window": s.get("window", "1s"),
                    "containers": sorted(containers, key=lambda c: c["name"]),
                })  # fmt: skip
        if name is not None:
            if not items:
                return missing.response()
            return JSONResponse({"kind": "PodMetrics", "apiVersion": GROUP_VERSION, **items[0]})
        items.sort(key=lambda i: (i["metadata"]["namespace"], i["metadata"]["name"]))
        return JSONResponse(_list("PodMetricsList", items))


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _list(kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": kind, "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}
