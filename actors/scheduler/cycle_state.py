"""Per-pod scratch space for one scheduling attempt, keyed by plugin name.

A plugin's PreFilter computes something once (e.g. the pod's requests, topology counts) and its
Filter reads it for each node. Keys are plugin-derived strings so plugins never collide.
"""

from __future__ import annotations

from typing import Any


class CycleState:
    __slots__ = ("_data", "skip_filter", "skip_score")

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        # Plugins whose PreFilter/PreScore said SKIP: the framework leaves out their Filter/Score.
        self.skip_filter: set[str] = set()
        self.skip_score: set[str] = set()

    def write(self, key: str, value: Any) -> None:
        self._data[key] = value

    def read(self, key: str) -> Any:
        """The value under ``key``; KeyError if PreFilter never wrote it (a plugin bug)."""
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def clone(self) -> CycleState:
        # Shallow: preemption dry-runs copy the state then replace the entries they change.
        out = CycleState()
        out._data = dict(self._data)
        out.skip_filter = set(self.skip_filter)
        out.skip_score = set(self.skip_score)
        return out
