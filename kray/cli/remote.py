"""Run a command in a container from Python: the ``pods/{name}/exec`` WebSocket as a function.

For commands built on exec (``kray cp``): stdin from bytes (closed after them, v5's close
signal), stdout and stderr to callables as they arrive, and the exit code, or a CliError
saying why the command could not run.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode

from kray.cli.common import CliError
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


def run(
    client: Any,
    namespace: str,
    pod: str,
    command: list[str],
    *,
    container: str | None = None,
    stdin: Iterable[bytes] | None = None,
    on_stdout: Callable[[bytes], None],
    on_stderr: Callable[[bytes], None],
) -> int:
    """The command's exit code; its output goes to the callables as it comes."""
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.sync.client import connect
    from websockets.typing import Subprotocol

    url = exec_url(client.server, namespace, pod, command, container, stdin is not None)
    headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
    status: dict[str, Any] | None = None
    try:
        with connect(
            url, additional_headers=headers, subprotocols=[Subprotocol(channels.V5)], open_timeout=10, max_size=None
        ) as ws:
            if stdin is not None:
                threading.Thread(target=_send_stdin, args=(ws, stdin), daemon=True).start()
            for message in ws:
                data = message if isinstance(message, bytes) else message.encode()
                if data[:1] == bytes([channels.STDOUT]):
                    on_stdout(data[1:])
                elif data[:1] == bytes([channels.STDERR]):
                    on_stderr(data[1:])
                elif data[:1] == bytes([channels.ERROR]):
                    status = json.loads(data[1:] or b"{}")
    except InvalidStatus as exc:
        http = exc.response.status_code
        raise CliError(
            "Unauthorized: check the token in your kray config" if http == 403 else f"exec refused: HTTP {http}"
        ) from None
    except (OSError, WebSocketException) as exc:
        raise CliError(f"cannot exec through the kray API server at {client.server}: {exc}") from None
    if status is None:
        raise CliError("the connection closed before the command's status arrived")
    code = channels.exit_code(status)
    if code is None:
        raise CliError(str(status.get("message") or status))
    return code


def _send_stdin(ws: Any, chunks: Iterable[bytes]) -> None:
    try:
        for chunk in chunks:
            if chunk:
                ws.send(bytes([channels.STDIN]) + chunk)
        ws.send(bytes([channels.CLOSE, channels.STDIN]))
    except Exception:
        pass  # the connection ended first: the command is over, its status says how
