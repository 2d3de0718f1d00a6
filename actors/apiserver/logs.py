"""``GET /api/v1/namespaces/{ns}/pods/{name}/log``: proxied to the kubelet of the pod's node
(its InternalIP and ``daemonEndpoints.kubeletEndpoint.port``) as a stream, like kube-apiserver.

Query: ``container`` (optional when the pod has one container), ``follow``, ``tailLines``,
``previous``, ``timestamps``. ``transport`` lets tests route to an in-process kubelet app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from . import errors
from .handlers import Handlers

_PASS = ("follow", "tailLines", "previous", "timestamps")


def pick_container(pod: Any, requested: str | None, inits_too: bool = True) -> str:
    """The container a logs/exec request means; the only one when none is named (kubectl's)."""
    names = [c.name for c in pod.spec.containers]
    inits = [c.name for c in pod.spec.init_containers or []] if inits_too else []
    if not requested:
        if len(names) != 1:
            raise errors.bad_request(
                f"a container name must be specified for pod {pod.metadata.name}, choose one of: [{' '.join(names)}]"
            )
        return str(names[0])
    if requested not in names + inits:
        raise errors.bad_request(f"container {requested} is not valid for pod {pod.metadata.name}")
    return requested


async def kubelet_url(handlers: Handlers, registry: Any, pod: Any) -> str:
    """``http://<InternalIP>:<kubelet port>`` of the node the pod is bound to."""
    node_name = pod.spec.node_name
    if not node_name:
        raise errors.bad_request(f"pod {pod.metadata.name} does not have a host assigned")
    return node_kubelet_url(await handlers.get(registry.get("v1", "Node"), None, node_name))


def node_kubelet_url(node: Any) -> str:
    """``http://<InternalIP>:<kubelet port>`` from a Node's status."""
    ip = node.status.address("InternalIP") if node.status else None
    ep = node.status.daemon_endpoints.kubelet_endpoint if node.status and node.status.daemon_endpoints else None
    if not ip or ep is None:
        raise errors.internal(f"node {node.metadata.name} has no kubelet endpoint")
    return f"http://{ip}:{ep.port}"


class PodLogs:
    def __init__(self, handlers: Handlers, registry: Any) -> None:
        self.handlers = handlers
        self.registry = registry
        self.transport: httpx.AsyncBaseTransport | None = None

    async def handle(self, request: Request) -> Response:
        try:
            return await self._logs(request)
        except errors.ApiError as exc:
            return exc.response()

    async def _logs(self, request: Request) -> Response:
        ns, name = request.path_params["namespace"], request.path_params["name"]
        pod: Any = await self.handlers.get(self.registry.get("v1", "Pod"), ns, name)
        container = pick_container(pod, request.query_params.get("container"))
        base = await kubelet_url(self.handlers, self.registry, pod)
        params = {k: request.query_params[k] for k in _PASS if k in request.query_params}
        url = f"{base}/containerLogs/{ns}/{name}/{container}"
        client = httpx.AsyncClient(transport=self.transport, timeout=httpx.Timeout(10.0, read=None))
        try:
            upstream = await client.send(client.build_request("GET", url, params=params), stream=True)
        except httpx.HTTPError as exc:
            await client.aclose()
            raise errors.internal(f"cannot reach the kubelet of node {pod.spec.node_name}: {exc}") from None
        if upstream.status_code != 200:
            body = (await upstream.aread()).decode(errors="replace").strip()
            await upstream.aclose()
            await client.aclose()
            raise errors.bad_request(body or f"kubelet answered {upstream.status_code}")

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:
                await upstream.aclose()
                await client.aclose()

        return StreamingResponse(relay(), media_type="text/plain")
