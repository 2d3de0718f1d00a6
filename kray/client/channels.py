"""Kubernetes' WebSocket channel protocol for ``pods/{name}/exec`` (``v4``/``v5.channel.k8s.io``).

Every binary message starts with its channel byte: 0 stdin, 1 stdout, 2 stderr, 3 error (a
``Status`` as JSON: ``Success``, or ``Failure`` with reason ``NonZeroExitCode`` and the exit code
as a cause), 4 resize (a terminal's new size, ``{"Width": 80, "Height": 24}``). ``v5`` adds
channel 255, whose message ``[255, N]`` closes channel N (the client's way to say "stdin is
done"). Shared by the API server, the kubelet and ``kray exec``.
"""

from __future__ import annotations

import json
from typing import Any

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
V4, V5 = "v4.channel.k8s.io", "v5.channel.k8s.io"
SUBPROTOCOLS = (V5, V4)  # preferred first


def choose(offered: str) -> str | None:
    """The subprotocol to accept from a ``Sec-WebSocket-Protocol`` header (None: none we speak)."""
    names = [p.strip() for p in offered.split(",") if p.strip()]
    return next((p for p in SUBPROTOCOLS if p in names), None)


def exit_status(exit_code: int, command: list[str]) -> dict[str, Any]:
    """The error channel's Status for a finished command, worded as the kubelet words it."""
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


def failure(message: str, code: int = 500, reason: str = "InternalError") -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}


def exit_code(status: dict[str, Any]) -> int | None:
    """The command's exit code from the error channel's Status; None: it did not run to an end."""
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode" and str(cause.get("message", "")).isdigit():
                return int(cause["message"])
    return None


def resize_message(width: int, height: int) -> bytes:
    """A resize message (channel byte included), as kubectl words it."""
    return bytes([RESIZE]) + json.dumps({"Width": width, "Height": height}).encode()


def terminal_size(body: bytes) -> tuple[int, int] | None:
    """(width, height) from a resize message's body; None for one that is not a size."""
    try:
        size = json.loads(body)
        width, height = int(size["Width"]), int(size["Height"])
    except (ValueError, TypeError, KeyError):
        return None
    if not (0 <= width < 1 << 16 and 0 <= height < 1 << 16):  # a terminal's winsize holds 16 bits
        return None
    return width, height
