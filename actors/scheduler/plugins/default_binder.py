"""DefaultBinder: writes the binding through the scheduler's Binder port."""

from __future__ import annotations

from typing import Any

from ..cycle_state import CycleState, bind_annotations
from ..framework import Handle
from ..pod_info import PodInfo
from ..status import Status

NAME = "DefaultBinder"


class DefaultBinder:
    name = NAME

    def __init__(self, args: dict[str, Any] | None = None, handle: Handle | None = None) -> None:
        if handle is None or handle.binder is None:
            raise ValueError("DefaultBinder needs a handle with a Binder")
        self.binder = handle.binder

    async def bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        return await self.binder.bind(pod.pod, node_name, bind_annotations(state) or None)
