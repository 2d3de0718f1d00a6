"""``pods/{name}/exec`` over a WebSocket, in Kubernetes' channel protocol (``v4.channel.k8s.io``).

What kubectl and the official clients speak: after the upgrade, every binary message starts with
its channel byte (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize); the error channel carries a
``Status`` as JSON, ``Success`` or ``Failure`` with reason ``NonZeroExitCode`` and the exit code
as a cause. The command runs through the kubelet's ``/exec`` endpoint (CRI ExecSync), so its
output arrives when it ends and there is no stdin or TTY: a request for either is refused on the
error channel with a message that says so, and so is any other failure (no such pod or container,
a node that cannot be reached).
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import httpx
from starlette.websockets import WebSocket, WebSocketDisconnect

from . import errors
from .handlers import Handlers
from .logs import kubelet_url, pick_container

log = logging.getLogger(__name__)

SUBPROTOCOLS = ("v4.channel.k8s.io", "v5.channel.k8s.io")  # the same to us: there is no stdin
STDOUT, STDERR, ERROR = 1, 2, 3
CHUNK = 64 << 10  # frames of at most this much output


def _true(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true")


def exec_status(exit_code: int, command: list[str]) -> dict[str, Any]:
    """The error channel's Status for a finished command, as the kubelet writes it."""
    if exit_code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command {command},"
        f" exit code {exit_code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
    }


def failure_status(exc: errors.ApiError) -> dict[str, Any]:
    status: dict[str, Any] = exc.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    status.pop("kind", None)  # the error channel carries a bare Status body, as the kubelet sends it
    status.pop("apiVersion", None)
    return status


class PodExec:
    def __init__(self, handlers: Handlers, registry: Any) -> None:
        self.handlers = handlers
        self.registry = registry
        self.transport: httpx.AsyncBaseTransport | None = None  # tests route to an in-process kubelet

    async def handle(self, ws: WebSocket) -> None:
        offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        chosen = next((p for p in offered if p in SUBPROTOCOLS), None)
        if chosen is None:
            # Refused before the upgrade: the client sees an HTTP 403 and no half-open socket.
            await ws.close(code=1002, reason=f"exec needs one of the subprotocols {', '.join(SUBPROTOCOLS)}")
            return
        await ws.accept(subprotocol=chosen)
        try:
            status, stdout, stderr = await self._run(ws)
            for channel, data in ((STDOUT, stdout), (STDERR, stderr)):
                for i in range(0, len(data), CHUNK):
                    await ws.send_bytes(bytes([channel]) + data[i : i + CHUNK])
            await ws.send_bytes(bytes([ERROR]) + json.dumps(status).encode())
            await ws.close()
        except WebSocketDisconnect:
            return  # the client went away; nothing to tell it

    async def _run(self, ws: WebSocket) -> tuple[dict[str, Any], bytes, bytes]:
        query = ws.query_params
        command = query.getlist("command")
        try:
            if not command:
                raise errors.bad_request("you must specify at least one command for the container")
            if _true(query.get("stdin")) or _true(query.get("tty")):
                raise errors.bad_request(
                    "interactive exec (stdin/tty) is not supported by kray: run a command that ends"
                )
            ns, name = ws.path_params["namespace"], ws.path_params["name"]
            pod: Any = await self.handlers.get(self.registry.get("v1", "Pod"), ns, name)
            container = pick_container(pod, query.get("container"), inits_too=False)
            if pod.status is None or pod.status.phase in ("Succeeded", "Failed"):
                phase = pod.status.phase if pod.status else "Pending"
                raise errors.bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
            base = await kubelet_url(self.handlers, self.registry, pod)
            body: dict[str, Any] = {"command": command}
            if query.get("timeoutSeconds", "").isdigit():
                body["timeoutSeconds"] = int(query["timeoutSeconds"])
            async with httpx.AsyncClient(transport=self.transport, timeout=httpx.Timeout(10.0, read=None)) as client:
                try:
                    answer = await client.post(f"{base}/exec/{ns}/{name}/{container}", json=body)
                except httpx.HTTPError as exc:
                    raise errors.internal(f"cannot reach the kubelet of node {pod.spec.node_name}: {exc}") from None
            if answer.status_code != 200:
                raise errors.bad_request(answer.text.strip() or f"kubelet answered {answer.status_code}")
            result = answer.json()
        except errors.ApiError as exc:
            return failure_status(exc), b"", b""
        stdout, stderr = base64.b64decode(result["stdout"]), base64.b64decode(result["stderr"])
        return exec_status(int(result["exitCode"]), command), stdout, stderr
