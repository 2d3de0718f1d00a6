"""Liveness, readiness and startup probes: exec through the runtime's ExecSync, httpGet and
tcpSocket against the pod IP from the node. Timing follows the injected clock, so tests step it.

Like the kubelet's prober: liveness and readiness wait for the startup probe to succeed; a
container is live until its liveness probe failed ``failureThreshold`` times in a row and ready
once its readiness probe succeeded ``successThreshold`` times (not ready before the first one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import httpx

from kray.actors.framework.ports import Clock
from kray.crds.core.container import Container, Probe

from .ports import CriPort

log = logging.getLogger(__name__)
MAX_OUTPUT = 1024  # of a failed exec probe's output, in the Unhealthy event
# (pod uid, container name, probe kind, why it failed): one call per failed probe run.
ProbeFailureHook = Callable[[str, str, str, str], None]


def resolve_port(port: int | str, container: Container) -> int:
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    for p in container.ports or []:
        if p.name == port:
            return p.container_port
    raise ValueError(f"port {port!r} not found in container {container.name}")


class Prober:
    def __init__(self, cri: CriPort) -> None:
        self.cri = cri

    async def run(self, probe: Probe, container: Container, cid: str, pod_ip: str) -> bool:
        return await self.check(probe, container, cid, pod_ip) is None

    async def check(self, probe: Probe, container: Container, cid: str, pod_ip: str) -> str | None:
        """None when the probe passed, else why it failed (the Unhealthy event's message)."""
        timeout = float(probe.timeout_seconds)
        try:
            if probe.exec is not None:
                r = await self.cri.exec_sync(cid, list(probe.exec.command or []), timeout=int(timeout))
                if r.exit_code == 0:
                    return None
                out = (r.stdout + r.stderr)[-MAX_OUTPUT:].decode(errors="replace").strip()
                return out or f"command {list(probe.exec.command or [])} exited with {r.exit_code}"
            if probe.tcp_socket is not None:
                host = probe.tcp_socket.host or pod_ip or "127.0.0.1"
                port = resolve_port(probe.tcp_socket.port, container)
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
                writer.close()
                return None
            if probe.http_get is not None:
                h = probe.http_get
                host = h.host or pod_ip or "127.0.0.1"
                url = f"{h.scheme.lower()}://{host}:{resolve_port(h.port, container)}{h.path or '/'}"
                headers = {x.name: x.value for x in h.http_headers or []}
                async with httpx.AsyncClient(timeout=timeout, verify=False) as http:
                    resp = await http.get(url, headers=headers)
                return (
                    None if 200 <= resp.status_code < 400 else f"HTTP probe failed with statuscode: {resp.status_code}"
                )
        except asyncio.TimeoutError:
            log.debug("probe of %s timed out", container.name)
            return f"probe timed out after {timeout:.0f}s"
        except (OSError, httpx.HTTPError, ValueError, grpc.aio.AioRpcError) as exc:
            log.debug("probe of %s failed: %s", container.name, exc)
            return str(exc.details() if isinstance(exc, grpc.aio.AioRpcError) else exc) or type(exc).__name__
        return None  # grpc probes are not supported: treat as passing rather than killing


@dataclass
class _Worker:
    kind: str  # liveness | readiness | startup
    probe: Probe
    container: Container
    pod_uid: str
    cid: str
    next_at: float
    successes: int = 0
    failures: int = 0
    result: bool | None = None  # None: not decided yet


class ProbeManager:
    """Probe workers per running container; ``tick()`` runs the due ones and says which pods'
    results changed."""

    def __init__(self, prober: Prober, clock: Clock, on_failure: ProbeFailureHook | None = None) -> None:
        self.prober = prober
        self.clock = clock
        self.on_failure = on_failure
        self.workers: dict[tuple[str, str], _Worker] = {}  # (cid, kind)
        self.pod_ips: dict[str, str] = {}

    def add(self, pod_uid: str, pod_ip: str, container: Container, cid: str) -> None:
        """Start probing a running container (idempotent)."""
        self.pod_ips[pod_uid] = pod_ip
        now = self.clock.monotonic()
        for kind in ("startup", "liveness", "readiness"):
            probe = getattr(container, f"{kind}_probe")
            if probe is None or (cid, kind) in self.workers:
                continue
            self.workers[(cid, kind)] = _Worker(
                kind, probe, container, pod_uid, cid, now + (probe.initial_delay_seconds or 0)
            )

    def retain(self, pod_uid: str, cids: set[str]) -> None:
        """Drop the pod's workers of containers that are no longer running."""
        for key in [k for k, w in self.workers.items() if w.pod_uid == pod_uid and k[0] not in cids]:
            del self.workers[key]

    def forget_pod(self, pod_uid: str) -> None:
        for key in [k for k, w in self.workers.items() if w.pod_uid == pod_uid]:
            del self.workers[key]
        self.pod_ips.pop(pod_uid, None)

    def started(self, cid: str) -> bool:
        w = self.workers.get((cid, "startup"))
        return w is None or w.result is True

    def ready(self, cid: str) -> bool:
        if not self.started(cid):
            return False
        w = self.workers.get((cid, "readiness"))
        return w is None or w.result is True

    def liveness_failed(self, cid: str) -> bool:
        w = self.workers.get((cid, "liveness"))
        s = self.workers.get((cid, "startup"))
        return (w is not None and w.result is False) or (s is not None and s.result is False)

    def startup_failed(self, cid: str) -> bool:
        s = self.workers.get((cid, "startup"))
        return s is not None and s.result is False

    def next_due(self) -> float | None:
        return min((w.next_at for w in self.workers.values()), default=None)

    async def tick(self) -> set[str]:
        now = self.clock.monotonic()
        due = [w for w in self.workers.values() if w.next_at <= now and self._enabled(w)]
        if not due:
            return set()
        results = await asyncio.gather(
            *(self.prober.check(w.probe, w.container, w.cid, self.pod_ips.get(w.pod_uid, "")) for w in due)
        )
        changed: set[str] = set()
        for w, failure in zip(due, results, strict=True):
            w.next_at = now + w.probe.period_seconds
            ok = failure is None
            if failure is not None and self.on_failure is not None:
                try:
                    self.on_failure(w.pod_uid, w.container.name, w.kind, failure)
                except Exception:  # reporting a failure must never stop probing
                    log.exception("probe failure hook failed")
            if ok:
                w.successes, w.failures = w.successes + 1, 0
                threshold = w.probe.success_threshold if w.kind == "readiness" else 1
                new = True if w.successes >= threshold else w.result
            else:
                w.failures, w.successes = w.failures + 1, 0
                new = False if w.failures >= w.probe.failure_threshold else w.result
                if w.kind == "readiness" and w.result is None:
                    new = False
            if w.kind == "liveness" and new is False:
                w.failures = 0  # the container is restarted; a new instance starts counting afresh
            if new != w.result:
                w.result = new
                changed.add(w.pod_uid)
        return changed

    def _enabled(self, w: _Worker) -> bool:
        if w.kind == "startup":
            return w.result is not True  # done once it succeeded
        return self.started(w.cid)
