"""Per-pod scratch space for one scheduling attempt, keyed by plugin name.

A plugin's PreFilter computes something once (e.g. the pod's requests, topology counts) and its
Filter reads it for each node. Keys are plugin-derived strings so plugins never collide.
"""

from __future__ import annotations

from typing import Any

# Annotations Reserve plugins want on the pod at bind (dict[str, str]); the binder sends them in
# the Binding, and the API server copies them onto the pod in the bind transaction.
BIND_ANNOTATIONS = "kray.io/bind-annotations"


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


def add_bind_annotation(state: CycleState, key: str, value: str) -> None:
    state.write(BIND_ANNOTATIONS, {**state.get(BIND_ANNOTATIONS, {}), key: value})


def drop_bind_annotation(state: CycleState, key: str) -> None:
    current: dict[str, str] = state.get(BIND_ANNOTATIONS, {})
    if key in current:
        state.write(BIND_ANNOTATIONS, {k: v for k, v in current.items() if k != key})


def bind_annotations(state: CycleState) -> dict[str, str]:
    return dict(state.get(BIND_ANNOTATIONS, {}))
