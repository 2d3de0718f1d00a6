"""``kray exec POD [-c CONTAINER] -- COMMAND [ARGS...]``: run a command in a running container.

Speaks Kubernetes' WebSocket channel protocol to the API server's ``pods/{name}/exec``, as
kubectl does, writes the command's stdout and stderr to its own, and exits with the command's
exit code. Non-interactive: the output arrives when the command ends, and ``-i``/``-t`` are
refused (the kubelet runs the command through CRI ExecSync).
"""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import urlencode

import click

from kray.cli.common import fail, make_client

SUBPROTOCOL = "v4.channel.k8s.io"
STDOUT, STDERR, ERROR = 1, 2, 3


def exec_url(server: str, namespace: str, pod: str, command: list[str], container: str | None, timeout: int) -> str:
    query: list[tuple[str, str]] = [("command", a) for a in command]
    query += [("stdout", "true"), ("stderr", "true")]
    if container:
        query.append(("container", container))
    if timeout:
        query.append(("timeoutSeconds", str(timeout)))
    ws = "wss" + server[len("https") :] if server.startswith("https") else "ws" + server[len("http") :]
    return f"{ws}/api/v1/namespaces/{namespace}/pods/{pod}/exec?{urlencode(query)}"


def exit_code(status: dict[str, Any]) -> int | None:
    """The command's exit code from the error channel's Status; None for a failure to run it."""
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode" and str(cause.get("message", "")).isdigit():
                return int(cause["message"])
    return None


@click.command("exec", context_settings={"ignore_unknown_options": False})
@click.argument("pod")
@click.argument("command", nargs=-1, required=True)
@click.option("-c", "--container", default=None, help="Container name (default: the pod's only one).")
@click.option("-n", "--namespace", default="default")
@click.option("-i", "--stdin", is_flag=True, help="Pass stdin to the container (not supported).")
@click.option("-t", "--tty", is_flag=True, help="Stdin is a TTY (not supported).")
@click.option("--timeout", type=click.IntRange(1), default=None, help="Seconds the command may run (default 300).")
def exec_cmd(
    pod: str,
    command: tuple[str, ...],
    container: str | None,
    namespace: str,
    stdin: bool,
    tty: bool,
    timeout: int | None,
) -> None:
    """Run COMMAND in a container of POD (put it after --), with its exit code as kray's."""
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.sync.client import connect
    from websockets.typing import Subprotocol

    if stdin or tty:
        fail("interactive exec (-i/-t) is not supported by kray: run a command that ends")
    client = make_client()
    url = exec_url(client.server, namespace, pod.removeprefix("pod/"), list(command), container, timeout or 0)
    headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
    client.close()
    status: dict[str, Any] | None = None
    try:
        with connect(url, additional_headers=headers, subprotocols=[Subprotocol(SUBPROTOCOL)], open_timeout=10) as ws:
            for message in ws:
                data = message if isinstance(message, bytes) else message.encode()
                if not data:
                    continue
                if data[0] == STDOUT:
                    sys.stdout.buffer.write(data[1:])
                    sys.stdout.buffer.flush()
                elif data[0] == STDERR:
                    sys.stderr.buffer.write(data[1:])
                    sys.stderr.buffer.flush()
                elif data[0] == ERROR:
                    status = json.loads(data[1:] or b"{}")
    except InvalidStatus as exc:
        http = exc.response.status_code
        fail("Unauthorized: check the token in your kray config" if http == 403 else f"exec refused: HTTP {http}")
    except (OSError, WebSocketException) as exc:
        fail(f"cannot exec through the kray API server at {client.server}: {exc}")
    if status is None:
        fail("the connection closed before the command's status arrived")
    code = exit_code(status)
    if code is None:
        fail(str(status.get("message") or status))
    sys.exit(code)
