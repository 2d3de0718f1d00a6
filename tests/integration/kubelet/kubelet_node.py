"""A kubelet core (plus its log endpoint) running in the test's event loop against a real node."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kray.actors.kubelet import Kubelet, KubeletConfig
from kray.actors.kubelet.logserver import serve_logs
from kray.client import AsyncClient
from kray.crds import Pod
from kray.etcd_server import free_port
from kray.runtime.cri.client import RuntimeClient
from kray.runtime.volumes import VolumeManager


class RunningKubelet:
    def __init__(self, node: Any, client: AsyncClient, node_name: str = "n1", log_port: int | None = None) -> None:
        self.node, self.client, self.node_name = node, client, node_name
        self.log_port = log_port or free_port()
        self.cri = RuntimeClient(node.socket, timeout=60)
        cfg = KubeletConfig(node_ip="127.0.0.1", hostname=node_name, pod_cidr=node.subnet, log_port=self.log_port,
                            log_host="127.0.0.1", tick=0.2, cpu="8", memory="16Gi")  # fmt: skip
        self.kubelet = Kubelet(node_name, client, self.cri, VolumeManager(node.state / "pods"), None, config=cfg)
        self.tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> RunningKubelet:
        await self.cri.wait_ready(30)
        if not await self.cri.list_images("busybox"):
            await self.cri.pull_image(f"oci-archive:{self.node.image_tar}:busybox:latest")
        self.tasks = [
            asyncio.create_task(self.kubelet.run()),
            asyncio.create_task(serve_logs(self.kubelet, "127.0.0.1", self.log_port)),
        ]
        return self

    async def stop(self) -> None:
        """Stop the core only (the runtime service and its containers keep running)."""
        self.kubelet.stop()
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(BaseException):
                await t
        await self.cri.close()


async def wait_for(cond: Callable[[], Awaitable[Any]], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await cond()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or cond}: last {last!r}")


def pod_body(name: str, containers: list[dict[str, Any]], node: str = "n1", **spec: Any) -> Pod:
    spec = {"nodeName": node, "containers": containers, "terminationGracePeriodSeconds": 2, **spec}
    body = {"metadata": {"name": name, "namespace": "default"}, "spec": spec}
    return Pod.model_validate(body)


async def phase(client: AsyncClient, name: str) -> str | None:
    pod = await client.get(Pod, name, "default")
    return pod.status.phase if pod.status else None


# Traffic between containers: busybox `httpd` serving a file and a retrying `wget` client, not
# `nc -l`: an `nc -l` whose stdin is /dev/null sometimes exits on stdin EOF before it has read the
# connection and prints nothing (~1 in 30). httpd answers every connection, the client retries
# while the server starts, and `-vv` logs every request (peer address, url) on stderr, so the
# server side still shows who reached it. (`wget -T` crashes this busybox: `timeout` bounds it.)
# httpd listens dual-stack, so an IPv4 peer reads `[::ffff:10.1.2.3]:port`.
HTTPD_REQUEST = re.compile(r"^\[?(?:::ffff:)?([^\]\s]+?)\]?:\d+: url:(\S+)$")


def httpd_serving(payload: str, port: int) -> str:
    """Shell that serves `payload` at /f from the container's own (unshared) /www on `port`."""
    return f"mkdir -p /www && echo {payload} > /www/f && httpd -f -vv -p {port} -h /www"


def fetch_loop(url: str, out: str = "/tmp/got") -> str:
    """Shell that fetches `url` into `out` (retrying while the server starts), prints it, or exits 1."""
    return (
        f"ok=; for i in $(seq 100); do if timeout 3 wget -q -O {out} {url}; then ok=1; break; fi; sleep 0.1; done; "
        f'[ -n "$ok" ] || exit 1; cat {out}'
    )


def httpd_requests(log: str) -> list[tuple[str, str]]:
    """(peer ip, url) of each request a `httpd -vv` logged in `log`."""
    return [(m[1], m[2]) for line in log.splitlines() if (m := HTTPD_REQUEST.match(line))]
