"""Container lifecycle hooks: postStart right after a container starts, preStop before it is
stopped (pod deletion, liveness restart). Like the kubelet's handlers: exec runs through the
runtime's ExecSync, httpGet and tcpSocket go to the pod IP from the node, sleep waits.

A failed postStart kills the container (its restart policy and back-off decide what follows);
a preStop runs within the grace period, whatever it returns, and its time is taken from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc
import httpx

from kray.crds.core.container import Container, LifecycleHandler

from .ports import CriPort
from .probes import resolve_port

log = logging.getLogger(__name__)
MAX_OUTPUT = 1024  # of an exec hook's output, in the error message
MIN_GRACE_AFTER_HOOK = 2.0


async def run_hook(
    cri: CriPort, handler: LifecycleHandler, container: Container, cid: str, pod_ip: str, timeout: float
) -> str | None:
    """Run one handler; None when it succeeded, else why it failed."""
    try:
        return await asyncio.wait_for(_run(cri, handler, container, cid, pod_ip, timeout), max(timeout, 0.001))
    except asyncio.TimeoutError:
        return f"timed out after {timeout:.0f}s"
    except (OSError, httpx.HTTPError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    except grpc.aio.AioRpcError as exc:
        return f"exec: {exc.details() or exc.code()}"


async def _run(
    cri: CriPort, handler: LifecycleHandler, container: Container, cid: str, pod_ip: str, timeout: float
) -> str | None:
    if handler.exec is not None:
        cmd = list(handler.exec.command or [])
        r = await cri.exec_sync(cid, cmd, timeout=max(1, int(timeout)))
        if r.exit_code != 0:
            out = (r.stdout + r.stderr)[-MAX_OUTPUT:].decode(errors="replace").strip()
            return f"command {cmd} exited with {r.exit_code}: {out}"
        return None
    if handler.http_get is not None:
        h = handler.http_get
        url = f"{h.scheme.lower()}://{h.host or pod_ip or '127.0.0.1'}:{resolve_port(h.port, container)}{h.path or '/'}"
        headers = {x.name: x.value for x in h.http_headers or []}
        async with httpx.AsyncClient(timeout=timeout, verify=False) as http:
            resp = await http.get(url, headers=headers)
        return None if 200 <= resp.status_code < 400 else f"GET {url}: HTTP {resp.status_code}"
    if handler.tcp_socket is not None:  # deprecated in Kubernetes, still accepted: a connect
        host = handler.tcp_socket.host or pod_ip or "127.0.0.1"
        _, writer = await asyncio.open_connection(host, resolve_port(handler.tcp_socket.port, container))
        writer.close()
        return None
    if handler.sleep is not None:
        await asyncio.sleep(handler.sleep.seconds)
    return None


async def pre_stop(
    cri: CriPort,
    container: Container | None,
    cid: str,
    pod_ip: str,
    grace: float,
    on_failure: Callable[[str], None] | None = None,
) -> float:
    """Run the container's preStop hook, if any, within `grace`; the grace left afterwards.
    `on_failure` hears why a hook failed (the FailedPreStopHook event)."""
    hook = container.lifecycle.pre_stop if container is not None and container.lifecycle else None
    if hook is None or container is None or grace <= 0:
        return grace
    loop = asyncio.get_running_loop()
    started = loop.time()
    err = await run_hook(cri, hook, container, cid, pod_ip, grace)
    if err is not None:
        log.warning("preStop hook of container %s (%s) failed: %s", container.name, cid[:12], err)
        if on_failure is not None:
            on_failure(err)
    # Like the kubelet's minimum: the container still gets 2 s for SIGTERM after a long hook.
    return max(MIN_GRACE_AFTER_HOOK, grace - (loop.time() - started))
