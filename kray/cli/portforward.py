"""``kray port-forward TARGET [LOCAL:]REMOTE...``: local ports to a pod's ports, as kubectl does.

TARGET is a pod (``NAME`` or ``pod/NAME``) or ``svc/NAME`` / ``deploy/NAME`` (a running pod
their selector picks; a Service's port becomes its targetPort, by number or by the container
port's name). Each local connection is its own WebSocket to the API server's
``pods/{name}/portforward`` (Kubernetes' port-forward channel protocol), which the kubelet turns
into a connection to localhost:REMOTE inside the pod. ``:REMOTE`` (or ``0:REMOTE``) picks a free
local port. Runs until interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import click

from kray.cli.common import CliError, fail, make_client
from kray.client import channels


@dataclass(frozen=True)
class Mapping:
    local: int  # 0: any free port
    remote: int | str  # a number, or a port name to resolve against the pod/service

    @classmethod
    def parse(cls, text: str) -> Mapping:
        local, sep, remote = text.rpartition(":") if ":" in text else ("", "", text)
        if sep and local == "":
            local = "0"
        if not remote:
            raise CliError(f"invalid port mapping {text!r}: expected [LOCAL:]REMOTE")
        if not sep and not remote.isdigit():
            raise CliError(f"a named port needs a local port: LOCAL:{remote}")
        if not local:
            local = remote
        if remote.isdigit() and not 0 < int(remote) < 65536:
            raise CliError(f"invalid remote port {remote!r} in {text!r}: must be 1-65535")
        if not local.isdigit() or not 0 <= int(local) < 65536:
            raise CliError(f"invalid local port {local!r} in {text!r}")
        return cls(int(local), int(remote) if remote.isdigit() else remote)


def _container_port(pod: dict[str, Any], name: str) -> int:
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == name:
                return int(p["containerPort"])
    raise CliError(f"pod {pod['metadata']['name']} has no container port named {name!r}")


def _running_pod(client: Any, namespace: str, selector: dict[str, str], what: str) -> dict[str, Any]:
    from kray.client.paths import ResourceRef

    pods = ResourceRef(group="", version="v1", plural="pods", namespaced=True, kind="Pod")
    if not selector:
        raise CliError(f"{what} has no selector: no pod to forward to")
    query = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    items = client.list_raw(pods, namespace, label_selector=query).items
    running = [p for p in items if (p.get("status") or {}).get("phase") == "Running"]
    if not running:
        raise CliError(f"no running pod for {what} (selector {query})")
    return sorted(running, key=lambda p: p["metadata"]["name"])[0]


def resolve(client: Any, target: str, namespace: str, mappings: list[Mapping]) -> tuple[str, list[tuple[int, int]]]:
    """The pod to forward to, and (local, remote number) per mapping."""
    from kray.cli.common import resolve_kind

    kind, sep, name = target.partition("/")
    if not sep:
        kind, name = "pod", target
    ref = resolve_kind(client, kind)
    obj = client.get_raw(ref, name, namespace)
    spec = obj.get("spec") or {}
    service_ports: dict[int | str, int | str] = {}
    if ref.kind == "Pod":
        pod = obj
    elif ref.kind == "Service":
        pod = _running_pod(client, namespace, spec.get("selector") or {}, f"service/{name}")
        for p in spec.get("ports") or []:
            target_port = p.get("targetPort", p["port"])
            service_ports[int(p["port"])] = target_port
            if p.get("name"):
                service_ports[p["name"]] = target_port
    elif ref.kind in ("Deployment", "ReplicaSet", "Job"):
        labels = (spec.get("selector") or {}).get("matchLabels") or {}
        pod = _running_pod(client, namespace, labels, f"{ref.kind.lower()}/{name}")
    else:
        raise CliError(f"cannot port-forward to a {ref.kind}: use a pod, service or deployment")
    pairs = []
    for m in mappings:
        remote: int | str = m.remote
        if ref.kind == "Service":
            if remote not in service_ports:
                raise CliError(f"service {name} does not have a service port {remote}")
            remote = service_ports[remote]
        number = remote if isinstance(remote, int) else (int(remote) if remote.isdigit() else 0)
        pairs.append((m.local, number or _container_port(pod, str(remote))))
    return str(pod["metadata"]["name"]), pairs


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, url: str, headers: dict[str, str]) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed
    from websockets.typing import Subprotocol

    try:
        async with connect(url, additional_headers=headers, subprotocols=[Subprotocol(channels.V5)]) as ws:
            opened: set[int] = set()

            async def upstream() -> None:
                while data := await reader.read(64 << 10):
                    await ws.send(b"\x00" + data)
                await ws.send(bytes([channels.CLOSE, 0]))  # v5: nothing more from this side

            sending = asyncio.create_task(upstream())
            try:
                async for message in ws:
                    data = message if isinstance(message, bytes) else message.encode()
                    channel = data[0]
                    if channel not in opened:  # each channel opens with its port number
                        opened.add(channel)
                        continue
                    if channel == 0:
                        writer.write(data[1:])
                        await writer.drain()
                    elif channel == 1:
                        click.echo(f"error: {data[1:].decode(errors='replace')}", err=True)
                        break
            finally:
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError):
                    await sending
    except (OSError, ConnectionClosed) as exc:
        click.echo(f"error: forwarding a connection: {exc}", err=True)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _forward(
    server: str, token: str, namespace: str, pod: str, pairs: list[tuple[int, int]], address: str
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    base = ("wss" + server[5:] if server.startswith("https") else "ws" + server[4:]).rstrip("/")
    listeners = []
    for local, remote in pairs:
        url = f"{base}/api/v1/namespaces/{namespace}/pods/{pod}/portforward?{urlencode({'ports': remote})}"

        bound_port: list[int] = []  # known once listening (a requested 0 becomes a free port)

        async def handle(
            r: asyncio.StreamReader, w: asyncio.StreamWriter, url: str = url, bound_port: list[int] = bound_port
        ) -> None:
            click.echo(f"Handling connection for {bound_port[0]}")
            sys.stdout.flush()
            await _pump(r, w, url, headers)

        try:
            srv = await asyncio.start_server(handle, address, local)
        except OSError as exc:
            raise CliError(f"unable to listen on port {local}: {exc.strerror or exc}") from None
        bound = srv.sockets[0].getsockname()[1]
        bound_port.append(bound)
        click.echo(f"Forwarding from {address}:{bound} -> {remote}")
        sys.stdout.flush()
        listeners.append(srv)
    await asyncio.gather(*(srv.serve_forever() for srv in listeners))


@click.command("port-forward")
@click.argument("target")
@click.argument("ports", nargs=-1, required=True)
@click.option("-n", "--namespace", default="default")
@click.option("--address", default="127.0.0.1", show_default=True, help="Local address to listen on.")
def portforward_cmd(target: str, ports: tuple[str, ...], namespace: str, address: str) -> None:
    """Forward local ports to a pod (or a service's or deployment's pod)."""
    mappings = [Mapping.parse(p) for p in ports]
    client = make_client()
    try:
        pod, pairs = resolve(client, target, namespace, mappings)
    finally:
        client.close()
    try:
        asyncio.run(_forward(client.server, client.token, namespace, pod, pairs, address))
    except KeyboardInterrupt:
        return
    except CliError:
        raise
    except Exception as exc:  # a listener failed: one line, non-zero exit
        fail(f"port-forward: {exc}")
