"""The ``pods/{name}/exec`` WebSocket from the client side, shared by ``kray exec`` and ``kray cp``.

``exec_url`` builds the request, ``session`` opens it (errors become one CliError line),
``send_stdin`` streams chunks in and then v5's close signal, ``receive`` hands stdout and stderr
to callables as they arrive and returns the error channel's Status, and ``exit_code_of`` turns
that Status into the command's exit code. ``run`` is all of it for a command driven from Python.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlencode

from kray.cli.common import CliError
from kray.client import channels


def exec_url(
    server: str,
    namespace: str,
    pod: str,
    command: list[str],
    container: str | None,
    stdin: bool,
    tty: bool = False,
) -> str:
    query: list[tuple[str, str]] = [("command", a) for a in command]
    query += [("stdout", "true"), ("stderr", "false" if tty else "true")]  # a terminal has one output
    if stdin:
        query.append(("stdin", "true"))
    if tty:
        query.append(("tty", "true"))
    if container:
        query.append(("container", container))
    ws = "wss" + server[len("https") :] if server.startswith("https") else "ws" + server[len("http") :]
    return f"{ws}/api/v1/namespaces/{namespace}/pods/{pod}/exec?{urlencode(query)}"


@contextlib.contextmanager
def session(client: Any, url: str) -> Iterator[Any]:
    """The open WebSocket (v5 channel protocol); a refusal or a broken connection is a CliError."""
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.sync.client import connect
    from websockets.typing import Subprotocol

    headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
    try:
        with connect(
            url, additional_headers=headers, subprotocols=[Subprotocol(channels.V5)], open_timeout=10, max_size=None
        ) as ws:
            yield ws
    except InvalidStatus as exc:
        http = exc.response.status_code
        raise CliError(
            "Unauthorized: check the token in your kray config" if http == 403 else f"exec refused: HTTP {http}"
        ) from None
    except (OSError, WebSocketException) as exc:
        raise CliError(f"cannot exec through the kray API server at {client.server}: {exc}") from None


def send_stdin(ws: Any, chunks: Iterable[bytes]) -> None:
    """Each chunk as a stdin message, then the v5 signal that stdin is closed."""
    try:
        for chunk in chunks:
            if chunk:
                ws.send(bytes([channels.STDIN]) + chunk)
        ws.send(bytes([channels.CLOSE, channels.STDIN]))
    except Exception:
        pass  # the connection ended first: the command is over, its status says how


def receive(ws: Any, on_stdout: Callable[[bytes], None], on_stderr: Callable[[bytes], None]) -> dict[str, Any] | None:
    """Output to the callables until the connection closes; the error channel's Status."""
    status: dict[str, Any] | None = None
    for message in ws:
        data = message if isinstance(message, bytes) else message.encode()
        if data[:1] == bytes([channels.STDOUT]):
            on_stdout(data[1:])
        elif data[:1] == bytes([channels.STDERR]):
            on_stderr(data[1:])
        elif data[:1] == bytes([channels.ERROR]):
            status = json.loads(data[1:] or b"{}")
    return status


def exit_code_of(status: dict[str, Any] | None) -> int:
    """The command's exit code; a CliError when it could not run (the Status says why)."""
    if status is None:
        raise CliError("the connection closed before the command's status arrived")
    code = channels.exit_code(status)
    if code is None:
        raise CliError(str(status.get("message") or status))
    return code


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
    url = exec_url(client.server, namespace, pod, command, container, stdin is not None)
    with session(client, url) as ws:
        if stdin is not None:
            threading.Thread(target=send_stdin, args=(ws, stdin), daemon=True).start()
        status = receive(ws, on_stdout, on_stderr)
    return exit_code_of(status)
