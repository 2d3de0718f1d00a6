"""Kubernetes' WebSocket channel protocol for ``pods/{name}/exec`` (``v4``/``v5.channel.k8s.io``).

Every binary message starts with its channel byte: 0 stdin, 1 stdout, 2 stderr, 3 error (a
``Status`` as JSON: ``Success``, or ``Failure`` with reason ``NonZeroExitCode`` and the exit code
as a cause), 4 resize. ``v5`` adds channel 255, whose message ``[255, N]`` closes channel N (the
client's way to say "stdin is done"). Shared by the API server, the kubelet and ``kray exec``.
"""

from __future__ import annotations

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
