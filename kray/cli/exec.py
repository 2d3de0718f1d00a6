"""``kray exec POD [-c CONTAINER] [-i] -- COMMAND [ARGS...]``: run a command in a running container.

Speaks Kubernetes' WebSocket channel protocol (``v5.channel.k8s.io``) to the API server's
``pods/{name}/exec``, as kubectl does: the command's stdout and stderr arrive as it writes them,
``-i`` sends this process's stdin (its end closes the command's stdin), and kray exits with the
command's exit code. ``-t`` is refused: the runtime's exec has no terminal to offer.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any
from urllib.parse import urlencode

import click

from kray.cli.common import fail, make_client
from kray.client import channels


def exec_url(server: str, namespace: str, pod: str, command: list[str], container: str | None, stdin: bool) -> str:
    query: list[tuple[str, str]] = [("command", a) for a in command]
    query += [("stdout", "true"), ("stderr", "true")]
    if stdin:
        query.append(("stdin", "true"))
    if container:
        query.append(("container", container))
    ws = "wss" + server[len("https") :] if server.startswith("https") else "ws" + server[len("http") :]
    return f"{ws}/api/v1/namespaces/{namespace}/pods/{pod}/exec?{urlencode(query)}"


def _pump_stdin(ws: Any) -> None:
    """This process's stdin to the command, then the v5 signal that stdin is closed."""
    source: Any = sys.stdin.buffer  # a BufferedReader: read1 returns what is there, not 64 KiB
    try:
        while chunk := source.read1(64 << 10):
            ws.send(bytes([channels.STDIN]) + chunk)
        ws.send(bytes([channels.CLOSE, channels.STDIN]))
    except Exception:
        pass  # the connection ended first: the command is over


@click.command("exec")
@click.argument("pod")
@click.argument("command", nargs=-1, required=True)
@click.option("-c", "--container", default=None, help="Container name (default: the pod's only one).")
@click.option("-n", "--namespace", default="default")
@click.option("-i", "--stdin", is_flag=True, help="Pass stdin to the command.")
@click.option("-t", "--tty", is_flag=True, help="Stdin is a TTY (not supported).")
def exec_cmd(pod: str, command: tuple[str, ...], container: str | None, namespace: str, stdin: bool, tty: bool) -> None:
    """Run COMMAND in a container of POD (put it after --), with its exit code as kray's."""
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.sync.client import connect
    from websockets.typing import Subprotocol

    if tty:
        fail("a TTY (-t) is not supported by kray exec: use -i without -t")
    client = make_client()
    url = exec_url(client.server, namespace, pod.removeprefix("pod/"), list(command), container, stdin)
    headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
    client.close()
    status: dict[str, Any] | None = None
    try:
        with connect(
            url, additional_headers=headers, subprotocols=[Subprotocol(channels.V5)], open_timeout=10, max_size=None
        ) as ws:
            if stdin:
                threading.Thread(target=_pump_stdin, args=(ws,), daemon=True).start()
            for message in ws:
                data = message if isinstance(message, bytes) else message.encode()
                if data[:1] == bytes([channels.STDOUT]):
                    sys.stdout.buffer.write(data[1:])
                    sys.stdout.buffer.flush()
                elif data[:1] == bytes([channels.STDERR]):
                    sys.stderr.buffer.write(data[1:])
                    sys.stderr.buffer.flush()
                elif data[:1] == bytes([channels.ERROR]):
                    status = json.loads(data[1:] or b"{}")
    except InvalidStatus as exc:
        http = exc.response.status_code
        fail("Unauthorized: check the token in your kray config" if http == 403 else f"exec refused: HTTP {http}")
    except (OSError, WebSocketException) as exc:
        fail(f"cannot exec through the kray API server at {client.server}: {exc}")
    if status is None:
        fail("the connection closed before the command's status arrived")
    code = channels.exit_code(status)
    if code is None:
        fail(str(status.get("message") or status))
    sys.exit(code)
