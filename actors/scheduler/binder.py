"""The production Binder: POST the Binding subresource through the API server.

The API server decides, in one etcd transaction, whether the pod still fits the node (see
``kray.actors.apiserver.binding``); a refusal comes back as a failed Status, which makes the
scheduler unreserve the pod and requeue it with back-off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from kray.crds import Pod

from .status import Status

if TYPE_CHECKING:
    from kray.client.ops import Request

# A bind that lost a race to another shard: retried after a short back-off, not reported on the
# pod (the next cycle's verdict, placed or "0/N nodes are available", is what users should see).
BIND_CONFLICT = "binding rejected: "


class RequestSender(Protocol):
    """What the binder needs of ``kray.client.AsyncClient``: one raw request."""

    async def request(self, req: Request) -> dict[str, Any]: ...


def binding_body(pod: Pod, node_name: str, annotations: Mapping[str, str] | None = None) -> dict:
    meta: dict[str, Any] = {"name": pod.metadata.name, "namespace": pod.metadata.namespace or "default"}
    if pod.metadata.uid:
        meta["uid"] = pod.metadata.uid  # a pod re-created under the same name is not ours to bind
    if annotations:
        meta["annotations"] = dict(annotations)  # the API server copies them onto the pod
    return {"apiVersion": "v1", "kind": "Binding", "metadata": meta, "target": {"kind": "Node", "name": node_name}}


class ApiBinder:
    def __init__(self, client: RequestSender) -> None:
        self.client = client
        self.conflicts = 0

    async def bind(self, pod: Pod, node_name: str, annotations: Mapping[str, str] | None = None) -> Status:
        ns = pod.metadata.namespace or "default"
        path = f"/api/v1/namespaces/{ns}/pods/{pod.metadata.name}/binding"
        return await self._post(path, binding_body(pod, node_name, annotations))

    async def bind_gang(self, pairs: list[tuple[Pod, str, dict[str, str]]]) -> Status:
        """All members of one PodGroup in one request, committed in one transaction (or none)."""
        from kray.crds.scheduling import POD_GROUP_LABEL, PodGroup

        first = pairs[0][0]
        ns, group = first.metadata.namespace or "default", (first.metadata.labels or {})[POD_GROUP_LABEL]
        path = f"/apis/{PodGroup.GROUP}/{PodGroup.VERSION}/namespaces/{ns}/podgroups/{group}/binding"
        items = [
            {"podName": p.metadata.name, "podUID": p.metadata.uid, "node": n, **({"annotations": a} if a else {})}
            for p, n, a in pairs
        ]
        body = {"apiVersion": f"{PodGroup.GROUP}/{PodGroup.VERSION}", "kind": "PodGroupBinding", "bindings": items}
        return await self._post(path, body)

    async def _post(self, path: str, body: dict) -> Status:
        from kray.client.errors import ApiError, KrayClientError
        from kray.client.ops import Request

        try:
            await self.client.request(Request("POST", path, body=body))
        except ApiError as exc:
            self.conflicts += 1
            return Status.error(f"{BIND_CONFLICT}{exc}")
        except KrayClientError as exc:
            return Status.error(f"binding failed: {exc}")
        return Status()
